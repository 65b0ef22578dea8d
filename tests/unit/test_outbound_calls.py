"""The scripts of calls the hotline places (ivr/outbound_calls.py) against transcripts of what they say to Asterisk:
the 回访 questions and what reaches the store, and the callback's "press 1 for an agent"."""

from __future__ import annotations

from typing import Any

from ivr.outbound_calls import OutboundScripts
from model.contract import Event, Var
from ticketbridge.outreach_rules import followup_outcome
from tests.unit.test_calls_live import Transcript, shipped

TICKET = "261130000042"


class Phone(Transcript):
    def __init__(self, variables: dict[str, str], keys: list[str | None]) -> None:
        super().__init__(keys=keys)
        self.variables = variables

    async def get_variable(self, name: str) -> str | None:
        return self.variables.get(str(name))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e[2] for e in self.log if e[0] == "event" and e[1] == name]


class Store:
    def __init__(self, category: str | None = "投诉举报") -> None:
        self.category = category
        self.recorded: list[tuple[Any, ...]] = []

    async def followup_about(self, ticket_no: str) -> tuple[str, str | None] | None:
        return (ticket_no, self.category) if ticket_no == TICKET else None

    async def record_followup(self, ticket_no: str, resolved: bool | None, rating: int | None, scale: int,
                              *, actor: str = "followup") -> Any:
        self.recorded.append((ticket_no, resolved, rating, scale))
        return followup_outcome(resolved, rating, scale)


async def run_followup(keys: list[str | None], store: Store | None = None, scale: int | None = None,
                       ticket: str = TICKET) -> tuple[Phone, Store]:
    cfg = shipped()
    cfg.followups.scale = scale  # type: ignore[assignment]
    store = store or Store()
    phone = Phone({Var.FOLLOWUP.value: ticket}, keys)
    await OutboundScripts(lambda: cfg, store).followup(phone)  # type: ignore[arg-type]
    return phone, store


async def test_followup_says_which_request_asks_and_records_the_answer() -> None:
    phone, store = await run_followup(["2", "3"])
    assert phone.prompts() == ["followup_intro", "followup_category_complaint", "followup_resolved",
                               "followup_rating5", "followup_reopened"]
    digits = [e[1] for e in phone.log if e[0] == "play" and e[1].startswith("hotline/digits/")]
    assert digits == [f"hotline/digits/{d}" for d in TICKET]  # the ticket number, digit by digit
    intro = phone.index("play", "hotline/followup_intro")
    assert intro < phone.index("play", "hotline/digits/2") < phone.index("play", "hotline/followup_category_complaint")
    assert store.recorded == [(TICKET, False, 3, 5)]  # not resolved: reopened whatever the rating
    [about, answered] = phone.events(Event.FOLLOWUP)
    assert about == {"Ticket": TICKET, "Step": "about"}
    assert answered == {"Ticket": TICKET, "Step": "answered", "Resolved": "0", "Rating": "3", "Scale": "5",
                        "State": "supervised"}


async def test_a_satisfied_citizen_is_thanked_and_the_ticket_rated() -> None:
    phone, store = await run_followup(["1", "2"])
    assert store.recorded == [(TICKET, True, 2, 5)] and phone.prompts()[-1] == "followup_thanks"
    assert phone.events(Event.FOLLOWUP)[-1]["State"] == "rated"


async def test_a_wrong_key_is_asked_again_once() -> None:
    phone, store = await run_followup(["7", "1", "9", "5"])
    assert phone.prompts() == ["followup_intro", "followup_category_complaint", "followup_resolved", "invalid_input",
                               "followup_resolved", "followup_rating5", "invalid_input", "followup_rating5",
                               "followup_reopened"]
    assert store.recorded == [(TICKET, True, 5, 5)]


async def test_the_three_level_scale() -> None:
    phone, store = await run_followup(["1", "4", "3"], scale=3)
    assert "followup_rating3" in phone.prompts() and store.recorded == [(TICKET, True, 3, 3)]
    assert phone.prompts()[-1] == "followup_reopened"  # 3 不满意 is the worst of three


async def test_nothing_keyed_records_nothing_so_the_attempt_counts_as_unanswered() -> None:
    phone, store = await run_followup([None, None])
    assert store.recorded == [] and phone.prompts()[-1] == "followup_no_answer"
    assert phone.events(Event.FOLLOWUP)[-1] == {"Ticket": TICKET, "Step": "no_answer"}
    # resolved keyed, no rating: recorded (已回访 only)
    _, store2 = await run_followup(["1", None])
    assert store2.recorded == [(TICKET, True, None, 5)]


async def test_a_ticket_without_a_followup_plays_nothing_and_an_unknown_category_is_not_said() -> None:
    phone, store = await run_followup(["1", "1"], ticket="990101000001")
    assert phone.log == [] and store.recorded == []
    phone, _ = await run_followup(["1", "1"], store=Store(category=None))
    assert phone.prompts()[:2] == ["followup_intro", "followup_resolved"]


async def test_callback_offer_queues_only_on_1() -> None:
    cfg = shipped()
    for keys, route in ((["1"], "queue"), ([None], "hangup"), (["5", "1"], "queue"), (["5", "6"], "hangup")):
        phone = Phone({Var.CALLBACK.value: TICKET}, keys)
        await OutboundScripts(lambda: cfg, Store()).callback_offer(phone)  # type: ignore[arg-type]
        assert phone.sets() == [(Var.ROUTE.value, route)], keys
        assert phone.prompts()[0] == "callback_offer"


async def test_a_store_failure_while_recording_counts_as_unanswered() -> None:
    class Away(Store):
        async def record_followup(self, *a: Any, **kw: Any) -> Any:
            raise ConnectionError("database gone")

    phone, _ = await run_followup(["1", "1"], store=Away())
    assert phone.prompts()[-1] == "followup_no_answer"
    assert [e["Step"] for e in phone.events(Event.FOLLOWUP)] == ["about"]
