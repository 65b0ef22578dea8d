"""Reading the configuration file: YAML → typed Config, with every problem located to file, line and field.

`load_config` raises `ConfigError` listing every problem (the controller refuses to
start on a bad file); `load_located` never raises and also returns the YAML line map
and keys given twice, for `hotline check` and the other admin commands.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from model.config import Config, priority_key

#: field path (keys and list indexes) → 1-based line in the YAML file
Lines = dict[tuple[Any, ...], int]

#: Bounds checked before anything walks the document: the shipped config is ~12 KB and ~600 nodes,
#: while a 418-byte alias bomb ("billion laughs") expands to billions of nodes (60 s, 1.4 GB in check).
MAX_CONFIG_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 200_000
MAX_ALIASES = 1_000




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


def _lenient_timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    """A date-looking scalar that is no date (2026-02-30): kept as text, so the model reports it with its line.

    PyYAML's own constructor raises a bare ValueError ("day is out of range for month") with no file or line.
    """
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _lenient_timestamp)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model accepts where `loc` points (its last part being the unknown key), for "did you mean"."""
    def expand(tp: Any) -> list[Any]:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            return expand(typing.get_args(tp)[0])
        if origin in (typing.Union, types.UnionType):
            return [t for a in typing.get_args(tp) for t in expand(a)]
        return [tp]

    current: list[Any] = [Config]
    for part in loc[:-1]:
        nxt: list[Any] = []
        for tp in current:
            origin = typing.get_origin(tp)
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                f = tp.model_fields.get(str(part))
                if f is not None:
                    nxt += expand(f.annotation)
                else:
                    nxt.append(tp)  # a union tag pydantic put into the path
            elif origin is dict:
                nxt += expand(typing.get_args(tp)[1])
            elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
                nxt += expand(typing.get_args(tp)[0])
        current = nxt
    names: list[str] = []
    for tp in current:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            for name, f in tp.model_fields.items():
                names += [name] + ([f.alias] if f.alias else [])
    return sorted(set(names))


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    if not loc:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), _allowed_keys(loc), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


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


def _too_big(node: yaml.Node | None, text: str) -> str | None:
    """Why this document is refused before normalising (too large, too many aliases, recursive), or None.

    The node graph shares aliased nodes, so its expanded size is counted once per distinct node
    (memoised): linear in the document, however deep the aliases nest.
    """
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        return f"the file is larger than {MAX_CONFIG_BYTES // 1024} KiB; refused"
    if node is None:
        return None
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    aliases = 0

    def size(n: yaml.Node) -> int:
        nonlocal aliases
        key = id(n)
        if key in sizes:
            aliases += 1
            return sizes[key]
        if key in on_path:
            raise RecursionError
        on_path.add(key)
        total = 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > MAX_EXPANDED_NODES:
                    break
        elif isinstance(n, yaml.SequenceNode):
            for v in n.value:
                total += size(v)
                if total > MAX_EXPANDED_NODES:
                    break
        on_path.discard(key)
        sizes[key] = total
        return total

    try:
        expanded = size(node)
    except RecursionError:
        return "a YAML alias refers to itself (or nests too deep); refused"
    if expanded > MAX_EXPANDED_NODES:
        return f"YAML aliases expand to more than {MAX_EXPANDED_NODES} values (an alias bomb?); refused"
    if aliases > MAX_ALIASES:
        return f"more than {MAX_ALIASES} YAML aliases; refused"
    return None


def _compose(text: str, filename: str) -> yaml.Node | None:
    """The YAML node graph after the size/alias budget; ConfigError when invalid or over budget."""
    if len(text) > MAX_CONFIG_BYTES:  # before the parser spends time on it
        raise ConfigError([Problem(filename, None, "", f"the file is larger than {MAX_CONFIG_BYTES // 1024} KiB; refused")])
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(filename, line, "", f"not valid YAML: {getattr(e, 'problem', e)}")]) from None
    except RecursionError:  # PyYAML's composer recurses per nesting level
        raise ConfigError([Problem(filename, None, "", "YAML nested too deep; refused")]) from None
    why = _too_big(node, text)
    if why:
        raise ConfigError([Problem(filename, 1, "", why)])
    return node


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
    node = _compose(text, filename)  # refuses alias bombs before anything expands them
    try:
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
        cfg = Config.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(err["loc"])
            field_path = ".".join(str(x) for x in loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown key {str(loc[-1])!r}{_did_you_mean(loc)}" if loc else msg
            elif err["type"].startswith(("date_", "datetime_")) and isinstance(err.get("input"), str):
                msg = f"{err['input']!r} is not a date: {msg}"
            problems.append(Problem(filename, line_for(lines, loc), field_path, msg))
        raise ConfigError(problems) from None
    _read_priority_numbers(cfg, filename)
    return cfg


def priority_numbers_path(cfg: Config, filename: str) -> Path | None:
    """Where `access.priority.numbers_file` is: relative paths beside the config file."""
    name = cfg.access.priority.numbers_file
    if not name:
        return None
    p = Path(name)
    return p if p.is_absolute() else Path(filename).resolve().parent / p


def read_priority_numbers(path: Path) -> tuple[list[str], list[Problem]]:
    """The numbers of a priority (老年人优先) list file, and its problems (for `hotline check`).

    One number per line, `#` starts a comment, blank lines ignored. A bad line is reported by its line number
    in that file, never by its content (the list is personal data).
    """
    fld = "access.priority.numbers_file"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return [], [Problem(str(path), None, fld, f"cannot read the priority list: {getattr(e, 'strerror', None) or e}"
                            " (listed callers get no priority until it is readable)")]
    numbers, problems = [], []
    for i, raw in enumerate(text.splitlines(), 1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        key = priority_key(entry)
        if not 3 <= len(key) <= 20 or any(c not in "0123456789+- ()" for c in entry):
            problems.append(Problem(str(path), i, fld, "not a phone number (3-20 digits; the line is not shown: "
                                                       "personal data)"))
            continue
        numbers.append(key)
    return numbers, problems


def _read_priority_numbers(cfg: Config, filename: str) -> None:
    """Add the list file's numbers to `access.priority.numbers`. Lenient: a missing file or a bad line never
    stops the hotline (those callers simply get no priority); `hotline check` reports them."""
    if filename.startswith("<"):
        return  # a text without a file: nothing to be relative to
    path = priority_numbers_path(cfg, filename)
    if path is None:
        return
    numbers, _problems = read_priority_numbers(path)
    cfg.access.priority.numbers = [*cfg.access.priority.numbers, *numbers]


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
        node = _compose(text, "<config>")
    except ConfigError:
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
        node = _compose(text, filename)
    except ConfigError:
        return []  # parse_config reports it
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
