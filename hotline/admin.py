"""What the admin commands decide: check, explain, transitions, render and apply.

Pure-ish on purpose: `check_config`, `explain_call` and `transition_rows` take a
Config and return data (no printing, no Asterisk), so tests and the CLI share them;
`apply_config` is the one async function that touches the running Asterisk, through
a sandbox (files) and an AMI client (reloads and verification) that a test can fake.

The decisions shown by `explain` come from the same pure cores the controller runs
(routing.numberplan.decide and ivr.menu.MenuEngine), so what the admin reads is what
a caller meets.
"""

from __future__ import annotations

import datetime as dt
import difflib
import inspect
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog
import yaml

from wire.conf import dialplan_steps, load_tree, parse
from model.config import Config, ConfigError, Problem, _line_for, _LineLoader, _locate, parse_config
from model.destinations import (
    AnnounceDest,
    Destination,
    DialDest,
    HangupDest,
    LegacyDest,
    MenuDest,
    QueueDest,
    SelfServiceDest,
    TransferDest,
)

log = structlog.get_logger("hotline.admin")

REPO = Path(__file__).resolve().parent.parent
CUSTOM_DIR = REPO / "dialplans" / "custom"

#: Contexts under our prefix that the admin owns (README of dialplans/custom): forwarded numbers leave here.
ADMIN_CONTEXTS = frozenset({"hotline-outbound"})
OUR_PREFIX = "hotline-"

Lines = dict[tuple[Any, ...], int]


class EnvironmentMissing(RuntimeError):
    """Something outside the config is missing (a secret, a module, an Asterisk): the CLI exits 3."""


# =========================================================================== loading


@dataclass
class Loaded:
    """A config file read for the admin: the model (None when invalid), its YAML lines, and problems."""

    file: str
    config: Config | None
    lines: Lines
    problems: list[Problem]


def yaml_lines(text: str) -> Lines:
    """Line of every mapping key and sequence item, keyed by path (as model.config locates pydantic errors)."""
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError:
        return {}
    out: Lines = {}
    if node is not None:
        _locate(node, (), out)
    return out


def line_of(lines: Lines, *path: Any) -> int | None:
    return _line_for(lines, tuple(path)) if lines else None


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


def load_for_admin(path: str | os.PathLike[str]) -> Loaded:
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
    return Loaded(str(p), cfg, yaml_lines(text), problems)


# =========================================================================== check


def _graph_problems(config: Config, file: str, lines: Lines) -> list[Problem]:
    """routing.graph.validate, called with whichever of file/lines its signature takes."""
    from routing import graph

    fn = graph.validate
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    if "lines" in params:
        kwargs["lines"] = lines
    for name in ("file", "filename", "path", "source"):
        if name in params:
            kwargs[name] = file
            break
    return list(fn(config, **kwargs))


