"""Issue 13, items 1, 2 and 6 against real stores (SQLite file and PostgreSQL schema) and a real HTTP receiver.

The ticket number as the call enters, the query password issued once and kept only hashed,
the SMS notice through the outbox (the password sealed in its row, in clear only in the one
message the gateway receives, erased once sent), urgent tickets, the due list and reminders.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from ivr.ticket_notice import AskRepeat, Recite, Say, SayDigits, ticket_notice
from model.caller_loop import SmsSettings, TicketNotice
from tests.unit.test_outbox import Receiver
from tests.unit.test_store import T0, StoreFactory, make_store, rec, store  # noqa: F401 - fixtures
from ticketbridge.assembler import CallRecord
from ticketbridge.outbox import OutboxPusher
from ticketbridge.sms import SMS_ENDPOINT, Sealer, SmsRefused, Unsendable, sms_renderer
from ticketbridge.store import TicketNotFound, TicketStore

KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()


def entry(linkedid: str = "1772472600.9") -> dict[str, Any]:
    return dict(linkedid=linkedid, caller="13800138000", dialed="12345", started_at=T0)


# --------------------------------------------------------------------------- item 1: the number at entry


async def test_the_number_exists_while_the_call_is_in_progress_and_stays_the_tickets(store: TicketStore) -> None:
    no = (await store.open_ticket(**entry())).ticket_no
    t = await store.get_ticket(no)
    assert t is not None and t.outcome == "in_progress" and t.caller == "13800138000" and len(no) == 12
    assert t.query_password_hash == ""  # no password while the call is on
    assert (await store.open_ticket(**entry())).ticket_no == no  # asked again (a retried AGI): the same number
    saved = await store.save_call(rec("1772472600.9"))  # the call ends: the complete record joins it
    assert saved.ticket_no == no and not saved.created
    t = await store.get_ticket(no)
    assert t is not None and t.outcome == "answered" and t.agent == "seat1001"
    assert await store.count_tickets() == 1


async def test_a_call_that_ends_in_the_ivr_gets_a_number_and_no_password(store: TicketStore) -> None:
    no = (await store.open_ticket(**entry("ivr.1"))).ticket_no
    await store.save_call(CallRecord(linkedid="ivr.1", caller="13800138000", dialed="12345", outcome="ended_in_ivr",
                                     started_at=T0, ended_at=T0 + 30))
    t = await store.get_ticket(no)
    assert t is not None and t.outcome == "ended_in_ivr" and t.query_password_hash == ""
    assert not [h for h in await store.history(no) if h.field == "query_password"]


async def test_a_call_the_controller_missed_is_numbered_from_the_cdr_and_can_get_its_password(
        store: TicketStore) -> None:
    saved = await store.save_call(CallRecord(linkedid="cdr.1", caller="13800138000", dialed="12345",
                                             outcome="answered", handled_by="fallback", source="cdr",
                                             started_at=T0, ended_at=T0 + 60))
    assert saved.created and len(saved.ticket_no) == 12
    password = await store.issue_password(saved.ticket_no)
    assert password and (await store.verify_query(saved.ticket_no, password)) is not None


async def test_the_password_is_issued_once_stored_hashed_and_never_logged(store: TicketStore) -> None:
    no = (await store.open_ticket(**entry())).ticket_no
    with capture_logs() as logs:
        password = await store.issue_password(no)
        assert password is not None and len(password) == 6
        assert await store.issue_password(no) is None  # never twice: what the caller heard stays valid
    t = await store.get_ticket(no)
    assert t is not None and password not in t.query_password_hash
    assert await store.verify_query(no, password) is not None
    assert not any(password in repr(e) for e in logs)
    hist = [h for h in await store.history(no) if h.field == "query_password"]
    assert [(h.to_value, h.note) for h in hist] == [("issued", None)]
    for o in await store.outbox_for(no):  # no SMS configured: no row carries anything of it
        assert password not in json.dumps(o.payload) and o.endpoint == "platform" and o.secret is None
    with pytest.raises(TicketNotFound):
        await store.issue_password("990101000001")


def test_the_notice_reads_number_and_password_and_repeats_on_star_only() -> None:
    settings = TicketNotice(max_repeats=2, digit_gap_s=0.4, repeat_wait_s=3)
    flow = ticket_notice(settings, "261130000007", "048213")
    # what nobody interrupts is one run: both prompts and both numbers, the password marked secret
    once = [Recite((Say("notice_ticket_is"), SayDigits("261130000007", 0.4), Say("notice_password_is"),
                    SayDigits("048213", 0.4, secret=True)))]
    got: list[Any] = []
    answers = iter(["*", "*"])
    action = next(flow)
    try:
        while True:
            got.append(action)
            action = flow.send(next(answers) if isinstance(action, AskRepeat) else None)
    except StopIteration as stop:
        assert stop.value == 3  # told, then twice again; the last time without the repeat offer
    assert got == once + [AskRepeat("notice_repeat", 3)] + once + [AskRepeat("notice_repeat", 3)] + once
    assert "048213" not in repr(got) and "261130000007" in repr(got)  # an action logged never shows the password
    other = ticket_notice(settings, "1", "2")
    assert [next(other) for _ in range(2)][-1] == AskRepeat("notice_repeat", 3)
    with pytest.raises(StopIteration):
        other.send("1")  # any other key goes on to the survey


# --------------------------------------------------------------------------- item 2: SMS


def sms_settings(url: str = "http://127.0.0.1:9/sms") -> SmsSettings:
    return SmsSettings(url=url, token_env="T", allow_http=True)


def test_sms_settings_refuse_a_template_without_the_fields_and_a_missing_key() -> None:
    with pytest.raises(ValueError, match="password"):
        SmsSettings(template="您的工单编号{ticket_no}")
    with pytest.raises(ValueError, match="token_env"):
        SmsSettings(url="https://gw.example/sms")
    with pytest.raises(SmsRefused, match="HOTLINE_SMS_KEY"):
        Sealer.from_env(sms_settings(), {})
    with pytest.raises(SmsRefused, match="32 bytes"):
        Sealer.from_env(sms_settings(), {"HOTLINE_SMS_KEY": "c2hvcnQ"})


def test_a_sealed_password_opens_only_with_its_key_and_its_row() -> None:
    sealer = Sealer.from_env(sms_settings(), {"HOTLINE_SMS_KEY": KEY})
    sealed = sealer.seal("048213", "k1")
    assert "048213" not in sealed
    assert sealer.open(sealed, "k1") == "048213"
    with pytest.raises(Unsendable):
        sealer.open(sealed, "k2")  # moved to another row
    with pytest.raises(Unsendable):
        Sealer(os.urandom(32)).open(sealed, "k1")  # another key
    with pytest.raises(Unsendable):
        sealer.open(None, "k1")  # erased after sending


async def test_the_sms_goes_through_the_outbox_with_the_password_only_in_the_message(store: TicketStore) -> None:
    settings = sms_settings()
    store.sealer = Sealer.from_env(settings, {"HOTLINE_SMS_KEY": KEY})
    no = (await store.open_ticket(**entry())).ticket_no
    receiver = Receiver()
    receiver.start()
    try:
        with capture_logs() as logs:
            password = await store.issue_password(no)
            assert password
            rows = [o for o in await store.outbox_for(no) if o.endpoint == SMS_ENDPOINT]
            assert len(rows) == 1
            row = rows[0]
            assert row.payload == {"event": "sms_notice", "ticket_no": no}  # no number, no password
            assert row.secret and password not in row.secret and password not in row.idempotency_key
            # the platform's pusher never takes it
            assert SMS_ENDPOINT not in {o.endpoint for o in await store.outbox_claim(100, 0.0)}
            sms = OutboxPusher(store, receiver.url.replace("/tickets", "/sms"), allow_http=True,
                               endpoint=SMS_ENDPOINT, echo_body=False,
                               render=sms_renderer(settings, store.sealer, _caller_of(store)))
            async with httpx.AsyncClient() as client:
                assert await sms.push_once(client) == 1
                assert await sms.push_once(client) == 0  # delivered: never again
        assert len(receiver.posts) == 1
        key, body = receiver.posts[0]
        assert key == row.idempotency_key
        assert body == {"to": "13800138000", "ticket_no": no,
                        "text": f"您的工单编号{no}，查询密码{password}。拨打12345按5可查询办理进度。"}
        after = [o for o in await store.outbox_for(no) if o.endpoint == SMS_ENDPOINT][0]
        assert after.delivered_at is not None and after.secret is None  # erased once sent
        assert not any(password in repr(e) for e in logs)
    finally:
        receiver.stop()


async def test_a_gateway_echoing_the_message_never_puts_it_in_the_outbox_or_the_log(store: TicketStore) -> None:
    settings = sms_settings()
    store.sealer = Sealer.from_env(settings, {"HOTLINE_SMS_KEY": KEY})
    no = (await store.open_ticket(**entry())).ticket_no
    password = await store.issue_password(no)
    assert password

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=request.content)  # a gateway that echoes what it got

    sms = OutboxPusher(store, "http://gw.test/sms", allow_http=True, endpoint=SMS_ENDPOINT, echo_body=False,
                       render=sms_renderer(settings, store.sealer, _caller_of(store)),
                       transport=httpx.MockTransport(echo))
    with capture_logs() as logs:
        async with httpx.AsyncClient(transport=httpx.MockTransport(echo)) as client:
            await sms.push_once(client)
    row = [o for o in await store.outbox_for(no) if o.endpoint == SMS_ENDPOINT][0]
    assert row.last_error == "HTTP 500" and row.delivered_at is None and row.secret
    assert not any(password in repr(e) for e in logs)


async def test_an_sms_whose_password_cannot_be_opened_is_a_dead_letter_at_once(store: TicketStore) -> None:
    settings = sms_settings()
    store.sealer = Sealer(os.urandom(32))
    no = (await store.open_ticket(**entry())).ticket_no
    await store.issue_password(no)
    sms = OutboxPusher(store, "http://gw.test/sms", allow_http=True, endpoint=SMS_ENDPOINT,
                       render=sms_renderer(settings, Sealer(os.urandom(32)), _caller_of(store)))
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client:
        await sms.push_once(client)
    row = [o for o in await store.outbox_for(no) if o.endpoint == SMS_ENDPOINT][0]
    assert row.dead_at is not None and "unsendable" in (row.last_error or "")


def _caller_of(store: TicketStore) -> Any:
    async def caller_of(ticket_no: str) -> str | None:
        t = await store.get_ticket(ticket_no)
        return t.caller if t is not None else None
    return caller_of


# --------------------------------------------------------------------------- item 6: deadlines


async def test_urgent_by_the_agent_moves_the_deadline_and_is_pushed(store: TicketStore) -> None:
    saved = await store.save_call(rec())
    before = (await store.get_ticket(saved.ticket_no)).deadline_at  # type: ignore[union-attr]
    t = await store.set_urgent(saved.ticket_no, True, actor="agent:1001", note="水管爆裂")
    assert t.urgent and t.deadline_at == t.created_at + dt.timedelta(hours=2) and t.deadline_at < before
    hist = [h for h in await store.history(saved.ticket_no) if h.field == "urgent"]
    assert hist[0].actor == "agent:1001" and hist[0].to_value == "True" and "水管爆裂" in (hist[0].note or "")
    assert (await store.outbox_for(saved.ticket_no))[-1].payload["event"] == "urgent_changed"
    t = await store.set_urgent(saved.ticket_no, False, actor="agent:1001")
    assert not t.urgent and t.deadline_at == before
    with pytest.raises(TicketNotFound):
        await store.set_urgent("990101000001", True, actor="x")


async def test_a_category_rule_makes_tickets_urgent(make_store: StoreFactory) -> None:  # noqa: F811
    st = await make_store()
    st.config = st.config.model_copy(deep=True)
    st.config.deadline_rules.urgent_categories = ["求助"]
    saved = await st.save_call(rec("a.1", category="求助"))
    t = await st.get_ticket(saved.ticket_no)
    assert t is not None and t.urgent and t.deadline_at == t.created_at + dt.timedelta(hours=2)
    # a ticket opened at entry learns its category when the call ends
    no = (await st.open_ticket(**entry("a.2"))).ticket_no
    assert not (await st.get_ticket(no)).urgent  # type: ignore[union-attr]
    await st.save_call(rec("a.2", category="求助"))
    assert (await st.get_ticket(no)).urgent  # type: ignore[union-attr]
    other = await st.save_call(rec("a.3", category="咨询"))
    assert not (await st.get_ticket(other.ticket_no)).urgent  # type: ignore[union-attr]


async def test_due_lists_open_tickets_near_or_past_their_deadline(make_store: StoreFactory) -> None:  # noqa: F811
    st = await make_store()
    clock = make_store.clock  # type: ignore[attr-defined]
    urgent = (await st.save_call(rec("d.1"))).ticket_no
    await st.set_urgent(urgent, True, actor="a")  # due in 2 h
    slow = (await st.save_call(rec("d.2"))).ticket_no  # 咨询: 2 working days
    closed = (await st.save_call(rec("d.3"))).ticket_no
    await st.set_urgent(closed, True, actor="a")
    await st.change_state(closed, "closed", actor="a")  # 当场解答: nothing owed any more
    assert [t.ticket_no for t in await st.due_tickets(dt.timedelta(hours=3))] == [urgent]
    assert [t.ticket_no for t in await st.due_tickets(dt.timedelta(days=5))] == [urgent, slow]
    clock.now += dt.timedelta(hours=5)  # past the urgent one's deadline: still listed (overdue)
    assert [t.ticket_no for t in await st.due_tickets(dt.timedelta(hours=1))] == [urgent]


async def test_one_reminder_per_deadline_even_with_two_controllers(make_store: StoreFactory) -> None:  # noqa: F811
    a, b = await make_store(), await make_store()
    no = (await a.save_call(rec("r.1"))).ticket_no
    await a.set_urgent(no, True, actor="agent")
    slow = (await a.save_call(rec("r.2"))).ticket_no  # 咨询, days away: no reminder
    assert await a.write_deadline_reminders(dt.timedelta(hours=1)) == []  # 2 h left: not yet
    assert await a.write_deadline_reminders(dt.timedelta(hours=3)) == [no]
    assert await b.write_deadline_reminders(dt.timedelta(hours=3)) == []  # the other controller: done already
    assert await a.write_deadline_reminders(dt.timedelta(hours=3)) == []
    events = [o.payload["event"] for o in await a.outbox_for(no)]
    assert events.count("deadline_reminder") == 1
    reminder = [o for o in await a.outbox_for(no) if o.payload["event"] == "deadline_reminder"][0]
    assert reminder.payload["urgent"] is True and reminder.payload["deadline_at"]
    assert reminder.endpoint == "platform"
    hist = [h for h in await a.history(no) if h.field == "reminder"]
    assert len(hist) == 1 and "deadline in 2.0 h" in (hist[0].note or "")
    # a new deadline is reminded of again
    await a.set_urgent(no, False, actor="agent")
    assert sorted(await b.write_deadline_reminders(dt.timedelta(days=5))) == sorted([no, slow])
    assert [o.payload["event"] for o in await a.outbox_for(no)].count("deadline_reminder") == 2


# --------------------------------------------------------------------------- the controller's part


async def test_the_controller_sends_the_sms_when_the_caller_left_before_the_notice_and_reminds(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller who hung up on the agent never heard the notice: the answered call's save issues the password
    for the SMS alone; an IVR-only call gets none; the reminder task writes its event."""
    from hotline.controller import Controller
    from model.loading import load_config
    from tests.unit.test_store import SHIPPED

    monkeypatch.setenv("SMS_T", "t")
    monkeypatch.setenv("HOTLINE_SMS_KEY", KEY)
    cfg = load_config(SHIPPED)
    cfg.sms.url, cfg.sms.token_env, cfg.sms.allow_http = "http://127.0.0.1:9/sms", "SMS_T", True
    cfg.deadline_rules.remind_before_h, cfg.deadline_rules.poll_s = 3, 0.05
    c = Controller(cfg, store_url=f"sqlite+aiosqlite:///{tmp_path}/t.db", control_path=tmp_path / "c.sock")
    await c.store.open()
    try:
        with capture_logs() as logs:
            await c._save(rec("left.1", survey_rating=None))
            await c._save(CallRecord(linkedid="ivr.2", caller="13700000000", dialed="12345", outcome="ended_in_ivr"))
        answered = (await c.store.get_by_linkedid("left.1")).ticket_no  # type: ignore[union-attr]
        ivr = (await c.store.get_by_linkedid("ivr.2")).ticket_no  # type: ignore[union-attr]
        sms = [o for o in await c.store.outbox_for(answered) if o.endpoint == SMS_ENDPOINT]
        assert len(sms) == 1 and sms[0].secret
        issued = [h for h in await c.store.history(answered) if h.field == "query_password"]
        assert [(h.actor, h.note) for h in issued] == [("sms", "by SMS too")]
        assert not [o for o in await c.store.outbox_for(ivr) if o.endpoint == SMS_ENDPOINT]
        password = c.store.sealer.open(sms[0].secret, sms[0].idempotency_key)  # type: ignore[union-attr]
        assert await c.store.verify_query(answered, password) is not None
        assert not any(password in repr(e) for e in logs)
        await c._save(rec("left.1", survey_rating=None))  # saved again (a replay): no second password, no SMS
        assert len([o for o in await c.store.outbox_for(answered) if o.endpoint == SMS_ENDPOINT]) == 1

        await c.store.set_urgent(answered, True, actor="agent:1001")
        task = asyncio.create_task(c._remind_deadlines())
        for _ in range(100):
            if [o for o in await c.store.outbox_for(answered) if o.payload.get("event") == "deadline_reminder"]:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        events = [o.payload.get("event") for o in await c.store.outbox_for(answered)]
        assert events.count("deadline_reminder") == 1
    finally:
        await c.store.close()


def test_check_names_a_missing_sms_token_or_key() -> None:
    from admin.check import sms_problems
    from model.loading import load_config
    from tests.unit.test_store import SHIPPED

    cfg = load_config(SHIPPED)
    assert sms_problems(cfg, "h.yaml", {}, {}) == []  # SMS off: nothing to say
    cfg.sms.url, cfg.sms.token_env = "https://gw.example/sms", "SMS_T"
    found = {p.field: p.message for p in sms_problems(cfg, "h.yaml", {}, {})}
    assert "$SMS_T is not set" in found["sms.token_env"] and "HOTLINE_SMS_KEY" in found["sms.key_env"]
    assert sms_problems(cfg, "h.yaml", {}, {"SMS_T": "t", "HOTLINE_SMS_KEY": KEY}) == []
