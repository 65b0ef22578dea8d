"""Reading the configuration file: YAML → typed Config, with every problem located to file, line and field.

`load_config` raises `ConfigError` listing every problem (the controller refuses to
start on a bad file); `load_located` never raises and also returns the YAML line map
and keys given twice, for `hotline check` and the other admin commands.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from model.config import Config

#: field path (keys and list indexes) → 1-based line in the YAML file
Lines = dict[tuple[Any, ...], int]




@dataclass(frozen=True)
class Problem:
    """One configuration problem, located for a human."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass
class ConfigError(Exception):
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and sequence item."""


def _locate(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _locate(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _locate(v, path + (i,), out)


def line_for(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    """The line of `loc`, or of its nearest located ancestor."""
    loc = tuple(str(x) if not isinstance(x, int) else x for x in loc)
    while loc:
        if loc in lines:
            return lines[loc]
        # pydantic adds union tags ("queue", "menu") into paths; drop unknown parts
        loc = loc[:-1]
    return lines.get((), None)


def _normalise_keys(data: Any) -> Any:
    """YAML reads 12315 and 1 as ints; every key in this config is a string."""
    if isinstance(data, dict):
        return {str(k): _normalise_keys(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_normalise_keys(v) for v in data]
    return data


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate one YAML file; raise ConfigError listing every problem with its line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([Problem(str(p), None, "", f"cannot read: {e.strerror}")]) from None
    return parse_config(text, str(p))


def parse_config(text: str, filename: str = "<config>") -> Config:
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(filename, line, "", f"not valid YAML: {getattr(e, 'problem', e)}")]) from None
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _locate(node, (), lines)
    data = _normalise_keys(data or {})
    if not isinstance(data, dict):
        raise ConfigError([Problem(filename, 1, "", "the top level must be a mapping")])
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(err["loc"])
            field_path = ".".join(str(x) for x in loc)
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(Problem(filename, line_for(lines, loc), field_path, msg))
        raise ConfigError(problems) from None


def default_config_path() -> Path:
    """`HOTLINE_CONFIG` or config/hotline.yaml beside the code."""
    env = os.environ.get("HOTLINE_CONFIG")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "config" / "hotline.yaml"




def config_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Field path -> 1-based line of a YAML text, so whole-graph checks can locate problems too."""
    lines: dict[tuple[Any, ...], int] = {}
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError:
        return lines
    if node is not None:
        _locate(node, (), lines)
    return lines


def load_config_with_lines(path: str | os.PathLike[str]) -> tuple[Config, dict[tuple[Any, ...], int]]:
    """`load_config` plus the line map of the same file."""
    p = Path(path)
    config = load_config(p)
    return config, config_lines(p.read_text(encoding="utf-8"))




@dataclass
class Loaded:
    """A config file read for the admin: the model (None when invalid), its YAML lines, and problems."""

    file: str
    config: Config | None
    lines: Lines
    problems: list[Problem]


def line_of(lines: Lines, *path: Any) -> int | None:
    return line_for(lines, tuple(path)) if lines else None


def duplicate_keys(text: str, filename: str) -> list[Problem]:
    """Keys given twice in one mapping: YAML keeps the last silently (two `12315:` lines, or 12315 and "12315")."""
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError:
        return []
    out: list[Problem] = []

    def walk(n: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in n.value:
                key = str(k.value)
                line = k.start_mark.line + 1
                if key in seen:
                    out.append(Problem(filename, line, ".".join(path + (key,)),
                                       f"given twice (first on line {seen[key]}); YAML keeps only the last one"))
                else:
                    seen[key] = line
                walk(v, path + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, path + (str(i),))

    if node is not None:
        walk(node, ())
    return out


def load_located(path: str | os.PathLike[str]) -> Loaded:
    """Read and validate; never raises for a bad config (the problems are returned, all of them)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        return Loaded(str(p), None, {}, [Problem(str(p), None, "", f"cannot read: {e.strerror or e}")])
    problems = duplicate_keys(text, str(p))
    try:
        cfg: Config | None = parse_config(text, str(p))
    except ConfigError as e:
        cfg = None
        problems += e.problems
    return Loaded(str(p), cfg, config_lines(text), problems)