def secret_problems(config: Config, file: str, lines: Lines, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """Per seat: a secret must be configured and readable; an endpoint without one could be registered by anyone."""
    env = os.environ if environ is None else environ
    out: list[Problem] = []
    for ext, seat in config.seats.items():
        where = line_of(lines, "seats", ext)
        if not seat.secret_env and not seat.secret_file:
            continue  # routing.graph reports it (a config problem, not an environment one)
        if seat.secret_file:
            try:
                if Path(seat.secret_file).read_text().strip():
                    continue
                why = f"secret_file {seat.secret_file} is empty"
            except OSError as e:
                why = f"secret_file {seat.secret_file} cannot be read ({e.strerror or e})"
            if seat.secret_env and env.get(seat.secret_env):
                continue
            out.append(Problem(file, where, f"seats.{ext}", why))
        elif not env.get(seat.secret_env or ""):
            out.append(Problem(file, where, f"seats.{ext}",
                               f"environment variable ${seat.secret_env} is not set (the seat's SIP secret)"))
    return out


#: Asterisk's DTMF features as our features.conf sets them, by the key that names them there.
BUILTIN_FEATURE_KEYS = {
    "featuremap": ("blindxfer", "atxfer", "disconnect", "automon", "automixmon", "parkcall"),
    "general": ("atxferabort", "atxfercomplete", "atxferthreeway", "atxferswap", "pickupexten"),
}
#: Asterisk's own defaults when features.conf does not set them (features_config.c).
BUILTIN_FEATURE_DEFAULTS = {"blindxfer": "#", "disconnect": "*", "pickupexten": "*8"}


def builtin_features(features_conf: str) -> dict[str, str]:
    """name -> DTMF code of Asterisk's built-in features, read from our rendered features.conf."""
    conf = parse(features_conf, "features.conf")
    out = dict(BUILTIN_FEATURE_DEFAULTS)
    for section, keys in BUILTIN_FEATURE_KEYS.items():
        for sec in conf.sections_named(section):
            for key in keys:
                v = sec.get(key)
                if v is not None:
                    if v:
                        out[key] = v
                    else:
                        out.pop(key, None)
    return out


def feature_code_problems(config: Config, file: str, lines: Lines, features_conf: str | None) -> list[Problem]:
    """One-key codes against the built-ins our rendered features.conf actually sets.

    routing.graph checks codes against each other and Asterisk's defaults; this adds
    what only the rendered file knows (e.g. the attended-transfer keys *1..*4 that
    are live while an agent transfers). Asterisk matches in-call features digit by
    digit, so a code that is a prefix of another (or equal) shadows it.
    """
    try:
        from routing.graph import BUILTIN_FEATURES, PICKUP_EXTEN
        known = set(BUILTIN_FEATURES) | {PICKUP_EXTEN}
    except ImportError:
        known = set()
    builtins = builtin_features(features_conf) if features_conf is not None else {}
    builtins.pop("pickupexten", None)  # dialed, not keyed in a call
    out: list[Problem] = []
    for group in ("transfer_targets", "branch_centers"):
        for key, t in getattr(config, group).items():
            code = t.feature_code
            if not code or not re.fullmatch(r"[0-9*#]+", code):
                continue  # routing.graph reports malformed codes
            fieldpath = f"{group}.{key}.feature_code"
            for name, b in sorted(builtins.items()):
                if b in known or not (code == b or code.startswith(b) or b.startswith(code)):
                    continue
                how = "is" if code == b else ("starts with" if code.startswith(b) else "is the start of")
                out.append(Problem(file, line_of(lines, group, key, "feature_code"), fieldpath,
                                   f"feature code {code} {how} {b}, set as {name} in the rendered features.conf; "
                                   "the shorter code fires first"))
    return out


def _custom_path(name: str, custom_dir: Path) -> str:
    """Map a tree name (custom/x.conf) back to the admin's file, relative to the repo when possible."""
    if name.startswith("custom/"):
        p = custom_dir / name.removeprefix("custom/")
        try:
            return str(p.relative_to(Path.cwd()))
        except ValueError:
            return str(p)
    return name


def custom_problems(files: Mapping[str, str], custom_dir: Path) -> list[Problem]:
    """Admin-owned custom/*.conf: parse errors, and contexts that would merge into ours."""
    out: list[Problem] = []
    ours = load_tree({k: v for k, v in files.items() if not k.startswith("custom/")}, "extensions.conf")
    our_contexts = set(ours.names())
    for name in sorted(n for n in files if n.startswith("custom/")):
        conf = load_tree(files, name)
        path = _custom_path
        for issue in conf.errors:
            out.append(Problem(path(issue.file, custom_dir), issue.line, "syntax", issue.message))
        for issue in dialplan_steps(conf)[1]:
            out.append(Problem(path(issue.file, custom_dir), issue.line, "dialplan", issue.message))
        for sec in conf.sections:
            if sec.file != name and not sec.file.startswith("custom/"):
                continue
            where = path(sec.file, custom_dir)
            if sec.name == "globals":
                for item in sec.items:
                    if item.key.upper().startswith("HOTLINE_"):
                        out.append(Problem(where, item.line, f"[globals] {item.key}",
                                           "redefines a hotline variable the rendered dialplan relies on"))
                continue
            if sec.name == "general":
                out.append(Problem(where, sec.line, "[general]",
                                   "extensions.conf's [general] is ours (static, writeprotect); remove it here"))
                continue
            if sec.name in ADMIN_CONTEXTS:
                continue
            if sec.name in our_contexts:
                out.append(Problem(where, sec.line, f"[{sec.name}]",
                                   "this context is rendered by hotline; Asterisk would merge both and mix "
                                   "their extensions. Use another name"))
            elif sec.name.startswith(OUR_PREFIX):
                out.append(Problem(where, sec.line, f"[{sec.name}]",
                                   f"the {OUR_PREFIX}* names are reserved for rendered contexts "
                                   f"(only {', '.join(sorted(ADMIN_CONTEXTS))} is yours); use another name"))
    return out


def render_files(config: Config, seat_secrets: Mapping[str, str], *, ami_secret: str, with_sim: bool = False,
                 layout: Any = None, custom_dir: Path = CUSTOM_DIR) -> dict[str, str]:
    """Rendered files plus the admin's custom/*.conf, exactly what goes into Asterisk's etc dir."""
    from routing.dialplan import Layout, RenderInputs, custom_files, render

    inputs = RenderInputs(ami_secret=ami_secret, seat_secrets=dict(seat_secrets), with_sim=with_sim,
                          layout=layout or Layout(), sip_bind=config.asterisk.ami.host)
    files = render(config, inputs)
    files.update(custom_files(custom_dir))
    return files


def check_config(config: Config, *, file: str = "<config>", lines: Lines | None = None,
                 prompts_dir: Path | None = None, custom_dir: Path = CUSTOM_DIR,
                 environ: Mapping[str, str] | None = None, seat_secrets: Mapping[str, str] | None = None,
                 files: Mapping[str, str] | None = None, check_secrets: bool = True) -> list[Problem]:
    """Every problem at once: the routing graph, secrets, prompts, custom dialplan, feature codes, rendering.

    `seat_secrets` given: those are the secrets (apply's own resolution) and the
    environment is not consulted. `files` given: check that render instead of rendering.
    """
    lines = lines or {}
    problems: list[Problem] = []
    try:
        problems += _graph_problems(config, file, lines)
    except ImportError as e:
        problems.append(Problem(file, None, "", f"whole-graph validation is unavailable ({e})"))
    if seat_secrets is None:
        if check_secrets:
            problems += secret_problems(config, file, lines, environ)
    else:
        for ext in config.seats:
            if not seat_secrets.get(ext):
                problems.append(Problem(file, line_of(lines, "seats", ext), f"seats.{ext}", "no SIP secret available"))
    if prompts_dir is not None:
        from ivr.prompts import missing_prompts

        for pid in missing_prompts(config, prompts_dir):
            problems.append(Problem(file, line_of(lines, "prompts", pid) if pid in config.prompts else None,
                                    f"prompts.{pid}", f"no playable {prompts_dir}/{pid}.wav: run `hotline prompts`"))
    if files is None:
        try:
            files = render_files(config, {k: "check" for k in config.seats}, ami_secret="check",
                                 custom_dir=custom_dir)
        except Exception as e:  # noqa: BLE001 - a template error is a finding, not a crash
            problems.append(Problem(file, None, "render", f"the Asterisk files do not render: {type(e).__name__}: {e}"))
            files = None
    if files is not None:
        for name in sorted(n for n in files if not n.startswith(("custom/", "sim/"))):
            conf = load_tree(files, name)
            for issue in conf.errors:
                if not issue.file.startswith("custom/"):
                    problems.append(Problem(f"rendered {issue.file}", issue.line, "render", issue.message))
        problems += custom_problems(files, custom_dir)
        problems += feature_code_problems(config, file, lines, files.get("features.conf"))
    else:
        problems += feature_code_problems(config, file, lines, None)
    return _dedupe(problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def check_file(path: str | os.PathLike[str], *, prompts_dir: Path | None = None, custom_dir: Path = CUSTOM_DIR,
               environ: Mapping[str, str] | None = None,
               check_secrets: bool = True) -> tuple[Config | None, list[Problem]]:
    """check for a file on disk: load problems first, then (when it loads) everything check_config finds."""
    loaded = load_for_admin(path)
    problems = list(loaded.problems)
    if loaded.config is not None:
        problems += check_config(loaded.config, file=loaded.file, lines=loaded.lines, prompts_dir=prompts_dir,
                                 custom_dir=custom_dir, environ=environ, check_secrets=check_secrets)
    else:
        # the model did not load; the admin's dialplan files can still be checked
        from routing.dialplan import custom_files

        try:
            files = {"extensions.conf": "", **custom_files(custom_dir)}
            problems += custom_problems(files, custom_dir)
        except OSError as e:
            problems.append(Problem(str(custom_dir), None, "", f"cannot read: {e}"))
    return loaded.config, _dedupe(problems)


def problem_dict(p: Problem) -> dict[str, Any]:
    return {"file": p.file, "line": p.line, "field": p.field, "message": p.message, "text": str(p)}


# =========================================================================== explain


def parse_at(text: str | None, tz: str) -> dt.datetime:
    """`YYYY-MM-DD HH:MM[:SS]` (or a date) in the center's time zone; None is now."""
    zone = ZoneInfo(tz)
    if not text:
        return dt.datetime.now(zone)
    text = text.strip().replace("T", " ")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=zone)
        except ValueError:
            continue
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: write it as 2022-01-15 09:30") from None
    return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed.astimezone(zone)


def parse_digits(text: str | None) -> list[str | None]:
    """`1,2` → one input per comma; an empty entry, `t` or `-` is a timeout (the caller says nothing)."""
    if not text:
        return []
    out: list[str | None] = []
    for part in text.split(","):
        part = part.strip()
        if part in ("", "t", "-", "timeout"):
            out.append(None)
        elif re.fullmatch(r"[0-9*#A-Da-d]+", part):
            out.append(part)
        else:
            raise ValueError(f"{part!r} is not DTMF: use digits, * and #, separated by commas")
    return out


@dataclass
class ExplainStep:
    """One thing that happens to the call; `kind` is stable for --json readers."""

    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Explanation:
    dialed: str
    caller: str | None
    at: dt.datetime
    steps: list[ExplainStep]
    final: str
    path: list[str]

    def lines(self) -> list[str]:
        head = f"call to {self.dialed}" + (f" from {self.caller}" if self.caller else "") + f" at {self.at.isoformat()}"
        return [head] + [f"{i:2}. {s.text}" for i, s in enumerate(self.steps, 1)]

    def to_json(self) -> dict[str, Any]:
        return {"dialed": self.dialed, "caller": self.caller, "at": self.at.isoformat(), "final": self.final,
                "path": self.path, "steps": [{"kind": s.kind, "text": s.text, **_jsonable(s.data)} for s in self.steps]}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if hasattr(v, "model_dump"):
        return v.model_dump(mode="json")
    if is_dataclass(v) and not isinstance(v, type):
        return _jsonable(asdict(v))
    if hasattr(v, "value") and not isinstance(v, (str, int, float, bool)):
        return v.value
    return v


MODE_TEXT = {
    "merged": "merged into 12345 (整体并入)",
    "dual_retained": "dual numbers, own seats retained (双号并行·保留座席)",
    "dual_cancelled": "dual numbers, seats cancelled: 12345 seats answer with its skill (双号并行·取消座席)",
    "branch_center": "branch center: 12345 answers, warm-transfers to the department (设分中心)",
    "forward": "call forwarding (呼叫转移)",
    "dedicated": "dedicated seats (专席受理)",
    "parallel": "parallel: the old number is still reachable directly (并联)",
}


def _prompt_text(config: Config, name: str) -> str:
    text = config.prompts.get(name)
    return f"{name} 「{text}」" if text else name


def explain_call(config: Config, dialed: str, caller: str | None, at: dt.datetime,
                 digits: list[str | None] | None = None) -> Explanation:
    """How a call to `dialed` at `at` is handled, step by step, from the controller's own cores.

    Mirrors ivr.calls.CallScripts._inbound: number plan decision → its announcements →
    menu walk (the engine) → legacy hops chosen in a menu → what the dialplan does
    with the final destination (queue hours, overflow chain, transfer fallback).
    """
    from ivr import menu as m
    from routing.numberplan import decide

    steps: list[ExplainStep] = []
    decision = decide(config, dialed, caller or "", at)
    steps.append(_decision_step(config, dialed, decision))
    for w in getattr(decision, "warnings", []) or []:
        steps.append(ExplainStep("warning", f"warning: {w}", {"warning": str(w)}))
    greeted = False
    for prompt in decision.announcements:
        greeted = greeted or prompt == config.center.greeting
        steps.append(ExplainStep("announcement", f"plays {_prompt_text(config, prompt)}", {"prompt": prompt}))
    inputs: list[m.Event] = []
    for d in digits or []:
        if d is None:
            inputs.append(m.Timeout())
        else:
            inputs.extend(m.Digit(k) for k in d)
    path: list[str] = []
    dest, category = _walk(config, at, decision.dest, inputs, steps, path)
    category = category or getattr(decision, "category", None)
    hops = 0
    while isinstance(dest, LegacyDest) and hops < 4:
        hops += 1
        sub = decide(config, dest.line, caller or "", at)
        steps.append(_decision_step(config, dest.line, sub, chosen=True))
        for prompt in sub.announcements:
            if prompt != config.center.greeting:
                steps.append(ExplainStep("announcement", f"plays {_prompt_text(config, prompt)}", {"prompt": prompt}))
        if isinstance(sub.dest, HangupDest):
            if sub.dest.prompt:
                steps.append(ExplainStep("announcement", f"plays {_prompt_text(config, sub.dest.prompt)}",
                                         {"prompt": sub.dest.prompt}))
            steps.append(ExplainStep("fail_open", "chosen from a menu, a retired line does not hang up: "
                                     "an agent instead (不挂机，转人工)", {}))
            dest = QueueDest(queue=config.center.general_queue)
            break
        dest, cat2 = _walk(config, at, sub.dest, inputs, steps, path)
        category = cat2 or getattr(sub, "category", None) or category
    if isinstance(dest, SelfServiceDest):
        steps.append(ExplainStep("self_service", "self-service progress query (办理进度查询): ticket number and query "
                                 "password; 0, too many wrong tries or no store → the general queue",
                                 {"service": dest.service}))
        dest = QueueDest(queue=config.center.general_queue)
    steps.extend(_final_steps(config, dest, category, at))
    return Explanation(dialed, caller, at, steps, dest.label(), path)


def _decision_step(config: Config, dialed: str, d: Any, chosen: bool = False) -> ExplainStep:
    """The number plan's decision in words: line, mode, transition status, where the call goes first."""
    line = d.line
    data: dict[str, Any] = {"dialed": dialed, "mode": d.mode, "line": line, "dest": d.dest.label(),
                            "reason": d.reason, "window_end": d.window_end, "days_left": d.days_left,
                            "category": d.category}
    lead = "chosen in the menu: " if chosen else ""
    if line and line in config.legacy_lines:
        ll = config.legacy_lines[line]
        text = (f"{lead}{line} is the legacy line {ll.name}" + (f" of {ll.department}" if ll.department else "")
                + f"; mode {MODE_TEXT.get(ll.mode, ll.mode)}")
        if ll.mode == "merged":
            status = _status_from(d, ll)
            data.update(merged_on=ll.merged_on, status=status, after_window=ll.after_window)
            if d.window_end is not None:
                last = d.window_end - dt.timedelta(days=1)
                text += (f"; merged on {ll.merged_on}; transition window announces through {last} "
                         f"(window end {d.window_end}, exclusive)")
                text += f"; status {status}" + (f", {d.days_left} day(s) left" if d.days_left else "")
                if status in ("retired", "put_through"):
                    text += f"; after the window: {ll.after_window}"
            else:
                text += f"; status {status} (no merged_on: announcing with no end date)"
    elif d.mode == "center":
        text = f"{dialed} is the center number ({config.center.name})"
    else:
        text = f"{lead}{dialed}: mode {d.mode}"
    text += f". {d.reason}"
    return ExplainStep("number_plan", text, data)


def _status_from(d: Any, ll: Any) -> str:
    """Transition status as the decision implies it (the decision was taken at the call's local date)."""
    if d.window_end is None:
        return "announcing" if ll.merged_on is None else "pending"
    if d.days_left is None:
        return "pending"
    if d.days_left > 0:
        return "announcing"
    return "retired" if ll.after_window == "retire" else "put_through"


def _walk(config: Config, at: dt.datetime, dest: Destination, inputs: list[Any], steps: list[ExplainStep],
          path: list[str]) -> tuple[Destination, Any]:
    """Run the menu engine as the controller does, consuming `inputs`, then timeouts (a silent caller)."""
    from ivr import menu as m

    if not isinstance(dest, (MenuDest, AnnounceDest)):
        return dest, None
    engine = m.MenuEngine(config, at)
    seen = 0

    def record(step: m.Step) -> None:
        nonlocal seen
        labels = engine.path[seen:]
        seen = len(engine.path)
        for text in m._step_lines(config, labels, step):  # the engine's own wording (ivr.menu)
            steps.append(ExplainStep("menu", text.strip(), {"labels": labels}))
            labels = []

    step = engine.start(dest)
    record(step)
    while not step.done:
        if inputs:
            ev = inputs.pop(0)
            what = f"caller presses {ev.key} (按键)" if isinstance(ev, m.Digit) else "caller says nothing (超时无输入)"
        else:
            ev = m.Timeout()
            what = "no more input: timeout (无更多输入，超时)"
        steps.append(ExplainStep("input", what, {"key": getattr(ev, "key", None)}))
        step = engine.feed(ev)
        record(step)
    path.extend(engine.path)
    assert engine.route is not None
    return engine.route.dest, engine.route.category


def _final_steps(config: Config, dest: Destination, category: Any, at: dt.datetime) -> list[ExplainStep]:
    """What the dialplan does with the route (routing/dialplan.py, extensions.conf.j2)."""
    from routing.dialplan import _overflow_app, asterisk_queue
    from model.hours import is_open

    from routing.queues import resolve_queue

    out: list[ExplainStep] = []
    resolved, prompts, notes = resolve_queue(config, dest, at)
    for note in notes:
        out.append(ExplainStep("hours", note, {"dest": dest.label()}))
    for prompt in prompts:
        out.append(ExplainStep("announcement", f"plays {_prompt_text(config, prompt)}", {"prompt": prompt}))
    dest = resolved
    cat = f", category {category.value}" if category is not None and hasattr(category, "value") else ""
    if isinstance(dest, QueueDest):
        name = dest.queue
        seen: list[str] = []
        first = True
        waited: int | None = None
        while name in config.queues and name not in seen:
            seen.append(name)
            q = config.queues[name]
            data: dict[str, Any] = {"queue": name, "asterisk_queue": asterisk_queue(name), "members": q.members,
                                    "max_wait_s": q.max_wait_s, "strategy": q.strategy}
            verb = "queue" if first else f"after {waited} s unanswered: overflow to queue"
            waited = q.max_wait_s
            text = (f"{verb} {name} ({q.name}){cat}: members {', '.join(q.members) or 'none'}, "
                    f"{q.strategy}, rings each {q.ring_s} s, waits up to {q.max_wait_s} s")
            if q.hours:
                open_now = is_open(config.hours.get(q.hours), at, config.center.timezone)
                data.update(hours=q.hours, open=open_now)
                text += f"; hours {q.hours}: {'open now' if open_now else 'closed now'}"
                if not open_now and q.closed is not None:
                    text += f" (closed → {q.closed.label()})"
                    data["closed"] = q.closed.label()
            out.append(ExplainStep("queue" if first else "overflow", text, data))
            first = False
            _app, label = _overflow_app(config, name, q)
            nxt = q.overflow
            if nxt is None:
                out.append(ExplainStep("overflow", f"after {q.max_wait_s} s unanswered: {label} (no overflow set)",
                                       {"queue": name, "then": label}))
                break
            if not isinstance(nxt, QueueDest):
                out.append(ExplainStep("overflow", f"after {q.max_wait_s} s unanswered: {nxt.label()}",
                                       {"queue": name, "then": nxt.label()}))
                out.extend(_final_steps(config, nxt, None, at)[:1] if not isinstance(nxt, HangupDest) else [])
                break
            name = nxt.queue
            if name in seen:
                out.append(ExplainStep("overflow", f"after {q.max_wait_s} s unanswered: back to queue {name} "
                                       "(the chain loops; callers keep waiting, never dropped)",
                                       {"queue": q.name, "then": f"queue:{name}"}))
        if dest.queue not in config.queues:
            out.append(ExplainStep("fail_open", f"queue {dest.queue} is not defined: the dialplan puts the caller "
                                   f"in {config.center.general_queue}", {"queue": dest.queue}))
    elif isinstance(dest, TransferDest):
        t = config.trunk(dest.target)
        if t is None:
            out.append(ExplainStep("fail_open", f"transfer target {dest.target} is unknown: the general queue",
                                   {"target": dest.target}))
        else:
            out.append(ExplainStep("transfer", f"transfer to {dest.target} ({t.name}): Dial({t.dial},{t.ring_s}); "
                                   f"no answer → queue {config.center.general_queue}",
                                   {"target": dest.target, "dial": t.dial, "ring_s": t.ring_s}))
    elif isinstance(dest, DialDest):
        out.append(ExplainStep("dial", f"dial {dest.number} (呼叫转移); if it fails → queue "
                               f"{config.center.general_queue}", {"number": dest.number}))
    elif isinstance(dest, HangupDest):
        if dest.prompt:
            out.append(ExplainStep("announcement", f"plays {_prompt_text(config, dest.prompt)}", {"prompt": dest.prompt}))
        out.append(ExplainStep("hangup", "hangs up (挂机): configured retirement of this line", {}))
    else:
        out.append(ExplainStep("route", f"goes to {dest.label()}", {"dest": dest.label()}))
    out.append(ExplainStep("final", f"final destination: {dest.label()}{cat}", {"dest": dest.label()}))
    return out


# =========================================================================== transitions


def transition_rows(config: Config, today: dt.date) -> list[dict[str, Any]]:
    """The legacy-line calendar from routing.numberplan.transition_calendar, as plain rows sorted by window end."""
    from routing.numberplan import transition_calendar

    rows = []
    for entry in transition_calendar(config, today):
        if isinstance(entry, dict):
            row = dict(entry)
        elif is_dataclass(entry) and not isinstance(entry, type):
            row = asdict(entry)
        elif hasattr(entry, "model_dump"):
            row = entry.model_dump()
        else:
            row = dict(vars(entry))
        rows.append(row)
    far = dt.date.max
    rows.sort(key=lambda r: (r.get("window_end") or far, str(r.get("line") or r.get("number") or "")))
    return rows


# =========================================================================== apply


class SandboxLike(Protocol):
    """What apply needs of hotline.sandbox.Sandbox (a test passes a fake in a tmp dir)."""

    @property
    def etc_dir(self) -> Path: ...

    @property
    def layout(self) -> Any: ...

    def install_config(self, files: dict[str, str]) -> None: ...


class AmiLike(Protocol):
    async def action(self, name: str, **headers: Any) -> dict[str, Any]: ...


@dataclass
class StepResult:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class ApplyResult:
    """What apply did; `ok` False means the running Asterisk is on the previous files (rolled back) or untouched."""

    ok: bool
    dry_run: bool
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    diff: str = ""
    problems: list[Problem] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    failed_step: str | None = None
    message: str = ""
    backup_dir: Path | None = None
    rolled_back: bool = False
    needs_restart: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "dry_run": self.dry_run, "changed": self.changed, "removed": self.removed,
                "problems": [problem_dict(p) for p in self.problems],
                "steps": [asdict(s) for s in self.steps], "failed_step": self.failed_step, "message": self.message,
                "backup_dir": str(self.backup_dir) if self.backup_dir else None, "rolled_back": self.rolled_back,
                "needs_restart": self.needs_restart}


