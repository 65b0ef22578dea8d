"""`hotline tickets …` and `hotline kpi` against a real SQLite store (CliRunner; no Asterisk)."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hotline.cli import main
from model.loading import load_config
from ticketbridge.assembler import CallRecord
from ticketbridge.store import TicketStore

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"


def rec(linkedid: str, **kw: Any) -> CallRecord:
    now = time.time()
    base: dict[str, Any] = dict(caller="13912345678", dialed="12345", queue="general", agent="robot2",
                                category="咨询", outcome="answered", answered_at=now - 30, started_at=now - 60,
                                ended_at=now, talk_s=30.0, queue_wait_s=6.0, ivr_path=["menu:main", "key:1"])
    base.update(kw)
    return CallRecord(linkedid=linkedid, **base)


@pytest.fixture
def store_url(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"

    async def fill() -> dict[str, str]:
        st = TicketStore(url, load_config(SHIPPED))
        await st.open()
        try:
            a = await st.save_call(rec("a.1", survey_rating=1, survey_scale=5))
            b = await st.save_call(rec("b.1", caller="13700001111", outcome="abandoned_in_queue", agent=None,
                                       answered_at=None, talk_s=None, queue_wait_s=40.0))
            c = await st.save_call(rec("c.1", caller="13600002222", dialed="12315", legacy_line="12315",
                                       outcome="ended_in_ivr", queue=None, agent=None, answered_at=None,
                                       talk_s=None, queue_wait_s=None))
            await st.change_state(a.ticket_no, "closed", "agent:1001", "当场解答")
            return {"url": url, "answered": a.ticket_no, "abandoned": b.ticket_no, "ivr": c.ticket_no}
        finally:
            await st.close()

    return asyncio.run(fill())


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_list_masks_numbers_unless_asked(store_url: dict[str, str]) -> None:
    r = run("tickets", "list", "--store", store_url["url"])
    assert r.exit_code == 0, r.output
    assert store_url["answered"] in r.output and "139******78" in r.output and "13912345678" not in r.output
    r = run("tickets", "list", "--store", store_url["url"], "--show-numbers")
    assert "13912345678" in r.output


def test_list_filters_and_json(store_url: dict[str, str]) -> None:
    r = run("tickets", "list", "--store", store_url["url"], "--outcome", "abandoned_in_queue", "--json")
    rows = json.loads(r.stdout)
    assert [t["ticket_no"] for t in rows] == [store_url["abandoned"]] and rows[0]["caller"] == "137******11"
    assert len(rows[0]["ticket_no"]) == 12
    r = run("tickets", "list", "--store", store_url["url"], "--dialed", "12315", "--json")
    assert [t["ticket_no"] for t in json.loads(r.stdout)] == [store_url["ivr"]]
    r = run("tickets", "list", "--store", store_url["url"], "--state", "办结", "--json")
    assert [t["ticket_no"] for t in json.loads(r.stdout)] == [store_url["answered"]]
    r = run("tickets", "list", "--store", store_url["url"], "--caller", "13700001111", "--json")
    assert len(json.loads(r.stdout)) == 1
    r = run("tickets", "list", "--store", store_url["url"], "--since", "2099-01-01", "--json")
    assert json.loads(r.stdout) == []
    r = run("tickets", "list", "--store", store_url["url"], "--until", "2000-01-01")
    assert "no tickets" in r.output
    r = run("tickets", "list", "--store", store_url["url"], "--limit", "1", "--json")
    assert len(json.loads(r.stdout)) == 1
    r = CliRunner().invoke(main, ["tickets", "list", "--store", store_url["url"], "--since", "yesterday"])
    assert r.exit_code == 2 and "not a date" in r.output
    r = CliRunner().invoke(main, ["tickets", "list", "--store", store_url["url"], "--state", "bogus"])
    assert r.exit_code == 2


def test_show_with_history(store_url: dict[str, str]) -> None:
    no = store_url["answered"]
    r = run("tickets", "show", no, "--store", store_url["url"])
    assert r.exit_code == 0 and f"ticket {no}" in r.output and "closed (办结)" in r.output
    assert "accepted → closed" in r.output and "当场解答" in r.output and "139******78" in r.output
    d = json.loads(run("tickets", "show", no, "--store", store_url["url"], "--json").stdout)
    assert [h["to"] for h in d["history"] if h["field"] == "state"] == ["accepted", "closed"]
    assert d["outbox"] and d["callback"] is None and "query_password_hash" not in d
    r = CliRunner().invoke(main, ["tickets", "show", "990101000001", "--store", store_url["url"]])
    assert r.exit_code == 1 and "no ticket" in r.output


def test_state_moves_and_explains_illegal(store_url: dict[str, str]) -> None:
    no = store_url["abandoned"]
    r = run("tickets", "state", no, "派单", "--actor", "agent:1001", "--note", "to tax", "--store", store_url["url"])
    assert r.exit_code == 0 and "dispatched (派单)" in r.output
    r = CliRunner().invoke(main, ["tickets", "state", no, "rated", "--actor", "x", "--store", store_url["url"]])
    assert r.exit_code == 1
    assert "dispatched" in r.output and "rated" in r.output and "may move to: accepted (受理), handling (办理), supervised (督办)" in r.output
    r = CliRunner().invoke(main, ["tickets", "state", no, "state"])
    assert r.exit_code == 2  # --actor is required


def test_export_csv(store_url: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    r = run("tickets", "export", "--csv", str(out), "--store", store_url["url"])
    assert r.exit_code == 0 and "wrote 3 ticket(s)" in r.output
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert len(rows) == 3 and {r["caller"] for r in rows} == {"139******78", "137******11", "136******22"}
    run("tickets", "export", "--csv", str(out), "--store", store_url["url"], "--outcome", "answered",
        "--show-numbers")
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert [r["caller"] for r in rows] == ["13912345678"] and rows[0]["category"] == "咨询"


def test_callbacks_list_and_outbox(store_url: dict[str, str]) -> None:
    r = run("tickets", "callbacks", "--store", store_url["url"], "--json")
    items = json.loads(r.stdout)
    assert {i["ticket_no"] for i in items} == {store_url["abandoned"], store_url["ivr"]}
    assert all(i["status"] == "pending" and i["attempts"] == 0 for i in items)
    r = run("tickets", "callbacks", "--store", store_url["url"])
    assert "137******11" in r.output and "abandoned_in_queue" in r.output
    r = run("tickets", "outbox", "--store", store_url["url"], "--json")
    assert len(json.loads(r.stdout)) == 4  # 3 created + 1 state change
    r = run("tickets", "outbox", "--dead", "--store", store_url["url"])
    assert "no dead letters" in r.output
    r = CliRunner().invoke(main, ["tickets", "outbox", "--retry", "999", "--store", store_url["url"]])
    assert r.exit_code == 1


def test_callback_of_a_ticket_not_on_the_list(store_url: dict[str, str]) -> None:
    r = CliRunner().invoke(main, ["tickets", "callback", store_url["answered"], "--store", store_url["url"],
                                  "-c", str(SHIPPED)])
    assert r.exit_code == 1 and "is not on the callback list" in r.output  # checked before any AMI link
    r = CliRunner().invoke(main, ["tickets", "callback", "990101000001", "--store", store_url["url"]])
    assert r.exit_code == 1 and "does not exist" in r.output


def test_kpi_text_and_json(store_url: dict[str, str]) -> None:
    r = run("kpi", "--store", store_url["url"])
    assert r.exit_code == 0 and "接通率 answer rate" in r.output and "50.0%" in r.output
    d = json.loads(run("kpi", "--store", store_url["url"], "--json").stdout)
    t = d["total"]
    assert (t["calls"], t["offered"], t["answered"], t["abandoned"]) == (3, 2, 1, 1)
    assert t["answer_rate"] == 0.5 and t["answered_within_rate"] == 1.0 and t["on_spot_rate"] == 1.0
    assert t["satisfaction_rate"] == 1.0 and t["callbacks_needed"] == 2 and t["lines"] == {"12345": 2, "12315": 1}
    d = json.loads(run("kpi", "--store", store_url["url"], "--by", "line", "--json").stdout)
    assert set(d["groups"]) == {"12345", "12315"} and d["groups"]["12315"]["ended_in_ivr"] == 1
    d = json.loads(run("kpi", "--store", store_url["url"], "--by", "day", "--since", "2099-01-01", "--json").stdout)
    assert d["total"]["calls"] == 0 and d["groups"] == {}
    r = run("kpi", "--store", store_url["url"], "--by", "queue")
    assert "queue general:" in r.output and "queue (none):" in r.output


def test_unreachable_store_is_explained() -> None:
    r = CliRunner().invoke(main, ["tickets", "list", "--store", "postgresql+asyncpg://nobody@127.0.0.1:1/x"])
    assert r.exit_code == 3 and "Cannot open the ticket store" in r.output


def test_followups_list_and_show(store_url: dict[str, str]) -> None:
    """The answered ticket was closed (当场解答): a 回访 is owed, listed masked, and shown on the ticket."""
    r = run("tickets", "followups", "--store", store_url["url"])
    assert r.exit_code == 0, r.output
    [line] = [x for x in r.stdout.splitlines() if x[:1].isdigit()]
    assert line.startswith(store_url["answered"]) and "139******78" in line and "咨询" in line
    assert "pending" in line and "attempts 0" in line
    r = run("tickets", "followups", "--status", "done", "--store", store_url["url"])
    assert r.exit_code == 0 and "no follow-ups owed" in r.output
    r = run("tickets", "show", store_url["answered"], "--json", "--store", store_url["url"])
    shown = json.loads(r.stdout)
    assert shown["followup"] == {"status": "pending", "attempts": 0, "last_result": None, "resolved": None,
                                 "rating": None, "scale": None, "given_up": False}
    assert ["followup", None, "pending"] in [[h["field"], h["from"], h["to"]] for h in shown["history"]]


def test_urgent_then_due_lists_it_first_and_closed_tickets_never(store_url: dict[str, str]) -> None:
    """Issue 13 item 6: an agent marks a ticket urgent; `tickets due` lists it (2 h left), not the closed one."""
    r = run("tickets", "urgent", store_url["abandoned"], "--actor", "agent:1001", "--note", "燃气泄漏",
            "--store", store_url["url"])
    assert r.exit_code == 0 and "is urgent" in r.stdout
    r = run("tickets", "due", "--within", "3", "--json", "--store", store_url["url"])
    rows = json.loads(r.stdout)
    assert [x["ticket_no"] for x in rows] == [store_url["abandoned"]]
    assert rows[0]["urgent"] and 1.9 <= rows[0]["hours_left"] <= 2.0 and not rows[0]["overdue"]
    r = run("tickets", "due", "--within", "2000", "--json", "--store", store_url["url"])
    listed = [x["ticket_no"] for x in json.loads(r.stdout)]
    assert listed[0] == store_url["abandoned"] and store_url["answered"] not in listed  # closed on the spot
    r = run("tickets", "urgent", store_url["abandoned"], "--off", "--actor", "agent:1001", "--store", store_url["url"])
    assert "not urgent" in r.stdout
    r = run("tickets", "due", "--within", "3", "--store", store_url["url"])
    assert r.exit_code == 0 and "no open ticket is due within 3 h" in r.stdout
    r = CliRunner().invoke(main, ["tickets", "urgent", "990101000001", "--actor", "x", "--store", store_url["url"]])
    assert r.exit_code == 1 and "no ticket 990101000001" in r.output
