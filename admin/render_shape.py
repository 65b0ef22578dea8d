"""The shape of the rendered Asterisk files — sections and dialplan extensions — against what is expected.

A config value that reaches a rendered file must never add or drop a section, a context or an
extension (issue 14 item 13: a newline in a queue name once added `exten => 666,1,System(...)`; a
seat name added a PJSIP section). Names are restricted at load time already; this is the check of
the result, as `hotline check` and `apply` see it:

* every rendered section (every file) and every extension (extensions.conf) must be produced by a
  header or `exten =>` line of our templates, where each `{{ … }}` part stands for exactly one
  configured value (a key or a value of the config) or one contract name (model.contract) — an
  injected `[evil]` or `exten => 666` matches none;
* nothing the config asks for may be missing: a section per seat, per queue (queues.conf and its
  dialplan context), the contexts of each carrier, every fixed context (model.contract.Context),
  each seat's extension and the agents' feature codes in the seats' context.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import Enum
from functools import cache
from typing import Any

from model.config import Config
from model.contract import (ASTERISK_QUEUE_PREFIX, CARRIER_CONTEXT_PREFIX, DID_CONTEXT_PREFIX, Context, queue_context,
                            template_names)
from model.loading import Problem
from routing.dialplan import TEMPLATES, asterisk_queue
from routing.outbound import allowed_patterns
from routing.supervise import SWITCH_KEYS, spy_modes
from wire.conf import dialplan_steps, load_tree

_EXPR = re.compile(r"\{\{.*?\}\}")
_HEADER = re.compile(r"^\s*\[([^\]\n]+)\]")
_EXTEN = re.compile(r"^\s*exten\s*=>\s*([^,\n]+),")


Shape = tuple[str, ...]  # a template fragment: literal parts, a `{{ … }}` between each two


def _pattern(text: str) -> Shape:
    return tuple(_EXPR.split(text.strip()))


def _fits(name: str, parts: Shape, tokens: set[str]) -> bool:
    """`name` is `parts` with each gap filled by one token (every way of splitting is tried)."""
    if not name.startswith(parts[0]):
        return False
    name = name[len(parts[0]):]
    if len(parts) == 1:
        return name == ""
    return any(name[:i] in tokens and _fits(name[i:], parts[1:], tokens) for i in range(1, len(name) + 1))


@cache
def template_shapes() -> dict[str, tuple[list[Shape], list[Shape]]]:
    """file → (section header patterns, extension patterns) read from dialplans/templates."""
    out = {}
    for tpl in sorted(TEMPLATES.glob("*.conf.j2")):
        headers, extens = [], []
        for line in tpl.read_text(encoding="utf-8").splitlines():
            if m := _HEADER.match(line):
                headers.append(_pattern(m.group(1)))
            if m := _EXTEN.match(line):
                extens.append(_pattern(m.group(1)))
        out[tpl.name.removesuffix(".j2")] = (headers, extens)
    return out


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, Enum):
        yield str(value.value)
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        yield str(value)


def config_tokens(config: Config) -> set[str]:
    """Every key and scalar value of the config, every contract name the templates use, and the values
    our own code hands the templates (the supervisor's switch keys, the outbound patterns)."""
    tokens = set(_strings(config.model_dump(mode="json"))) | {ASTERISK_QUEUE_PREFIX}
    tokens |= set(_strings({str(k): v for k, v in SWITCH_KEYS.items()})) | set(_strings(spy_modes()))
    tokens |= set(_strings(list(allowed_patterns(config))))
    for v in template_names().values():
        if isinstance(v, type) and issubclass(v, Enum):
            tokens |= {str(m.value) for m in v}
        else:
            tokens |= set(_strings(v))
    return tokens


def _produced(name: str, shapes: list[Shape], tokens: set[str]) -> bool:
    return any(_fits(name, parts, tokens) for parts in shapes)


def shape_problems(config: Config, files: Mapping[str, str]) -> list[Problem]:
    """Sections or extensions in the rendered files that no template line and config value explain,
    and what the config asks for that is missing."""
    problems: list[Problem] = []
    tokens = config_tokens(config)
    shapes = template_shapes()
    sections: dict[str, set[str]] = {}
    for name in sorted(n for n in files if n in shapes):
        conf = load_tree({name: files[name]}, name)
        headers, extens = shapes[name]
        sections[name] = {s.name for s in conf.sections}
        for sec in conf.sections:
            if not _produced(sec.name, headers, tokens):
                problems.append(Problem(f"rendered {name}", sec.line, "render",
                                        f"section [{sec.name}] is not one the templates make from the config: "
                                        "a config value added it"))
        if name == "extensions.conf":
            steps, _ = dialplan_steps(conf)
            for step in steps:
                if not _produced(step.exten, extens, tokens):
                    problems.append(Problem(f"rendered {name}", step.item.line, "render",
                                            f"extension {step.exten!r} in [{step.context}] is not one the templates "
                                            "make from the config: a config value added it"))
            by_context: dict[str, set[str]] = {}
            for step in steps:
                by_context.setdefault(step.context, set()).add(step.exten)
            problems += _missing_dialplan(config, sections[name], by_context)
    problems += _missing_sections(config, sections)
    return problems


def _missing(file: str, what: str) -> Problem:
    return Problem(f"rendered {file}", None, "render", f"{what} is missing: a config value dropped it")


def _missing_sections(config: Config, sections: Mapping[str, set[str]]) -> list[Problem]:
    out = []
    if "pjsip.conf" in sections:
        for ext in config.seats:
            for want in (ext, f"{ext}-auth"):
                if want not in sections["pjsip.conf"]:
                    out.append(_missing("pjsip.conf", f"section [{want}] of seat {ext}"))
    if "queues.conf" in sections:
        for q in config.queues:
            if asterisk_queue(q) not in sections["queues.conf"]:
                out.append(_missing("queues.conf", f"queue [{asterisk_queue(q)}]"))
    return out


def _missing_dialplan(config: Config, contexts: set[str], extens: Mapping[str, set[str]]) -> list[Problem]:
    want = {c.value for c in Context} | {queue_context(q) for q in config.queues}
    for c in config.carriers:
        want |= {CARRIER_CONTEXT_PREFIX + c, DID_CONTEXT_PREFIX + c}
    out = [_missing("extensions.conf", f"context [{c}]") for c in sorted(want - contexts)]
    seats = extens.get(Context.SEATS.value, set())
    fc = config.agents.feature_codes
    for exten in (*config.seats, fc.sign_in, fc.sign_out, fc.ready, fc.extend_wrapup):
        if Context.SEATS.value in contexts and exten not in seats:
            out.append(_missing("extensions.conf", f"extension {exten} in [{Context.SEATS.value}]"))
    return out
