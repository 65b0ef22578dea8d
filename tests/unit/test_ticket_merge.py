"""The merge rules of a call's record into its ticket, without a database (ticketbridge/ticket_merge.py).

The store's tests (test_store.py, on SQLite and PostgreSQL) check the same rules through real saves; these
name each rule on its own, on the columns a ticket row has."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ticketbridge.assembler import CallRecord
from ticketbridge.ticket_merge import merge_changes, new_cdr_check, record_values

UTC = dt.timezone.utc
T0 = 1_764_480_000.0


def row(record: CallRecord, **over: Any) -> dict[str, Any]:
    """The columns of a ticket first made from `record` (what the store would have saved)."""
    cur = record_values(record)
    cur.update(cdr_check=new_cdr_check(record), intake_at=None)
    cur.update(over)
    return cur


def test_the_complete_record_fills_the_opened_ticket_and_the_open_record_changes_nothing_after() -> None:
    opened = CallRecord(linkedid="1.1", caller="13800138000", dialed="12345", started_at=T0)
    done = CallRecord(linkedid="1.1", caller="13800138000", dialed="12345", started_at=T0, ended_at=T0 + 30,
                      outcome="ended_in_ivr", ivr_path=["menu:main", "key:1"])
    changes = merge_changes(row(opened), done)
    assert changes == {"ivr_path": ["menu:main", "key:1"], "outcome": "ended_in_ivr",
                       "ended_at": dt.datetime.fromtimestamp(T0 + 30, UTC)}
    assert merge_changes(row(done), opened) == {}  # a stale in-progress flush never undoes the complete record


def test_times_within_a_millisecond_are_the_same_time() -> None:
    a = CallRecord(linkedid="1.1", started_at=T0, outcome="answered")
    assert merge_changes(row(a), CallRecord(linkedid="1.1", started_at=T0 + 0.0004, outcome="answered")) == {}


def test_a_cdr_record_corrects_a_gapped_ticket_and_marks_it_corrected() -> None:
    gapped = CallRecord(linkedid="1.1", caller="", dialed="12345", outcome="ended_in_ivr", gap=True, started_at=T0)
    cur = row(gapped)
    assert cur["cdr_check"] == "due"
    cdr = CallRecord(linkedid="1.1", caller="13800138000", dialed="12345", queue="general", outcome="abandoned_in_queue",
                     source="cdr", started_at=T0)
    changes = merge_changes(cur, cdr)
    assert changes["caller"] == "13800138000" and changes["queue"] == "general"
    assert changes["outcome"] == "abandoned_in_queue" and changes["cdr_check"] == "corrected"
    assert "source" not in changes  # the ticket stays one built from live events


def test_a_transferred_call_stays_transferred_when_the_cdr_says_answered() -> None:
    cur = row(CallRecord(linkedid="1.1", outcome="transferred", gap=True, started_at=T0))
    changes = merge_changes(cur, CallRecord(linkedid="1.1", outcome="answered", source="cdr", started_at=T0))
    assert "outcome" not in changes and changes["cdr_check"] == "corrected"


def test_a_gapped_live_record_never_overwrites_what_the_cdr_said() -> None:
    cur = row(CallRecord(linkedid="1.1", caller="13800138000", queue="general", outcome="answered", source="cdr",
                         started_at=T0))
    live = CallRecord(linkedid="1.1", caller="", queue="other", outcome="answered", gap=True, agent="1001",
                      started_at=T0)
    changes = merge_changes(cur, live)
    assert "queue" not in changes and "caller" not in changes
    assert changes["agent"] == "1001"  # what the CDR cannot know is still added


def test_the_agents_category_wins_over_the_menus() -> None:
    cur = row(CallRecord(linkedid="1.1", outcome="answered", started_at=T0), category="投诉",
              intake_at=dt.datetime.fromtimestamp(T0, UTC))
    changes = merge_changes(cur, CallRecord(linkedid="1.1", outcome="answered", category="咨询", started_at=T0,
                                            talk_s=12.0))
    assert "category" not in changes and changes == {"talk_s": 12.0}
