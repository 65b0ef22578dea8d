"""How a call's record becomes, or merges into, its ticket's columns (pure: no database, no clock).

`record_values` is what a record says in the ticket's column names; `merge_changes` decides, column by
column, what a new record of a call changes on the ticket already saved for it. The store writes the
result (ticketbridge/ticket_writes.py); these rules are what makes a save idempotent by linkedid and
never lose information: a complete record replaces an in-progress one, live events win over a CDR
rebuild, and a CDR rebuild corrects a call the live events saw only in part (`CallRecord.gap`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ticketbridge.assembler import CallRecord

UTC = dt.timezone.utc

#: outcomes after which the citizen is called back (漏接电话回拨) unless they served themselves
CALLBACK_OUTCOMES = frozenset({"abandoned_in_queue", "ended_in_ivr"})

#: CallRecord fields copied into the ticket as they are
PLAIN = ("caller", "dialed", "legacy_line", "mode", "requested_dest", "actual_dest", "category", "ivr_path",
         "priority", "language",
         "queue", "queue_wait_s", "agent", "talk_s", "transfers", "survey_rating", "survey_scale",
         "self_query", "recording", "transcript", "handled_by", "outcome", "source")
#: CallRecord times (epoch seconds) stored as aware datetimes
TIMES = ("answered_at", "started_at", "ended_at")
#: what Asterisk's CDR knows better than live events that missed part of the call (CallRecord.gap)
#: (not the agent: the live AgentConnect names the queue member, the CDR only its channel)
CDR_FACTS = ("caller", "dialed", "queue", "answered_at", "talk_s", "started_at", "ended_at")


def _ts(epoch: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


def record_values(record: CallRecord) -> dict[str, Any]:
    """The record in the ticket's column names (times as aware UTC datetimes, lists copied)."""
    v: dict[str, Any] = {k: getattr(record, k) for k in PLAIN}
    v["ivr_path"] = list(record.ivr_path or [])
    v["transfers"] = [dict(t) for t in record.transfers or []]
    v["participants"] = [list(p) for p in record.participants or []]
    for k in TIMES:
        v[k] = _ts(getattr(record, k))
    return v


def cdr_outcome_wins(live: str, cdr: str) -> bool:
    """The CDR's outcome replaces a gapped live one, unless the live one is a refinement the CDR cannot
    express (a transferred call is "answered" in the CDR)."""
    return not (live == "transferred" and cdr == "answered")


def informative(key: str, value: Any) -> bool:
    if value is None or value == "" or value == [] or value == {}:
        return False
    return not (key == "mode" and value == "unknown")


def rank(outcome: str, source: str) -> tuple[bool, bool]:
    """Completeness first, then live events over a CDR rebuild."""
    return (outcome != "in_progress", source != "cdr")


def wants_callback(outcome: str, self_query: Any) -> bool:
    return outcome in CALLBACK_OUTCOMES and not self_query


def new_cdr_check(record: CallRecord) -> str | None:
    """`cdr_check` of a ticket first made from `record`."""
    return "due" if record.gap and record.source != "cdr" else None


def merge_changes(cur: Mapping[str, Any], record: CallRecord) -> dict[str, Any]:
    """What `record` changes on the ticket whose columns are `cur`: column → new value, in the order the
    history note names them (`cdr_check` last); empty when nothing changes.

    Adds what the new record knows; a better record (complete, live) replaces what it knows better. A
    call the live events saw only in part (`record.gap`) is the exception: Asterisk's CDR knows its
    caller, dialed number, queue, agent and outcome better (`CDR_FACTS`), so a CDR record corrects
    those on a ticket marked `cdr_check: due`, and a live record with a gap never overwrites them once
    the CDR has spoken (`corrected`, or a ticket first made from the CDR). The agent's category
    (`intake_at` set) is never replaced by the IVR's.
    """
    new = record_values(record)
    old_rank, new_rank = rank(cur["outcome"], cur["source"]), rank(record.outcome, record.source)
    from_cdr = record.source == "cdr"
    correcting = from_cdr and cur["cdr_check"] == "due"
    protect = not from_cdr and record.gap and (cur["source"] == "cdr" or cur["cdr_check"] == "corrected")
    if new_rank < old_rank and not correcting:
        return {}  # e.g. a CDR rebuild or a stale in-progress flush after the complete record
    changes: dict[str, Any] = {}
    outcome_from_cdr = correcting and cdr_outcome_wins(cur["outcome"], record.outcome)
    outcome_from_live = protect and not cdr_outcome_wins(record.outcome, cur["outcome"])
    for key, value in new.items():
        if key == "category" and cur["intake_at"] is not None:
            continue  # the agent's pick (save_intake) wins over the IVR's menu category
        old = cur[key]
        if key in TIMES and old is not None and value is not None:
            if abs((old - value).total_seconds()) < 1e-3:
                continue
        blank_filled = not informative(key, old) and informative(key, value)
        if correcting:
            if key in ("outcome", "actual_dest"):
                take = outcome_from_cdr and informative(key, value) and value != old
            elif key in CDR_FACTS:
                take = informative(key, value) and value != old
            elif key in ("handled_by", "mode"):  # the CDR knows when the dialplan routed alone
                take = value == "fallback" and value != old
            else:
                take = blank_filled and key not in ("source", "handled_by", "mode")
        elif protect and key in ("outcome", "actual_dest") and informative(key, old):
            take = outcome_from_live and value != old
        elif protect and key in (*CDR_FACTS, "handled_by", "mode") and informative(key, old):
            take = False
        elif new_rank > old_rank:
            take = informative(key, value) and value != old
            if key in ("outcome", "source", "handled_by"):
                take = value != old
        else:
            take = blank_filled or (
                isinstance(old, list) and isinstance(value, list) and len(value) > len(old)
                and value[: len(old)] == old)
        if take:
            changes[key] = value
    check = "corrected" if correcting or protect else (
        "due" if record.gap and not from_cdr and cur["cdr_check"] is None else cur["cdr_check"])
    if check != cur["cdr_check"]:
        changes["cdr_check"] = check
    return changes
