"""`hotline explain`: how a call would be handled, step by step — the second driver of the call-flow core.

`explain_call` runs `ivr.callflow.inbound_flow`, the very generator the live FastAGI
script (ivr/calls.py) runs, and narrates each action instead of performing it: the
caller's keys come from `--digits` (then timeouts: a silent caller), plays never
barge in, and the self-service query is taken to end at an agent. After the route,
it narrates what the dialplan does with it (queue, overflow chain, fallbacks), using
routing/dialplan.py's own overflow decision. So explain can never disagree with a call.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ivr.callflow import Decided, Greeted, MenuExit, MenuPath, Note, Now, OpenTicket, SelfService, SetRoute, inbound_flow
from ivr.menu import Collect, Digit, Event, Play, Timeout
from model.config import Config
from model.contract import Var
from model.destinations import (
    Category,
    Destination,
    DialDest,
    HangupDest,
    LegacyDest,
    QueueDest,
    SelfServiceDest,
    TransferDest,
)
from model.hours import is_open
from routing.access import greeting_choices
from routing.dialplan import asterisk_queue, overflow_step
from routing.numberplan import RouteDecision


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
        """Plain data for `--json` (dates and enums are made JSON by the CLI's dump)."""
        return {"dialed": self.dialed, "caller": self.caller, "at": self.at.isoformat(), "final": self.final,
                "path": self.path, "steps": [{"kind": s.kind, "text": s.text, **s.data} for s in self.steps]}


MODE_TEXT = {
    "merged": "merged into 12345 (整体并入)",
    "dual_retained": "dual numbers, own seats retained (双号并行·保留座席)",
    "dual_cancelled": "dual numbers, seats cancelled: 12345 seats answer with its skill (双号并行·取消座席)",
    "branch_center": "branch center: 12345 answers, warm-transfers to the department (设分中心)",
    "forward": "call forwarding (呼叫转移)",
    "dedicated": "dedicated seats (专席受理)",
    "parallel": "parallel: the old number is still reachable directly (并联)",
}


_CATEGORY_EN = {
    Category.consult: "consultation",
    Category.complaint: "complaint/report",
    Category.help: "help",
    Category.suggestion: "suggestion",
    Category.other: "other",
}


def prompt_text(config: Config, name: str) -> str:
    text = config.prompts.get(name)
    return f"{name} 「{text}」" if text else name


def dest_text(config: Config, dest: Destination) -> str:
    if isinstance(dest, QueueDest):
        q = config.queues.get(dest.queue)
        out = f"queue {dest.queue}" + (f" ({q.name})" if q else "")
        if dest.category:
            out += f", category {_CATEGORY_EN[dest.category]} ({dest.category.value})"
        return out
    if isinstance(dest, TransferDest):
        t = config.trunk(dest.target)
        return f"transfer to {dest.target}" + (f" ({t.name})" if t else "")
    if isinstance(dest, LegacyDest):
        line = config.legacy_lines.get(dest.line)
        return f"legacy line {dest.line}" + (f" ({line.name})" if line else "")
    if isinstance(dest, SelfServiceDest):
        return "self-service progress query (办理进度查询)"
    if isinstance(dest, DialDest):
        return f"dial {dest.number} (呼叫转移)"
    if isinstance(dest, HangupDest):
        return "hang up (挂机)"
    return dest.label()


_LABELS = {
    "timeout": "no input, timeout (无输入超时)",
    "agent:0": "key 0: agent (按0转人工)",
    "agent:retries": "retries used up: agent (重试次数用尽，转人工)",
    "repeat": "repeat the menu (重听)",
    "back": "back to the previous menu (返回上一级)",
    "back:top": "back at the top menu: repeat (已是首层菜单，重听)",
    "speech:low": "speech not understood with confidence: press a key instead (语音识别置信度低，请按键)",
    "max_events": "too many inputs: agent (输入次数过多，转人工)",
}


def label_text(config: Config, label: str) -> str | None:
    if label in _LABELS:
        return _LABELS[label]
    kind, _, rest = label.partition(":")
    if kind == "menu":
        return f"enter menu {rest} (进入菜单)"
    if kind == "key":
        return f"key {rest} (按键 {rest})"
    if kind == "invalid":
        return f"invalid input {rest} (无效输入)"
    if kind == "closed":
        menu = config.menus.get(rest)
        return f"menu {rest} is closed now, hours {menu.hours if menu else '?'} (非服务时间)"
    if kind == "announce":
        return None  # shown by its Play
    if kind == "speech":
        return f"speech heard 「{rest}」 (语音识别)"
    if kind == "fail_open":
        return f"fail open ({rest}): a queue, never silence (故障兜底转人工)"
    if kind == "route":
        return None  # shown by the Route
    if label == "priority":
        return "priority key: straight to an agent, no menu (老年人优先)"
    if kind == "language":
        lang = config.access.languages.get(rest)
        return f"language key: {rest}" + (f" ({lang.name}) seats, queue {lang.queue}" if lang else "")
    if kind == "campaign":
        c = config.access.campaigns.get(rest)
        return f"campaign key: {rest}" + (f" ({c.name}, {c.start}..{c.end}), queue {c.queue}" if c else "")
    return label


def _events(digits: list[str | None] | None) -> deque[Event]:
    out: deque[Event] = deque()
    for d in digits or []:
        if d is None:
            out.append(Timeout())
        else:
            out.extend(Digit(k) for k in d)
    return out


def explain_call(config: Config, dialed: str, caller: str | None, at: dt.datetime,
                 digits: list[str | None] | None = None, video: bool = False) -> Explanation:
    """How a call to `dialed` from `caller` at `at` is handled, when the caller keys `digits` (`video`: the call
    arrives with video)."""
    inputs = _events(digits)
    steps: list[ExplainStep] = []
    path: list[str] = []
    in_menu = False
    final: Destination = QueueDest(queue=config.center.general_queue)
    flow = inbound_flow(config, dialed, caller or "", at, video=video)
    answer: object = None
    while True:
        try:
            action = flow.send(answer)
        except StopIteration:
            break
        answer = None
        match action:
            case Decided(decision=d, chosen=chosen):
                steps.append(_decision_step(config, d, chosen))
                steps.extend(ExplainStep("warning", f"warning: {w}", {"warning": w}) for w in d.warnings)
            case OpenTicket():
                steps.append(ExplainStep("ticket", "a ticket number is allocated now, while the caller is on the line "
                                         f"(工单编号; channel variable {Var.TICKET.value}: the agent reads it out; after "
                                         "the agent hangs up the caller hears it with a query password)", {}))
            case Greeted():
                pass
            case Play(prompt=prompt, interruptible=interruptible):
                steps.append(ExplainStep("menu" if in_menu else "announcement",
                                         f"plays {prompt_text(config, prompt)}", {"prompt": prompt}))
                # a greeting key (routing/access.py: language, campaign, 老年人优先) barges in here
                head = inputs[0] if inputs else None
                if (not in_menu and interruptible and isinstance(head, Digit)
                        and head.key in {c.key for c in greeting_choices(config, at.date())}):
                    inputs.popleft()
                    steps.append(ExplainStep("input", f"caller presses {head.key} during it (按键)",
                                             {"key": head.key}))
                    answer = head.key
            case MenuPath(labels=labels):
                in_menu = True
                path.extend(labels)
                steps.extend(ExplainStep("menu", t, {"labels": list(labels)})
                             for t in (label_text(config, lb) for lb in labels) if t)
            case Collect(prompt=prompt, timeout_s=timeout_s, valid_keys=keys):
                steps.append(ExplainStep("menu", f"plays {prompt_text(config, prompt)} and waits {timeout_s:g} s "
                                                 f"for one key (keys {keys})", {"prompt": prompt}))
                if inputs:
                    ev = inputs.popleft()
                    what = f"caller presses {ev.key} (按键)" if isinstance(ev, Digit) else "caller says nothing (超时无输入)"
                else:
                    ev, what = Timeout(), "no more input: timeout (无更多输入，超时)"
                steps.append(ExplainStep("input", what, {"key": ev.key if isinstance(ev, Digit) else None}))
                answer = ev
            case MenuExit(route=route):
                in_menu = False
                steps.append(ExplainStep("menu", f"=> {dest_text(config, route.dest)} [reason: {route.reason}] (结果)",
                                         {"dest": route.dest.label(), "reason": route.reason}))
            case Note(kind=kind, text=text):
                steps.append(ExplainStep(kind, text, {}))
            case Now():
                answer = at
            case SelfService(service=service):
                steps.append(ExplainStep("self_service", "self-service progress query (办理进度查询): ticket number and "
                                         "query password; found → the state is read out and the call ends unless "
                                         "the caller presses 0; 0, three wrong tries or no store → the general "
                                         "queue. Followed here: the way to an agent",
                                         {"service": service}))
                answer = QueueDest(queue=config.center.general_queue)
            case SetRoute(dest=dest, category=category, priority=priority, language=language):
                final = dest
                if priority:
                    steps.append(ExplainStep("priority", f"queued with priority {config.access.priority.priority} "
                                             f"(QUEUE_PRIO; {priority}): ahead of callers without priority "
                                             "(老年人优先); the ticket counts it", {"priority": priority}))
                if language:
                    lang = config.access.languages.get(language)
                    steps.append(ExplainStep("language", f"language {language}"
                                             + (f" ({lang.name})" if lang else "") + ": the ticket records it",
                                             {"language": language}))
                steps.extend(_dialplan_steps(config, dest, category, at))
    if inputs:
        steps.append(ExplainStep("input", f"{len(inputs)} more input(s) ignored: the call has left the menu "
                                          "(已离开菜单)", {"ignored": len(inputs)}))
    return Explanation(dialed, caller, at, steps, final.label(), path)


def _decision_step(config: Config, d: RouteDecision, chosen: bool = False) -> ExplainStep:
    """The number plan's decision in words: line, mode, transition status, where the call goes first."""
    line = d.line
    data: dict[str, Any] = {"dialed": d.dialed, "mode": d.mode, "line": line, "dest": d.dest.label(),
                            "reason": d.reason, "window_end": d.window_end, "days_left": d.days_left,
                            "category": d.category}
    lead = "chosen in the menu: " if chosen else ""
    if line and line in config.legacy_lines:
        ll = config.legacy_lines[line]
        text = (f"{lead}{line} is the legacy line {ll.name}" + (f" of {ll.department}" if ll.department else "")
                + f"; mode {MODE_TEXT.get(ll.mode, ll.mode)}")
        if ll.mode == "merged":
            status = d.status
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
        text = f"{d.dialed} is the center number ({config.center.name})"
    else:
        text = f"{lead}{d.dialed}: mode {d.mode}"
    text += f". {d.reason}"
    return ExplainStep("number_plan", text, data)


def _dialplan_steps(config: Config, dest: Destination, category: Category | None,
                    at: dt.datetime) -> list[ExplainStep]:
    """What the dialplan does with the route (routing/dialplan.py renders it): queues, overflow, fallbacks."""
    out: list[ExplainStep] = []
    cat = f", category {category.value}" if category is not None else ""
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
            # the dialplan's own decision for this queue (routing/dialplan.py renders the same step)
            _app, label = overflow_step(config, name, q)
            nxt = q.overflow
            if nxt is None or isinstance(nxt, HangupDest):
                why = "no overflow set" if nxt is None else "a hang-up overflow is never rendered"
                out.append(ExplainStep("overflow", f"after {q.max_wait_s} s unanswered: {label} ({why})",
                                       {"queue": name, "then": label}))
                break
            if not isinstance(nxt, QueueDest):
                out.append(ExplainStep("overflow", f"after {q.max_wait_s} s unanswered: {label}",
                                       {"queue": name, "then": label}))
                out.extend(_dialplan_steps(config, nxt, None, at)[:1])
                break
            current, name = name, nxt.queue
            if name in seen:
                out.append(ExplainStep("overflow", f"after {q.max_wait_s} s unanswered: back to queue {name} "
                                       "(the chain loops; callers keep waiting, never dropped)",
                                       {"queue": current, "then": label}))
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
        out.append(ExplainStep("hangup", "hangs up (挂机): configured retirement of this line", {}))
    else:
        out.append(ExplainStep("route", f"goes to {dest.label()}", {"dest": dest.label()}))
    out.append(ExplainStep("final", f"final destination: {dest.label()}{cat}", {"dest": dest.label()}))
    return out