#: file → the reload that makes Asterisk read it, in the order they run. manager.conf last: it may drop our link.
RELOADS: list[tuple[str, str]] = [
    ("pjsip.conf", "module reload res_pjsip.so"),
    ("queues.conf", "module reload app_queue.so"),
    ("features.conf", "module reload features"),
    ("rtp.conf", "module reload res_rtp_asterisk.so"),
    ("musiconhold.conf", "moh reload"),
    ("logger.conf", "logger reload"),
    ("cdr.conf", "module reload cdr"),
    ("cdr_custom.conf", "module reload cdr_custom.so"),
    ("cdr_manager.conf", "module reload cdr_manager.so"),
    ("extensions.conf", "dialplan reload"),
    ("manager.conf", "manager reload"),
]
#: read only at start-up
RESTART_ONLY = ("asterisk.conf", "modules.conf")


def reload_commands(changed: list[str]) -> tuple[list[str], list[str]]:
    """(CLI reload commands for the changed files, files that only take effect at a restart)."""
    names = set(changed)
    if any(n.startswith(("custom/", "sim/")) for n in names):
        names.add("extensions.conf")
    cmds = [cmd for f, cmd in RELOADS if f in names]
    return cmds, [f for f in RESTART_ONLY if f in names]


_SECRET_LINE = re.compile(r"^(\s*(?:password|secret)\s*=\s*).*$", re.IGNORECASE)


