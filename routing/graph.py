"""Whole-configuration validation: what pydantic cannot see because it needs the whole graph.

pydantic checks each model on its own; this module checks how they point at each
other, and reports *every* problem in one pass with its field path (and line, when
a line map from ``model.loading.load_config_with_lines`` is given), so an admin
fixes a config in one round instead of one error per reload. FreePBX accepted a
destination pointing at itself and calendars that never matched; here such a
config does not load.

Why one module (≈550 lines): one checker walks the whole graph once and every rule
reads the same walk (reachability, chains, cycles); split, the rules would each
re-derive it.

Kinds of problem, each with a field path such as ``menus.main.options.2``:

* dangling references: menus, queues, legacy lines, transfer targets, branch
  centers, hours and prompts that are not defined;
* a place that points at itself (a queue overflowing into itself, a menu option
  or closed destination naming its own menu, a legacy line forwarding to itself);
* loops: queue overflow/closed chains, chains that never wait for the caller
  (center entry → merged legacy line → center entry, closed menu → closed menu),
  and menus whose every option leads back into menus;
* unreachable menus (nothing leads to them);
* citizens left without a person: a hang-up where a menu or queue must end with
  an agent, a menu ``agent`` that is not a queue/transfer/dial, an overflow or
  closed destination of a queue that is not one either;
* legacy-mode requirements (merged needs ``merged_on`` and an ``announcement``,
  retire needs a ``retirement_notice``, dual_retained/dedicated a ``queue``,
  branch_center a ``branch``, forward a ``forward_to``);
* clashing numbers: the center number as a legacy line, a legacy number equal to
  a transfer target key, a branch center key or a feature code;
* feature codes: duplicates, one a prefix of another, clashes with Asterisk's
  built-in features (``BUILTIN_FEATURES``), non-DTMF characters;
* seats: queue members that are not defined seats (or are listed twice), seats
  without ``secret_env``/``secret_file``;
* menus whose ``speech`` keys are not options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from model.ticket_state import TicketState
from model.config import DIGITS, LANGUAGE_VOICES, Config
from model.loading import Problem, line_for
from routing.access import video_problems
from routing.outbound import carrier_problems
from model.destinations import (
    AnnounceDest,
    Category,
    Destination,
    DialDest,
    HangupDest,
    LegacyDest,
    MenuDest,
    QueueDest,
    SelfServiceDest,
    TransferDest,
)

__all__ = ["BUILTIN_FEATURES", "PICKUP_EXTEN", "SELF_SERVICE_PROMPTS", "QUEUE_POSITION_PROMPTS", "validate"]

Path = tuple[Any, ...]
Lines = dict[tuple[Any, ...], int]

#: Asterisk's in-call DTMF features (features.conf defaults). A one-key transfer code
#: equal to one, or a prefix of one / starting with one, is ambiguous to the bridge.
BUILTIN_FEATURES: dict[str, str] = {
    "#": "blindxfer",
    "*2": "atxfer",
    "*0": "disconnect",
    "*1": "automon",
    "*3": "automixmon",
    "#72": "parkcall",
}
#: features.conf ``pickupexten``: a *dialed* extension, not matched against in-call
#: DTMF, so only an identical feature code clashes with it (``*810`` does not).
PICKUP_EXTEN = "*8"
#: prompts the self-service adapter (ivr/calls.py) plays by fixed id.
SELF_SERVICE_PROMPTS = ("query_ticket", "query_password", "query_wrong", "query_locked", "query_ticket_is",
                        "query_state", "query_done") + tuple(f"state_{s.value}" for s in TicketState)
#: prompts the 回访 IVR (ivr/outbound_calls.py) plays by fixed id: its questions, then one per category
FOLLOWUP_PROMPTS = ("followup_intro", "followup_resolved", "followup_rating5", "followup_rating3",
                    "followup_thanks", "followup_reopened", "followup_no_answer", "invalid_input") + tuple(
    f"followup_category_{c.name}" for c in Category)
#: prompts queues.conf names when a queue announces the caller's position.
QUEUE_POSITION_PROMPTS = ("queue_position", "queue_position_unit")

_TERMINAL = ("terminal",)
_ENTRY = ("entry",)


def _fmt(path: Path) -> str:
    return ".".join(str(p) for p in path)


def _chain(dest: Destination | None, path: Path) -> Iterator[tuple[Path, Destination]]:
    """`dest` and the destinations nested in it (an announce's `then`), with their paths."""
    while dest is not None:
        yield path, dest
        if isinstance(dest, AnnounceDest):
            dest, path = dest.then, path + ("then",)
        else:
            return


def _final(dest: Destination) -> Destination | None:
    """Where `dest` ends after announcements; None for an announce without `then` (the agent)."""
    last: Destination | None = dest
    for _, d in _chain(dest, ()):
        last = d
    if isinstance(last, AnnounceDest):
        return None
    return last


class _Checker:
    def __init__(self, config: Config, prompt_exists: Callable[[str], bool] | None,
                 filename: str, lines: Lines | None) -> None:
        self.c = config
        self.prompt_exists = prompt_exists
        self.filename = filename
        self.lines = lines or {}
        self.problems: list[Problem] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, path: Path, message: str) -> None:
        field = _fmt(path)
        if (field, message) in self._seen:
            return
        self._seen.add((field, message))
        line = line_for(self.lines, path) if self.lines else None
        self.problems.append(Problem(self.filename, line, field, message))

    # ------------------------------------------------------------------ where destinations are

    def sites(self) -> Iterator[tuple[Path, Destination, str]]:
        """Every top-level destination field: (path, destination, role)."""
        c = self.c
        yield ("center", "entry"), c.center.entry, "entry"
        for name, menu in c.menus.items():
            for key, dest in menu.options.items():
                yield ("menus", name, "options", key), dest, "option"
            yield ("menus", name, "agent"), menu.agent, "agent"
            if menu.closed is not None:
                yield ("menus", name, "closed"), menu.closed, "closed"
        for name, q in c.queues.items():
            if q.overflow is not None:
                yield ("queues", name, "overflow"), q.overflow, "overflow"
            if q.closed is not None:
                yield ("queues", name, "closed"), q.closed, "queue_closed"

    def node_of(self, dest: Destination | None) -> tuple[Any, ...]:
        """Graph node a destination leads to: a menu, a legacy line, or terminal (incl. dangling ones)."""
        final = _final(dest) if dest is not None else None
        if isinstance(final, MenuDest) and final.menu in self.c.menus:
            return ("menu", final.menu)
        if isinstance(final, LegacyDest) and final.line in self.c.legacy_lines:
            return ("legacy", final.line)
        return _TERMINAL

    def legacy_next(self, number: str) -> list[tuple[Any, ...]]:
        """Where a legacy line leads without caller input (conservatively: both sides of a window)."""
        line = self.c.legacy_lines[number]
        if line.mode == "merged":
            return [_ENTRY] + ([_TERMINAL] if line.after_window == "retire" else [])
        if line.mode == "parallel":
            return [_ENTRY]
        if line.mode == "forward":
            target = (line.forward_to or "").strip()
            if target == self.c.center.number or not target:
                return [_ENTRY]
            if target in self.c.legacy_lines:
                return [("legacy", target)]
        return [_TERMINAL]

    # ------------------------------------------------------------------ checks

    def run(self) -> list[Problem]:
        self.destinations()
        self.people()
        self.self_references()
        self.queue_loops()
        self.input_free_loops()
        self.menu_traps()
        self.unreachable_menus()
        self.hours()
        self.legacy()
        self.numbers()
        self.feature_codes()
        self.dialed_codes()
        self.seats()
        self.speech()
        self.access()
        self.prompts()
        return self.problems

    def access(self) -> None:
        """issue 18: the access keys, queues and prompts of priority, languages and campaigns."""
        a = self.c.access
        keys: dict[str, tuple[Any, ...]] = {}

        def key(path: tuple[Any, ...], k: str | None) -> None:
            if k is None:
                return
            if k in keys:
                self.add(path, f"key {k!r} is already {'.'.join(map(str, keys[k]))}: one key, one path")
            keys[k] = path

        def queue(path: tuple[Any, ...], q: str | None) -> None:
            if q is not None and q not in self.c.queues:
                self.add(path, f"queue {q!r} is not defined under queues")

        key(("access", "priority", "key"), a.priority.key)
        queue(("access", "priority", "queue"), a.priority.queue)
        for code, lang in a.languages.items():
            base = ("access", "languages", code)
            key(base + ("key",), lang.key)
            queue(base + ("queue",), lang.queue)
            spoken = lang.offer or lang.prompts or lang.recording_notice
            if spoken and lang.voice is None and code not in LANGUAGE_VOICES:
                self.add(base + ("voice",), f"no espeak-ng voice known for {code!r}: set voice (e.g. en-us, yue)")
        for name, camp in a.campaigns.items():
            base = ("access", "campaigns", name)
            key(base + ("key",), camp.key)
            queue(base + ("queue",), camp.queue)
            queue(base + ("otherwise",), camp.otherwise)
            if camp.otherwise == camp.queue:
                self.add(base + ("otherwise",), "otherwise is the campaign's own queue: outside the dates its "
                                                "callers would still wait there")

    def destinations(self) -> None:
        """Dangling references inside destinations."""
        c = self.c
        for site, dest, _ in self.sites():
            for path, d in _chain(dest, site):
                if isinstance(d, MenuDest) and d.menu not in c.menus:
                    self.add(path, f"menu {d.menu!r} is not defined under menus")
                elif isinstance(d, QueueDest) and d.queue not in c.queues:
                    self.add(path, f"queue {d.queue!r} is not defined under queues")
                elif isinstance(d, LegacyDest) and d.line not in c.legacy_lines:
                    self.add(path, f"legacy line {d.line!r} is not defined under legacy_lines")
                elif isinstance(d, TransferDest) and c.trunk(d.target) is None:
                    self.add(path, f"transfer target {d.target!r} is not defined under transfer_targets "
                                   "or branch_centers")
                elif isinstance(d, DialDest) and not d.number.strip():
                    self.add(path, "dial needs a number")

    def people(self) -> None:
        """A citizen in a menu or queue must end with a person, never a hang-up."""
        for site, dest, role in self.sites():
            for path, d in _chain(dest, site):
                if isinstance(d, HangupDest):
                    self.add(path, "hangup here would hang up on a citizen; end with a queue "
                                   "(an announce then a queue if something must be said)")
            final = _final(dest)
            if role == "agent" and final is not None and not isinstance(final, (QueueDest, TransferDest, DialDest)):
                self.add(site, f"agent must reach a person (a queue, transfer or dial), not {final.label()}")
            if role in ("overflow", "queue_closed") and final is not None and not isinstance(
                    final, (QueueDest, TransferDest, DialDest, HangupDest)):
                what = "overflow" if role == "overflow" else "closed"
                self.add(site, f"{what} must be a queue, transfer or dial, not {final.label()}")

    def self_references(self) -> None:
        """A destination that points at its own owner."""
        c = self.c
        for name, q in c.queues.items():
            for fld, dest in (("overflow", q.overflow), ("closed", q.closed)):
                final = _final(dest) if dest is not None else None
                if isinstance(final, QueueDest) and final.queue == name:
                    self.add(("queues", name, fld), f"{fld} points at its own queue {name!r}")
        for name, menu in c.menus.items():
            for key, dest in menu.options.items():
                final = _final(dest)
                if isinstance(final, MenuDest) and final.menu == name:
                    self.add(("menus", name, "options", key),
                             f"option {key} points at its own menu {name!r} (* already repeats a menu)")
            final = _final(menu.closed) if menu.closed is not None else None
            if isinstance(final, MenuDest) and final.menu == name:
                self.add(("menus", name, "closed"), f"closed points at its own menu {name!r}")
        for number, line in c.legacy_lines.items():
            if line.forward_to and line.forward_to.strip() == number:
                self.add(("legacy_lines", number, "forward_to"), f"legacy line {number} forwards to itself")

    def queue_loops(self) -> None:
        """Overflow/closed chains between queues that come back to where they started."""
        edges: dict[str, list[str]] = {}
        for name, q in self.c.queues.items():
            for dest in (q.overflow, q.closed):
                final = _final(dest) if dest is not None else None
                if isinstance(final, QueueDest) and final.queue in self.c.queues and final.queue != name:
                    edges.setdefault(name, []).append(final.queue)
        for cycle in _cycles(edges):
            self.add(("queues", cycle[0], "overflow"),
                     "queue overflow/closed chain loops: " + " -> ".join(cycle + [cycle[0]]))

    def input_free_loops(self) -> None:
        """Chains that never wait for the caller: entry, legacy lines, closed menus (announces in between)."""
        c = self.c
        edges: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {_ENTRY: [self.node_of(c.center.entry)]}
        for number in c.legacy_lines:
            edges[("legacy", number)] = [n for n in self.legacy_next(number) if n != ("legacy", number)]
        for name, menu in c.menus.items():
            if menu.hours and menu.closed is not None:
                edges[("menu", name)] = [n for n in [self.node_of(menu.closed)] if n != ("menu", name)]
        for cycle in _cycles(edges):
            start = cycle[0]
            path: Path = ("center", "entry") if start == _ENTRY else (
                ("legacy_lines", start[1]) if start[0] == "legacy" else ("menus", start[1], "closed"))
            self.add(path, "loops without waiting for the caller: "
                           + " -> ".join(_node_label(n) for n in cycle + [cycle[0]]))

    def menu_traps(self) -> None:
        """Menus whose every option (and closed) leads back into menus: only 0 or a timeout leaves."""
        c = self.c
        succ: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {_ENTRY: [self.node_of(c.center.entry)]}
        for number in c.legacy_lines:
            succ[("legacy", number)] = self.legacy_next(number)
        for name, menu in c.menus.items():
            outs = [self.node_of(d) for d in menu.options.values()]
            if menu.closed is not None:
                outs.append(self.node_of(menu.closed))
            succ[("menu", name)] = outs
        escapes: set[tuple[Any, ...]] = {_TERMINAL}
        changed = True
        while changed:
            changed = False
            for node, outs in succ.items():
                if node not in escapes and any(o in escapes for o in outs):
                    escapes.add(node)
                    changed = True
        for name, menu in c.menus.items():
            if (menu.options or menu.closed is not None) and ("menu", name) not in escapes:
                loop = sorted({n[1] for n in _reach(succ, ("menu", name)) if n[0] == "menu"})
                self.add(("menus", name, "options"),
                         f"every option of menu {name!r} leads back into menus ({', '.join(loop)}); "
                         "callers can only leave by 0 or by timing out")

    def unreachable_menus(self) -> None:
        """Menus nothing leads to (not center.entry, no option, agent, closed, overflow or legacy line)."""
        c = self.c
        succ: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {_ENTRY: [self.node_of(c.center.entry)]}
        roots = [_ENTRY]
        for number in c.legacy_lines:
            succ[("legacy", number)] = self.legacy_next(number)
            roots.append(("legacy", number))
        for name, menu in c.menus.items():
            dests = [*menu.options.values(), menu.agent] + ([menu.closed] if menu.closed else [])
            succ[("menu", name)] = [self.node_of(d) for d in dests]
        for q in c.queues.values():
            for dest in (q.overflow, q.closed):
                if dest is not None:
                    roots.append(self.node_of(dest))
        seen: set[tuple[Any, ...]] = set()
        for r in roots:
            seen |= _reach(succ, r) | {r}
        for name in c.menus:
            if ("menu", name) not in seen:
                self.add(("menus", name), f"menu {name!r} is unreachable: neither center.entry nor any option, "
                                          "closed, overflow or legacy line leads to it")

    def hours(self) -> None:
        c = self.c
        owners: list[tuple[str, dict[str, Any]]] = [
            ("menus", c.menus), ("queues", c.queues),
            ("transfer_targets", c.transfer_targets), ("branch_centers", c.branch_centers),
        ]
        for section, items in owners:
            for name, item in items.items():
                if item.hours and item.hours not in c.hours:
                    self.add((section, name, "hours"), f"hours {item.hours!r} is not defined under hours")
        for section, auto in (("callbacks", c.callbacks.auto), ("followups", c.followups.auto)):
            if auto.hours and auto.hours not in c.hours:
                self.add((section, "auto", "hours"), f"hours {auto.hours!r} is not defined under hours")
        if c.callbacks.queue not in c.queues:
            self.add(("callbacks", "queue"), f"queue {c.callbacks.queue!r} is not defined under queues")

    def legacy(self) -> None:
        """Each merge mode's required fields, and the queue/branch they name."""
        c = self.c
        for number, line in c.legacy_lines.items():
            p: Path = ("legacy_lines", number)
            if line.mode == "merged":
                if line.merged_on is None:
                    self.add(p + ("merged_on",), "a merged line needs merged_on (the transition window starts there)")
                if not line.announcement:
                    self.add(p + ("announcement",), "a merged line needs an announcement "
                                                    "(callers must hear that the line joined 12345)")
                if line.after_window == "retire" and not line.retirement_notice:
                    self.add(p + ("retirement_notice",),
                             "after_window: retire needs a retirement_notice (a retired line never hangs up silently)")
            if line.mode in ("dual_retained", "dedicated") and not line.queue:
                self.add(p + ("queue",), f"mode {line.mode} needs the queue of the line's own seats")
            if line.mode == "branch_center" and not line.branch:
                self.add(p + ("branch",), "mode branch_center needs a branch (a key of branch_centers)")
            if line.mode == "forward" and not (line.forward_to or "").strip():
                self.add(p + ("forward_to",), "mode forward needs forward_to")
            if line.queue and line.queue not in c.queues:
                self.add(p + ("queue",), f"queue {line.queue!r} is not defined under queues")
            if line.branch and line.branch not in c.branch_centers:
                self.add(p + ("branch",), f"branch center {line.branch!r} is not defined under branch_centers")

    def numbers(self) -> None:
        """One number, one meaning: legacy numbers vs the center number, transfer keys and feature codes."""
        c = self.c
        if c.center.number in c.legacy_lines:
            self.add(("legacy_lines", c.center.number),
                     f"{c.center.number} is the center number and cannot also be a legacy line")
        codes = {t.feature_code: f"{sec}.{k}" for sec, k, t in self._trunks() if t.feature_code}
        for number in c.legacy_lines:
            p = ("legacy_lines", number)
            if number in c.transfer_targets:
                self.add(p, f"legacy number {number} is also the transfer target transfer_targets.{number}")
            if number in c.branch_centers:
                self.add(p, f"legacy number {number} is also the branch center branch_centers.{number}")
            if number in codes:
                self.add(p, f"legacy number {number} is also the feature code of {codes[number]}")

    def _trunks(self) -> list[tuple[str, str, Any]]:
        return [("transfer_targets", k, t) for k, t in self.c.transfer_targets.items()] + [
            ("branch_centers", k, t) for k, t in self.c.branch_centers.items()]

    def feature_codes(self) -> None:
        """One-key transfer codes: DTMF only, unique, prefix-free, clear of Asterisk's built-ins."""
        seen: list[tuple[str, str]] = []  # (code, owner)
        for sec, key, t in self._trunks():
            code = t.feature_code
            if code is None:
                continue
            p = (sec, key, "feature_code")
            if not code or any(ch not in DIGITS for ch in code):
                self.add(p, f"feature code {code!r} must be DTMF digits (0-9, *, #)")
                continue
            for builtin, name in BUILTIN_FEATURES.items():
                if code == builtin:
                    self.add(p, f"feature code {code} is Asterisk's built-in {name}")
                elif code.startswith(builtin) or builtin.startswith(code):
                    self.add(p, f"feature code {code} clashes with Asterisk's built-in {name} ({builtin}): "
                                "one is a prefix of the other")
            if code == PICKUP_EXTEN:
                self.add(p, f"feature code {code} is Asterisk's built-in pickupexten")
            for other, owner in seen:
                if other == code:
                    self.add(p, f"feature code {code} is also used by {owner}")
                elif other.startswith(code) or code.startswith(other):
                    self.add(p, f"feature code {code} clashes with {other} of {owner}: one is a prefix of the other")
            seen.append((code, f"{sec}.{key}"))

    def dialed_codes(self) -> None:
        """Codes a seat dials: a supervisor's is followed by the agent's seat, so no agent's code (*51 …)
        may start with one (it would never be reached), nor one with an agent's code."""
        agent = self.c.agents.feature_codes.model_dump()
        for name, code in self.c.supervision.feature_codes.model_dump().items():
            for aname, acode in agent.items():
                if code.startswith(acode) or acode.startswith(code):
                    self.add(("supervision", "feature_codes", name),
                             f"supervisor code {code} clashes with agents.feature_codes.{aname} ({acode})")

    def seats(self) -> None:
        c = self.c
        for name, q in c.queues.items():
            counted: set[str] = set()
            for i, member in enumerate(q.members):
                p = ("queues", name, "members", i)
                if member not in c.seats:
                    self.add(p, f"member {member!r} is not a seat defined under seats")
                if member in counted:
                    self.add(p, f"member {member!r} is listed twice")
                counted.add(member)
        for ext, seat in c.seats.items():
            if not seat.secret_env and not seat.secret_file:
                self.add(("seats", ext), "seat has neither secret_env nor secret_file (it could not register)")

    def speech(self) -> None:
        for name, menu in self.c.menus.items():
            for key in menu.speech:
                if key not in menu.options and key != "0":
                    self.add(("menus", name, "speech", key), f"speech key {key!r} is not an option of menu {name!r}")

    def prompts(self) -> None:
        """Every prompt id a call may play must have text under prompts (or audio, per prompt_exists)."""
        c = self.c
        refs: list[tuple[Path, str]] = [(("center", "greeting"), c.center.greeting)]
        if c.center.queue_prompt:
            refs.append((("center", "queue_prompt"), c.center.queue_prompt))
        if c.center.emergency_notice:
            refs.append((("center", "emergency_notice"), c.center.emergency_notice))
        if c.recording.notice:
            refs.append((("recording", "notice"), c.recording.notice))
        for name, menu in c.menus.items():
            for fld in ("prompt", "invalid_prompt", "timeout_prompt"):
                refs.append((("menus", name, fld), getattr(menu, fld)))
        if c.survey.enabled:
            refs += [(("survey", "prompt"), c.survey.prompt), (("survey", "thanks"), c.survey.thanks)]
        if c.ticket_notice.enabled:
            refs += [(("ticket_notice", f), getattr(c.ticket_notice, f))
                     for f in ("ticket_prompt", "password_prompt", "repeat_prompt")]
        for number, line in c.legacy_lines.items():
            for fld in ("announcement", "retirement_notice"):
                if getattr(line, fld):
                    refs.append((("legacy_lines", number, fld), getattr(line, fld)))
        self_service_site: Path | None = None
        for site, dest, _ in self.sites():
            for path, d in _chain(dest, site):
                if isinstance(d, AnnounceDest):
                    refs.append((path + ("prompt",), d.prompt))
                elif isinstance(d, HangupDest) and d.prompt:
                    refs.append((path + ("prompt",), d.prompt))
                elif isinstance(d, SelfServiceDest) and self_service_site is None:
                    self_service_site = path
        if self_service_site is not None:
            refs += [(self_service_site, pid) for pid in SELF_SERVICE_PROMPTS]
        if c.callbacks.connect == "offer":
            refs.append((("callbacks", "offer_prompt"), c.callbacks.offer_prompt))
        a = c.access
        for fld in ("offer", "prompt"):
            if getattr(a.priority, fld):
                refs.append((("access", "priority", fld), getattr(a.priority, fld)))
        for code, lang in a.languages.items():
            for fld in ("offer", "recording_notice"):
                if getattr(lang, fld):
                    refs.append((("access", "languages", code, fld), getattr(lang, fld)))
            refs += [(("access", "languages", code, "prompts", i), pid) for i, pid in enumerate(lang.prompts)]
        for name, camp in a.campaigns.items():
            if camp.offer:
                refs.append((("access", "campaigns", name, "offer"), camp.offer))
        if c.followups.auto.enabled:
            refs += [(("followups", "auto", "enabled"), pid) for pid in FOLLOWUP_PROMPTS]
        for name, q in c.queues.items():
            if q.announce_position:
                refs += [(("queues", name, "announce_position"), pid) for pid in QUEUE_POSITION_PROMPTS]
        for path, pid in refs:
            if pid in c.prompts:
                continue
            if self.prompt_exists is not None and self.prompt_exists(pid):
                continue
            self.add(path, f"prompt {pid!r} is not defined under prompts"
                           + (" and has no audio" if self.prompt_exists is not None else ""))


