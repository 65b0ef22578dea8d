"""A small parser for Asterisk `.conf` files: ours (rendered) and the admin's (`dialplans/custom/`).

Why not pyst2's `asterisk.config`: it fails on PJSIP templates ``[name](!)`` and
``[x](tpl)``, on ``#include``, and cuts values at an escaped ``\\;`` (see
``../shared/LIBRARIES.md``). ``hotline check`` and ``hotline apply`` must read every
file Asterisk will read, the way Asterisk reads it, and say where a problem is.

What it understands (as main/config.c does):

* ``[name]`` sections, ``[name](!)`` templates, ``[x](tpl1,tpl2)`` inheritance,
  ``[x](!,tpl)``, ``[x](+)`` additions to an earlier section;
* ``key = value`` and ``key => value`` (objects: ``exten``, ``same``, ``include``, ``member``);
* ``;`` comments, ``\\;`` kept as a literal ``;``, ``;-- block --;`` comments (nesting);
* ``#include`` / ``#tryinclude`` with globs; a missing ``#include`` is an error, a
  missing ``#tryinclude`` is not. Relative names resolve against ``config_dir``
  (Asterisk's rule: its configuration directory) or, when none is given, against
  the including file's directory. An included file continues the current section.

Every section and item keeps its file and line. Problems are collected, not raised
one at a time, so an admin sees all of them in one run (``Conf.errors``);
``load(..., strict=True)`` raises ``ConfParseError`` listing them all.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Conf",
    "ConfIssue",
    "ConfParseError",
    "DialplanStep",
    "Include",
    "Item",
    "Section",
    "dialplan_steps",
    "load",
    "load_tree",
    "parse",
]

MAX_INCLUDE_DEPTH = 20


@dataclass(frozen=True)
class ConfIssue:
    """One problem in a .conf file, located for a human."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class ConfParseError(Exception):
    """A .conf file (or one it includes) cannot be read as Asterisk would; lists every problem."""

    def __init__(self, issues: list[ConfIssue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


@dataclass(frozen=True)
class Item:
    """One ``key = value`` / ``key => value`` line."""

    key: str
    value: str
    object: bool  # written with "=>"
    file: str
    line: int


@dataclass
class Section:
    """One ``[name]`` header and the items under it (repeated headers are separate Sections)."""

    name: str
    file: str
    line: int
    template: bool = False
    add: bool = False
    inherits: list[str] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        """The last value of `key` in this section only (Asterisk: the last one wins)."""
        for item in reversed(self.items):
            if item.key == key:
                return item.value
        return None


@dataclass(frozen=True)
class Include:
    file: str
    line: int
    target: str
    optional: bool  # #tryinclude
    resolved: tuple[str, ...]


@dataclass
class Conf:
    """A parsed file and everything it includes, in Asterisk's reading order."""

    file: str
    sections: list[Section] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    errors: list[ConfIssue] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        """Section names in order of first appearance, templates left out."""
        seen: dict[str, None] = {}
        for s in self.sections:
            if not s.template:
                seen.setdefault(s.name, None)
        return list(seen)

    def sections_named(self, name: str) -> list[Section]:
        return [s for s in self.sections if s.name == name]

    def section(self, name: str) -> Section | None:
        found = self.sections_named(name)
        return found[0] if found else None

    def resolved_items(self, section: Section) -> list[Item]:
        """The section's items after inheritance: templates' items first, then its own (Asterisk's order)."""
        out: list[Item] = []
        seen: set[str] = set()

        def walk(s: Section) -> None:
            if id(s) in seen:
                return
            seen.add(id(s))
            for tpl_name in s.inherits:
                tpl = self._before(tpl_name, s)
                if tpl is not None:
                    walk(tpl)
            out.extend(s.items)

        walk(section)
        return out

    def values(self, section: Section) -> dict[str, str]:
        """key -> last value after inheritance."""
        return {i.key: i.value for i in self.resolved_items(section)}

    def _before(self, name: str, s: Section) -> Section | None:
        idx = self.sections.index(s)
        for cand in reversed(self.sections[:idx]):
            if cand.name == name:
                return cand
        return None


Resolver = Callable[[str, str], "list[tuple[str, str]] | None"]
"""(pattern, including file) -> [(name, text)], or None when the pattern names nothing readable."""


class _Parser:
    def __init__(self, conf: Conf, resolve: Resolver) -> None:
        self.conf = conf
        self.resolve = resolve
        self.stack: list[str] = []

    def issue(self, file: str, line: int | None, message: str) -> None:
        self.conf.errors.append(ConfIssue(file, line, message))

    def parse_text(self, text: str, filename: str, current: Section | None) -> None:
        if filename in self.stack:
            self.issue(filename, None, "includes itself (through " + " → ".join(self.stack + [filename]) + ")")
            return
        if len(self.stack) >= MAX_INCLUDE_DEPTH:
            self.issue(filename, None, f"includes nest deeper than {MAX_INCLUDE_DEPTH} levels")
            return
        self.stack.append(filename)
        self.conf.files.append(filename)
        try:
            self._lines(text, filename, current)
        finally:
            self.stack.pop()

    def _lines(self, text: str, filename: str, current: Section | None) -> None:
        depth = 0  # block comment nesting
        block_start = 0
        for lineno, raw in enumerate(text.splitlines(), 1):
            line, depth, opened = _strip_comments(raw, depth)
            if opened and depth and not block_start:
                block_start = lineno
            if not depth:
                block_start = 0
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                self._directive(line, filename, lineno, current)
                continue
            if line.startswith("["):
                current = self._header(line, filename, lineno)
                continue
            key, sep, value = line.partition("=")
            if not sep:
                self.issue(filename, lineno, f"no '=' in {line!r}: expected 'name = value' or 'name => value'")
                continue
            is_object = value.startswith(">")
            if is_object:
                value = value[1:]
            key = key.strip()
            if not key:
                self.issue(filename, lineno, f"no name before '=' in {line!r}")
                continue
            if current is None:
                self.issue(filename, lineno, f"{key!r} appears before any [section] header")
                continue
            current.items.append(Item(key, value.strip(), is_object, filename, lineno))
        if depth:
            self.issue(filename, block_start or None, "block comment ';--' is never closed with '--;'")

    def _header(self, line: str, filename: str, lineno: int) -> Section | None:
        close = line.find("]")
        if close < 0:
            self.issue(filename, lineno, f"section header {line!r} has no closing ']'")
            return None
        name = line[1:close].strip()
        if not name:
            self.issue(filename, lineno, "empty section name '[]'")
            return None
        rest = line[close + 1:].strip()
        sec = Section(name, filename, lineno)
        if rest:
            if not (rest.startswith("(") and rest.endswith(")")):
                self.issue(filename, lineno, f"unexpected text {rest!r} after [{name}]: options go in (…)")
            else:
                for opt in (o.strip() for o in rest[1:-1].split(",")):
                    if opt == "!":
                        sec.template = True
                    elif opt == "+":
                        sec.add = True
                    elif not opt:
                        self.issue(filename, lineno, f"empty option in [{name}]{rest}")
                    else:
                        sec.inherits.append(opt)
        earlier = [s for s in self.conf.sections if s.name == name]
        if sec.add and not earlier:
            self.issue(filename, lineno, f"[{name}](+) adds to a section that does not exist above it")
        for tpl in sec.inherits:
            if not any(s.name == tpl for s in self.conf.sections):
                self.issue(filename, lineno, f"[{name}] inherits from '{tpl}', which is not defined above it")
        self.conf.sections.append(sec)
        return sec

    def _directive(self, line: str, filename: str, lineno: int, current: Section | None) -> None:
        word, _, arg = line[1:].partition(" ")
        word = word.strip().lower()
        arg = arg.strip()
        if word not in ("include", "tryinclude"):
            if word == "exec":
                self.issue(filename, lineno, "#exec runs a program at load time; not allowed in hotline files")
            else:
                self.issue(filename, lineno, f"unknown directive #{word}")
            return
        if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "\"<":
            arg = arg[1:-1]
        elif arg.startswith("<") and arg.endswith(">"):
            arg = arg[1:-1]
        if not arg:
            self.issue(filename, lineno, f"#{word} without a file name")
            return
        optional = word == "tryinclude"
        found = self.resolve(arg, filename)
        self.conf.includes.append(Include(filename, lineno, arg, optional, tuple(n for n, _ in found or [])))
        if found is None:  # parse(): includes are recorded, not followed
            return
        if not found:
            if not optional:
                self.issue(filename, lineno, f"#include {arg!r}: no such file (use #tryinclude if it may be absent)")
            return
        for name, text in found:
            self.parse_text(text, name, current)


def _strip_comments(raw: str, depth: int) -> tuple[str, int, bool]:
    """Remove ';' comments (keeping '\\;' as ';') and ';-- --;' blocks; returns (text, depth, opened)."""
    out: list[str] = []
    i = 0
    opened = False
    n = len(raw)
    while i < n:
        if depth:
            if raw.startswith("--;", i):
                depth -= 1
                i += 3
            elif raw.startswith(";--", i):
                depth += 1
                i += 3
            else:
                i += 1
            continue
        ch = raw[i]
        if ch == "\\" and i + 1 < n and raw[i + 1] == ";":
            out.append(";")
            i += 2
            continue
        if ch == ";":
            if raw.startswith(";--", i):
                depth += 1
                opened = True
                i += 3
                continue
            break
        out.append(ch)
        i += 1
    return "".join(out), depth, opened


def _glob_match(name: str, pattern: str) -> bool:
    """glob(3) matching: a wildcard never crosses '/'."""
    a, b = name.split("/"), pattern.split("/")
    return len(a) == len(b) and all(fnmatch.fnmatchcase(x, y) for x, y in zip(a, b))


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def parse(text: str, filename: str = "<conf>") -> Conf:
    """Parse one file's text; includes are recorded but not followed (they resolve to nothing)."""
    conf = Conf(filename)
    _Parser(conf, lambda pattern, inc: None).parse_text(text, filename, None)
    return conf


def load(path: str | os.PathLike[str], *, config_dir: str | os.PathLike[str] | None = None,
         strict: bool = False) -> Conf:
    """Parse a file on disk and everything it includes (globs sorted, as glob(3) does)."""
    path = Path(path)
    base = Path(config_dir) if config_dir is not None else None

    def resolve(pattern: str, including: str) -> list[tuple[str, str]] | None:
        p = Path(pattern)
        if not p.is_absolute():
            p = (base if base is not None else Path(including).parent) / p
        names = sorted(glob.glob(str(p))) if _has_magic(pattern) else ([str(p)] if p.exists() else [])
        out = []
        for name in names:
            try:
                out.append((name, Path(name).read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as e:
                conf.errors.append(ConfIssue(name, None, f"cannot read: {e}"))
        return out

    conf = Conf(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        conf.errors.append(ConfIssue(str(path), None, f"cannot read: {getattr(e, 'strerror', None) or e}"))
    else:
        _Parser(conf, resolve).parse_text(text, str(path), None)
    if strict and conf.errors:
        raise ConfParseError(conf.errors)
    return conf


def load_tree(files: Mapping[str, str], name: str, *, strict: bool = False) -> Conf:
    """Parse `files[name]` following includes inside `files` (names relative to Asterisk's config dir).

    This is how ``check`` and ``apply`` read a rendered tree before it touches disk.
    """

    def resolve(pattern: str, including: str) -> list[tuple[str, str]] | None:
        pat = os.path.normpath(pattern)
        if _has_magic(pat):
            return [(k, files[k]) for k in sorted(files) if _glob_match(k, pat)]
        return [(pat, files[pat])] if pat in files else []

    conf = Conf(name)
    if name not in files:
        conf.errors.append(ConfIssue(name, None, "no such file"))
    else:
        _Parser(conf, resolve).parse_text(files[name], name, None)
    if strict and conf.errors:
        raise ConfParseError(conf.errors)
    return conf


# --------------------------------------------------------------------------- dialplan


@dataclass(frozen=True)
class DialplanStep:
    """One ``exten``/``same`` line of extensions.conf, with the extension ``same`` refers to filled in."""

    context: str
    exten: str
    priority: str
    label: str | None
    app: str
    item: Item


def dialplan_steps(conf: Conf) -> tuple[list[DialplanStep], list[ConfIssue]]:
    """Extension lines of every context, and the problems pbx_config would warn about."""
    steps: list[DialplanStep] = []
    issues: list[ConfIssue] = []
    for sec in conf.sections:
        if sec.name in ("general", "globals"):
            continue
        last: str | None = None
        for item in sec.items:
            if item.key not in ("exten", "same"):
                continue
            parts = _split_args(item.value)
            if item.key == "exten":
                if len(parts) < 3:
                    issues.append(ConfIssue(item.file, item.line,
                                            f"[{sec.name}] exten needs 'pattern,priority,Application(...)'"))
                    continue
                exten, prio, app = parts[0].strip(), parts[1].strip(), ",".join(parts[2:]).strip()
                last = exten
            else:
                if last is None:
                    issues.append(ConfIssue(item.file, item.line,
                                            f"[{sec.name}] 'same =>' before any 'exten =>' in this context"))
                    continue
                if len(parts) < 2:
                    issues.append(ConfIssue(item.file, item.line, f"[{sec.name}] same needs 'priority,Application(...)'"))
                    continue
                exten, prio, app = last, parts[0].strip(), ",".join(parts[1:]).strip()
            label = None
            if "(" in prio and prio.endswith(")"):
                prio, _, label = prio[:-1].partition("(")
            if not (prio.isdigit() or prio in ("n", "hint") or prio.startswith("n+")):
                issues.append(ConfIssue(item.file, item.line, f"[{sec.name}] priority {prio!r} is not a number, n or hint"))
            if "(" in app and not _parentheses_close(app):
                # pbx_config.c: "No closing parenthesis found? '…'" — typically a ';' in the
                # arguments started a comment and cut the line (write it as '\;')
                issues.append(ConfIssue(item.file, item.line,
                                        f"[{sec.name}] no closing parenthesis in {app!r} (an unescaped ';' starts "
                                        "a comment in Asterisk's .conf files: write it as '\\;')"))
            steps.append(DialplanStep(sec.name, exten, prio, label, app, item))
    return steps, issues


def _parentheses_close(app: str) -> bool:
    """Whether the application's argument list `App(…)` is closed, as pbx_config requires."""
    depth = 0
    for ch in app:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
    return depth <= 0 and app.rstrip().endswith(")")


def _split_args(value: str) -> list[str]:
    """Split at commas outside parentheses (the application's own arguments stay whole)."""
    out, buf, depth = [], [], 0
    for ch in value:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf))
    return out


def iter_items(conf: Conf, key: str) -> Iterator[tuple[Section, Item]]:
    for sec in conf.sections:
        for item in sec.items:
            if item.key == key:
                yield sec, item