def _mask_secrets(text: str) -> str:
    return "\n".join(_SECRET_LINE.sub(r"\1********", ln) for ln in text.split("\n"))


def unified_diff(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """Reviewable diff of the etc dir, secrets masked (a diff ends up in terminals and tickets)."""
    chunks: list[str] = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        chunks.extend(difflib.unified_diff(
            _mask_secrets(a or "").splitlines(keepends=True), _mask_secrets(b or "").splitlines(keepends=True),
            fromfile=f"a/{name}" if a is not None else "/dev/null", tofile=f"b/{name}" if b is not None else "/dev/null"))
        if chunks and not chunks[-1].endswith("\n"):
            chunks[-1] += "\n"
    return "".join(chunks)


def read_installed(etc_dir: Path, names: set[str]) -> dict[str, bytes]:
    """The bytes Asterisk runs now: the files we would write, plus every custom/ and sim/ file of ours."""
    out: dict[str, bytes] = {}
    for name in names:
        p = etc_dir / name
        if p.is_file():
            out[name] = p.read_bytes()
    for sub in ("custom", "sim"):
        d = etc_dir / sub
        if d.is_dir():
            for f in sorted(d.glob("*.conf")):
                out[f"{sub}/{f.name}"] = f.read_bytes()
    return out


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="surrogateescape")


