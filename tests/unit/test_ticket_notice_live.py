"""The live scripts' side of issue 13 item 1 (ivr/calls.py) against transcripts of what they say to Asterisk.

The inbound script numbers the ticket as the call enters (before the greeting) and hands the
number to the channel, never holding a caller up for a slow store; the survey script reads the
ticket number and a fresh password digit by digit, slowly, `*` again, then the survey — on the
call's own ticket, a callback's missed-call ticket, or one numbered there for a call the IVR
never saw; anything of ours failing skips the notice, never the survey.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from ivr import calls
from ivr.calls import CallScripts
from model.contract import Event, Var
from wire.fastagi import AgiHangup
from tests.unit.test_calls_live import MONDAY_10, Transcript, clock_at, shipped


class Channel(Transcript):
    """A transcript with channel variables, EXEC and keys pressed after a prompt."""

    def __init__(self, variables: dict[str, str] | None = None, after: list[str | None] | None = None,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.vars = dict(variables or {})
        self.after = list(after or [])

    async def get_variable(self, name: str) -> str | None:
        return self.vars.get(str(name))

    async def set_variable(self, name: str, value: Any) -> None:
        self.vars[str(name).lstrip("_")] = str(value)
        await super().set_variable(name, value)

    async def exec(self, app: str, *args: Any) -> Any:
        self.log.append(("exec", app, *args))

    async def playback(self, names: list[str]) -> None:
        self.log.append(("playback", *names))

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        self.log.append(("wait", timeout_ms))
        return self.after.pop(0) if self.after else None

    def played(self) -> list[str]:
        """Every file played, in order: streamed one by one or in a Playback list."""
        return [f for e in self.log if e[0] in ("play", "playback") for f in e[1:]]

    def playbacks(self) -> list[list[str]]:
        return [list(e[1:]) for e in self.log if e[0] == "playback"]


class Store:
    def __init__(self, *, password: str | None = "048213", fail: bool = False, slow_s: float = 0.0) -> None:
        self.password, self.fail, self.slow_s = password, fail, slow_s
        self.opened: list[tuple[str, str, str]] = []
        self.issued: list[str] = []

    async def verify_query(self, ticket_no: str, password: str) -> Any:
        return None

    async def open_ticket(self, linkedid: str, *, caller: str = "", dialed: str = "",
                          started_at: float | None = None) -> Any:
        await asyncio.sleep(self.slow_s)
        self.opened.append((linkedid, caller, dialed))
        return SimpleNamespace(ticket_no="261130000042")

    async def issue_password(self, ticket_no: str, *, sms: bool = True, actor: str = "ivr") -> str | None:
        if self.fail:
            raise RuntimeError("database away")
        self.issued.append(ticket_no)
        return self.password


def digits(number: str, gap: str | None = None) -> list[str]:
    """The files reading `number`, with the silence file `gap` between every two digits."""
    out: list[str] = []
    for d in number:
        out += ([gap] if gap and out else []) + [f"hotline/digits/{d}"]
    return out


def told(ticket_no: str, password: str) -> list[str]:
    """One reading as one Playback: the prompts, the digits, 0.3 s of silence (the shipped gap) between two."""
    gap = "hotline/silence/300ms"
    return ["hotline/notice_ticket_is", *digits(ticket_no, gap), "hotline/notice_password_is",
            *digits(password, gap)]


async def test_the_ticket_is_numbered_before_the_greeting_and_handed_to_the_channel() -> None:
    store = Store()
    ch = Channel({"CHANNEL(linkedid)": "1764460000.7"}, keys=["1"])
    await CallScripts(shipped(), clock_at(MONDAY_10), store).inbound(ch)  # type: ignore[arg-type]
    assert store.opened == [("1764460000.7", "13800138000", "12345")]
    assert ("set", f"__{Var.TICKET.value}", "261130000042") in ch.log
    assert ch.index("set", f"__{Var.TICKET.value}") < ch.index("play", "hotline/greeting")


async def test_a_slow_store_never_holds_the_caller_the_greeting_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "OPEN_TICKET_TIMEOUT_S", 0.05)
    ch = Channel({"CHANNEL(linkedid)": "1.7"}, keys=["1"])
    await CallScripts(shipped(), clock_at(MONDAY_10), Store(slow_s=5)).inbound(ch)  # type: ignore[arg-type]
    assert "hotline/greeting" in ch.played() and Var.TICKET.value not in ch.vars
    assert ch.vars[Var.ROUTE.value] == "queue"  # the call went on to its queue


async def test_after_the_agent_the_notice_is_read_slowly_star_repeats_then_the_survey() -> None:
    store = Store()
    ch = Channel({Var.TICKET.value: "261130000007"}, after=["*", None], keys=["2"])
    await CallScripts(shipped(), clock_at(MONDAY_10), store).survey(ch)  # type: ignore[arg-type]
    assert store.issued == ["261130000007"]
    once = told("261130000007", "048213")
    assert ch.playbacks() == [once, once]  # each reading one Playback, slowly: a silence between two digits
    assert ch.played() == once + ["hotline/notice_repeat"] + once + ["hotline/notice_repeat", "hotline/survey_thanks"]
    assert ("ask", "hotline/survey") in ch.log
    assert not [e for e in ch.log if e[0] == "exec"]  # no Wait between digits any more
    # a handful of AGI commands per reading (issue 15): two HotlinePrompt events, the Playback, the question
    start = next(i for i, e in enumerate(ch.log) if e[0] == "event" and e[2].get("Prompt") == "notice_ticket_is")
    reading = ["event", "event", "playback", "event", "play", "wait"]
    assert [e[0] for e in ch.log[start:start + 12]] == reading * 2
    assert ch.log[start + 12] == ("event", Event.PROMPT, {"Prompt": "survey"})  # then the survey
    # the password is only in the digit files played: never an event or a variable
    for e in ch.log:
        if e[0] in ("event", "set"):
            assert "048213" not in repr(e), e
    assert [e[2]["Prompt"] for e in ch.log if e[0] == "event" and e[1] == Event.PROMPT][:3] == [
        "notice_ticket_is", "notice_password_is", "notice_repeat"]


async def test_a_caller_hanging_up_during_the_notice_ends_the_script_there() -> None:
    class HangsUp(Channel):
        async def playback(self, names: list[str]) -> None:
            await super().playback(names)
            raise AgiHangup("200 result=-1")

    ch = HangsUp({Var.TICKET.value: "261130000007"}, keys=["2"])
    with pytest.raises(AgiHangup):
        await CallScripts(shipped(), clock_at(MONDAY_10), Store()).survey(ch)  # type: ignore[arg-type]
    assert len(ch.playbacks()) == 1 and ch.log[-1][0] == "playback"  # nothing after it: no repeat, no survey


async def test_a_notice_playback_refuses_is_skipped_and_the_survey_still_follows() -> None:
    """A sound name Playback cannot take (a prompt id with a comma: `hotline check` flags it, the controller runs
    anyway) is a failure of ours: the notice is skipped, the caller still gets the survey (notice()'s promise)."""
    class Refuses(Channel):
        async def playback(self, names: list[str]) -> None:
            raise ValueError("sound name cannot be in a Playback list")

    ch = Refuses({Var.TICKET.value: "261130000007"}, keys=["2"])
    await CallScripts(shipped(), clock_at(MONDAY_10), Store()).survey(ch)  # type: ignore[arg-type]
    assert ("ask", "hotline/survey") in ch.log and "hotline/notice_repeat" not in ch.played()


async def test_a_callback_leg_is_told_the_missed_calls_ticket_and_opens_none() -> None:
    store = Store()
    ch = Channel({Var.CALLBACK.value: "261129000003"}, keys=[None])
    await CallScripts(shipped(), clock_at(MONDAY_10), store).survey(ch)  # type: ignore[arg-type]
    assert store.opened == [] and store.issued == ["261129000003"]
    assert ch.playbacks()[0] == told("261129000003", "048213")


async def test_a_call_the_ivr_never_saw_is_numbered_at_the_notice() -> None:
    store = Store()
    ch = Channel({"CHANNEL(linkedid)": "1.9", Var.DIALED.value: "12315"}, keys=[None])
    await CallScripts(shipped(), clock_at(MONDAY_10), store).survey(ch)  # type: ignore[arg-type]
    assert store.opened == [("1.9", "13800138000", "12315")] and store.issued == ["261130000042"]


@pytest.mark.parametrize("store", [Store(fail=True), Store(password=None)], ids=["store fails", "told before"])
async def test_no_notice_but_still_the_survey(store: Store) -> None:
    ch = Channel({Var.TICKET.value: "261130000007"}, keys=["1"])
    await CallScripts(shipped(), clock_at(MONDAY_10), store).survey(ch)  # type: ignore[arg-type]
    assert not [p for p in ch.played() if "notice" in p or "digits" in p]
    assert ("ask", "hotline/survey") in ch.log and ch.played() == ["hotline/survey_thanks"]


def test_the_one_flow_numbers_the_call_right_after_the_number_plan_and_explain_says_so() -> None:
    """OpenTicket is the flow's second action (before any greeting), so both drivers meet it (issue 13 item 1)."""
    from admin.explain import explain_call
    from ivr.callflow import Decided, OpenTicket, inbound_flow

    flow = inbound_flow(shipped(), "12345", "13800138000", MONDAY_10)
    assert isinstance(next(flow), Decided) and isinstance(flow.send(None), OpenTicket)
    steps = explain_call(shipped(), "12345", "13800138000", MONDAY_10, [["1"]]).steps
    kinds = [s.kind for s in steps]
    assert kinds.index("ticket") < kinds.index("announcement")
    assert Var.TICKET.value in steps[kinds.index("ticket")].text


@pytest.mark.parametrize("keys,logged,rating", [
    (["2"], "survey_hung_up_after_rating", "2"),  # rated, then hung up during the thanks: the rating stands
    ([], "survey_abandoned", None),  # hung up at the question
], ids=["after rating", "at the question"])
async def test_a_hang_up_in_the_survey_is_logged_for_what_it_was(keys: list[str | None], logged: str,
                                                               rating: str | None) -> None:
    from structlog.testing import capture_logs

    class HangsUp(Channel):
        async def stream_file(self, name: str, escape_digits: str = "") -> str | None:
            await super().stream_file(name, escape_digits)
            if name.endswith("survey_thanks"):
                raise AgiHangup("200 result=-1")
            return None

        async def get_data(self, name: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
            if not self.keys:
                self.log.append(("ask", name))
                raise AgiHangup("200 result=-1")
            return await super().get_data(name, timeout_ms, max_digits)

    ch = HangsUp({Var.TICKET.value: "261130000007"}, keys=keys)
    with capture_logs() as logs, pytest.raises(AgiHangup):
        await CallScripts(shipped(), clock_at(MONDAY_10), Store(password=None)).survey(ch)  # type: ignore[arg-type]
    said = {e["event"] for e in logs} & {"survey_abandoned", "survey_hung_up_after_rating"}
    assert said == {logged}
    sent = [e[2] for e in ch.log if e[0] == "event" and e[1] == Event.SURVEY]
    assert [s["Rating"] for s in sent] == ([rating] if rating else [])