def _node_label(node: tuple[Any, ...]) -> str:
    return "center.entry" if node == _ENTRY else f"{node[0]}:{node[1]}"


def _reach(succ: dict[Any, list[Any]], start: Any) -> set[Any]:
    """Nodes reachable from `start` (not including it unless on a cycle)."""
    seen: set[Any] = set()
    todo = list(succ.get(start, []))
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(succ.get(n, []))
    return seen


def _cycles(edges: dict[Any, list[Any]]) -> list[list[Any]]:
    """One cycle per strongly connected component with a loop (Tarjan), in a stable order."""
    index: dict[Any, int] = {}
    low: dict[Any, int] = {}
    stack: list[Any] = []
    on: set[Any] = set()
    sccs: list[list[Any]] = []
    counter = 0

    def strong(v: Any) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, []):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, []):
                sccs.append(comp)

    for v in list(edges):
        if v not in index:
            strong(v)
    out = []
    for comp in sccs:
        members = set(comp)
        start = min(comp, key=str)
        # the shortest way round inside the component, from start back to start
        prev: dict[Any, Any] = {}
        todo, found = [start], False
        while todo and not found:
            nxt_level = []
            for node in todo:
                for w in edges.get(node, []):
                    if w == start:
                        prev[start], found = node, True
                        break
                    if w in members and w not in prev:
                        prev[w] = node
                        nxt_level.append(w)
                if found:
                    break
            todo = nxt_level
        path, node = [], prev[start]
        while node != start:
            path.append(node)
            node = prev[node]
        out.append([start, *reversed(path)])
    return out


def validate(config: Config, *, prompt_exists: Callable[[str], bool] | None = None,
             filename: str = "config/hotline.yaml", lines: Lines | None = None) -> list[Problem]:
    """Every whole-graph problem of `config` at once; an empty list means it is safe to load.

    `prompt_exists(id)` says whether audio exists for a prompt id (an admin
    recording); a referenced prompt is missing only when it has neither text under
    ``prompts:`` nor audio. `lines` is the map from ``load_config_with_lines``.
    """
    problems = _Checker(config, prompt_exists, filename, lines).run()
    for path, message in carrier_problems(config):  # carriers and the outbound policy (routing/outbound.py)
        problems.append(Problem(filename, line_for(lines, path) if lines else None, _fmt(path), message))
    for path, message in video_problems(config):  # sign-language video (routing/access.py)
        problems.append(Problem(filename, line_for(lines, path) if lines else None, _fmt(path), message))
    return problems