def installed_seat_secrets(installed: Mapping[str, bytes]) -> dict[str, str]:
    """Seat passwords in the running pjsip.conf: kept when this shell lacks the env var (demo secrets are random)."""
    raw = installed.get("pjsip.conf")
    if raw is None:
        return {}
    conf = parse(_text(raw), "pjsip.conf")
    out = {}
    for sec in conf.sections:
        vals = conf.values(sec)
        if vals.get("type") == "auth" and vals.get("username") and vals.get("password"):
            out[vals["username"]] = vals["password"]
    return out


def resolve_seat_secrets(config: Config, installed: Mapping[str, bytes],
                         environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each seat's secret from env / secret_file; otherwise the one Asterisk already has (never a made-up one)."""
    from routing.dialplan import SecretMissing, seat_secrets

    env = dict(os.environ if environ is None else environ)
    try:
        return seat_secrets(config, env)
    except SecretMissing:
        pass
    kept = installed_seat_secrets(installed)
    out = {}
    for ext in config.seats:
        try:
            out.update(seat_secrets(config.model_copy(update={"seats": {ext: config.seats[ext]}}), env))
        except SecretMissing:
            if kept.get(ext):
                out[ext] = kept[ext]
    return out


def resolve_ami_secret(config: Config) -> str:
    """hotline.controller.ami_secret (lazy: the controller imports every adapter); the env var if it cannot load."""
    try:
        from hotline.controller import ami_secret
    except ImportError:
        value = os.environ.get(config.asterisk.ami.secret_env)
        if not value:
            raise EnvironmentMissing(f"${config.asterisk.ami.secret_env} is not set and the controller module cannot be "
                               "imported to supply its default") from None
        return value
    return ami_secret(config)


def command_output(resp: Mapping[str, Any]) -> str:
    """The text of an AMI `Command` response, whichever way the client carries it."""
    for key in ("Output", "output", "__output__", "content", "Content"):
        v = resp.get(key)
        if v:
            return "\n".join(v) if isinstance(v, (list, tuple)) else str(v)
    return ""


async def ami_command(ami: AmiLike, command: str) -> str:
    """Run one CLI command over AMI; raise RuntimeError when Asterisk refuses it."""
    resp = await ami.action("Command", Command=command)
    if str(resp.get("Response", "")).lower() == "error":
        raise RuntimeError(f"Asterisk refused `{command}`: {resp.get('Message', 'error')}")
    out = command_output(resp)
    bad = ("No such command", "No such module", "Unable to reload", "not found", "failed to reload",
           "Unknown module", "not properly initialized")
    if command.endswith(("reload", ".so")) or "reload" in command:
        for b in bad:
            if b.lower() in out.lower():
                raise RuntimeError(f"`{command}` failed: {out.strip()[:300]}")
    return out


async def verify_loaded(config: Config, ami: AmiLike) -> list[StepResult]:
    """Ask Asterisk what it loaded: our inbound extension, every queue, every seat endpoint."""
    from routing.dialplan import asterisk_queue

    results = []
    out = await ami_command(ami, "dialplan show hotline-inbound")
    ok = "_X." in out and "no such context" not in out.lower()
    results.append(StepResult("verify dialplan hotline-inbound", ok,
                              "" if ok else "the inbound context has no _X. extension after the reload"))
    for name in config.queues:
        qn = asterisk_queue(name)
        out = await ami_command(ami, f"queue show {qn}")
        ok = qn in out and "no such queue" not in out.lower()
        results.append(StepResult(f"verify queue {qn}", ok, "" if ok else f"Asterisk does not know queue {qn}"))
    if config.seats:
        out = await ami_command(ami, "pjsip show endpoints")
        missing = [ext for ext in config.seats if not re.search(rf"Endpoint:\s+{re.escape(ext)}\b", out)]
        results.append(StepResult("verify pjsip endpoints", not missing,
                                  "" if not missing else f"endpoints missing after reload: {', '.join(missing)}"))
    return results


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.restore")
    tmp.write_bytes(data)
    try:
        st = path.stat()
        os.chmod(tmp, st.st_mode & 0o777)
        os.chown(tmp, st.st_uid, st.st_gid)
    except OSError:
        pass
    os.replace(tmp, path)


def _restore(etc: Path, before: Mapping[str, bytes], written: list[str], removed: list[str]) -> None:
    """Put back the exact bytes that were there, and drop files that did not exist before."""
    for name in written + removed:
        if name in before:
            _write_bytes_atomic(etc / name, before[name])
        else:
            try:
                (etc / name).unlink()
            except FileNotFoundError:
                pass


async def apply_config(config: Config, sandbox: SandboxLike, ami: AmiLike | None, *, dry_run: bool,
                       custom_dir: Path = CUSTOM_DIR, environ: Mapping[str, str] | None = None,
                       with_sim: bool | None = None, config_file: str = "<config>", lines: Lines | None = None,
                       prompts_dir: Path | None = None, backup_root: Path | None = None,
                       ami_secret: str | None = None) -> ApplyResult:
    """Render → diff → check → back up → write atomically → reload → verify; on failure restore and reload.

    Nothing on disk changes unless check is clean. Reloads are `dialplan reload`,
    `module reload app_queue.so` / `res_pjsip.so` / `features` and friends: none of
    them hangs up a live channel. `manager reload` runs last and only when
    manager.conf changed, since it can drop the AMI link we reload through.
    `with_sim` None keeps whatever the running dialplan has (the e2e simulation includes).
    """
    etc = Path(sandbox.etc_dir)
    res = ApplyResult(ok=False, dry_run=dry_run)
    # ---------------------------------------------------------------- render
    try:
        current_ext = (etc / "extensions.conf").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        current_ext = ""
    if with_sim is None:
        with_sim = '#include "sim/*.conf"' in current_ext
    if ami_secret is None:
        ami_secret = resolve_ami_secret(config)
    try:
        probe_names = set(render_files(config, {k: "x" for k in config.seats}, ami_secret=ami_secret,
                                       with_sim=with_sim, layout=sandbox.layout, custom_dir=custom_dir))
    except Exception as e:  # noqa: BLE001
        res.failed_step, res.message = "render", f"the configuration does not render: {type(e).__name__}: {e}"
        res.steps.append(StepResult("render", False, res.message))
        return res
    before = read_installed(etc, probe_names)
    secrets = resolve_seat_secrets(config, before, environ)
    files = render_files(config, secrets, ami_secret=ami_secret, with_sim=with_sim, layout=sandbox.layout,
                         custom_dir=custom_dir)
    res.steps.append(StepResult("render", True, f"{len(files)} files"))
    # ---------------------------------------------------------------- diff
    old_text = {k: _text(v) for k, v in before.items()}
    res.changed = sorted(n for n, t in files.items() if old_text.get(n) != t)
    res.removed = sorted(n for n in before if n.startswith(("custom/", "sim/")) and n not in files)
    res.diff = unified_diff(old_text, {**{k: v for k, v in old_text.items() if k not in res.removed}, **files})
    res.steps.append(StepResult("diff", True, f"{len(res.changed)} changed, {len(res.removed)} removed"))
    # ---------------------------------------------------------------- check
    res.problems = check_config(config, file=config_file, lines=lines, prompts_dir=prompts_dir,
                                custom_dir=custom_dir, seat_secrets=secrets, files=files)
    if res.problems:
        res.failed_step = "check"
        res.message = f"check found {len(res.problems)} problem(s); nothing was changed"
        res.steps.append(StepResult("check", False, res.message))
        return res
    res.steps.append(StepResult("check", True))
    cmds, res.needs_restart = reload_commands(res.changed + res.removed)
    if dry_run:
        res.ok = True
        res.message = ("dry run: nothing written; would run " + ", ".join(f"`{c}`" for c in cmds)) if cmds \
            else "dry run: Asterisk already runs this configuration"
        return res
    if not res.changed and not res.removed:
        res.ok = True
        res.message = "Asterisk already runs this configuration; nothing to do"
        return res
    if ami is None:
        res.failed_step, res.message = "connect", "no AMI connection: cannot reload; nothing was changed"
        return res
    # ---------------------------------------------------------------- backup
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    backup = (backup_root or etc.parent / "backups") / stamp
    try:
        # backups hold SIP and AMI secrets: root-only directories and files
        old_umask = os.umask(0o077)
        try:
            for name, data in before.items():
                (backup / name).parent.mkdir(parents=True, exist_ok=True)
                (backup / name).write_bytes(data)
            backup.mkdir(parents=True, exist_ok=True)
            os.chmod(backup.parent, 0o700)
        finally:
            os.umask(old_umask)
    except OSError as e:
        res.failed_step, res.message = "backup", f"cannot back up the current files to {backup}: {e}; nothing changed"
        res.steps.append(StepResult("backup", False, res.message))
        return res
    res.backup_dir = backup
    res.steps.append(StepResult("backup", True, str(backup)))
    log.info("apply_backup", dir=str(backup), files=len(before))
    # ---------------------------------------------------------------- write
    written: list[str] = []
    try:
        for name in res.changed:
            written.append(name)  # before the write: a half-done write is restored too
            sandbox.install_config({name: files[name]})
        for name in res.removed:
            (etc / name).unlink(missing_ok=True)
        res.steps.append(StepResult("write", True, f"{len(written)} written, {len(res.removed)} removed"))
    except Exception as e:  # noqa: BLE001 - any write failure is rolled back; Asterisk has not reloaded yet
        return await _rollback(res, "write", f"writing the files failed: {e}", etc, before, written,
                               res.removed, ami, cmds, reload_after=False)
    # ---------------------------------------------------------------- reload
    # `manager reload` can drop the very link we reload and verify through: it runs after verification.
    manager_last = [c for c in cmds if c == "manager reload"]
    for cmd in [c for c in cmds if c != "manager reload"]:
        try:
            out = await ami_command(ami, cmd)
        except Exception as e:  # noqa: BLE001
            return await _rollback(res, f"reload: {cmd}", f"`{cmd}` failed: {e}", etc, before, written,
                                   res.removed, ami, cmds)
        res.steps.append(StepResult(f"reload: {cmd}", True, out.strip()[:200]))
        log.info("apply_reloaded", command=cmd)
    # ---------------------------------------------------------------- verify
    try:
        checks = await verify_loaded(config, ami)
    except Exception as e:  # noqa: BLE001
        return await _rollback(res, "verify", f"asking Asterisk what it loaded failed: {e}", etc, before, written,
                               res.removed, ami, cmds)
    res.steps.extend(checks)
    bad = [c for c in checks if not c.ok]
    if bad:
        return await _rollback(res, bad[0].name, "; ".join(c.detail for c in bad), etc, before, written,
                               res.removed, ami, cmds)
    for cmd in manager_last:
        try:
            await ami_command(ami, cmd)
            res.steps.append(StepResult(f"reload: {cmd}", True))
        except Exception as e:  # noqa: BLE001 - the link may drop as AMI users are reloaded; the files are right
            res.steps.append(StepResult(f"reload: {cmd}", True, f"AMI link dropped during the reload ({e}); "
                                        "reconnect with the new secret"))
    res.ok = True
    res.message = f"applied: {len(res.changed)} file(s) changed, reloaded with " + ", ".join(f"`{c}`" for c in cmds)
    if res.needs_restart:
        res.message += f"; {', '.join(res.needs_restart)} take effect only at the next Asterisk restart"
    log.info("apply_done", changed=len(res.changed))
    return res


async def _rollback(res: ApplyResult, step: str, why: str, etc: Path, before: Mapping[str, bytes],
                    written: list[str], removed: list[str], ami: AmiLike, cmds: list[str],
                    reload_after: bool = True) -> ApplyResult:
    res.failed_step = step
    res.steps.append(StepResult(step, False, why))
    log.warning("apply_failed_rolling_back", step=step, why=why)
    try:
        _restore(etc, before, written, removed)
    except OSError as e:
        res.message = (f"{step} failed ({why}), and restoring the previous files failed too: {e}. "
                       f"The backup is in {res.backup_dir}; copy it back into {etc} by hand")
        return res
    res.rolled_back = True
    again: list[str] = []
    if reload_after:
        for cmd in cmds:
            try:
                await ami_command(ami, cmd)
            except Exception as e:  # noqa: BLE001
                again.append(f"`{cmd}` ({e})")
    res.steps.append(StepResult("rollback", not again, "previous files restored" +
                                (f"; reload after restore failed: {', '.join(again)}" if again else "")))
    res.message = f"{step} failed: {why}. The previous files are back in place"
    res.message += (" and Asterisk reloaded them" if reload_after and not again else
                    "" if not reload_after else f", but reloading them failed: {', '.join(again)}; run those by hand")
    return res


def write_rendered(files: Mapping[str, str], out: Path) -> list[Path]:
    """`hotline render --out DIR`: the files for review (secrets included: keep DIR private)."""
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(files.items()):
        p = out / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        written.append(p)
    return written


__all__ = [
    "ApplyResult", "Explanation", "ExplainStep", "Loaded", "StepResult", "apply_config", "check_config",
    "check_file", "explain_call", "load_for_admin", "parse_at", "parse_digits", "reload_commands",
    "render_files", "transition_rows", "unified_diff", "write_rendered",
]
