"""CDR replay: the pure bookkeeping (lines → rows → calls due → records) and the file-reading adapter."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ticketbridge.assembler import CallRecord
from ticketbridge.cdr import CDR_FORGET_S, CdrReplay, CdrReplayer, Chunk, parse_chunk, read_start

T0 = 1_760_000_000.0


def row(lid: str, end: float, *, hotline: bool = True, **kw: Any) -> dict[str, Any]:
    """One of our JSON CDR lines (cdr_custom.conf), answered by an agent in the general queue."""
    r: dict[str, Any] = {"linkedid": lid, "uniqueid": lid, "src": "13700000000", "channel": "PJSIP/trunk-00000001",
                         "dstchannel": "PJSIP/1001-00000002", "lastapp": "Queue", "lastdata": "q-general,c,,,120",
                         "start": end - 60, "answer": end - 40, "end": end, "billsec": "40",
                         "disposition": "ANSWERED", "hotline_dialed": "12345" if hotline else "",
                         "hotline_queue": "hotline-general"}
    r.update(kw)
    return r


def lines(*rows: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


# --------------------------------------------------------------------------- pure part


def test_read_start_starts_over_when_the_file_shrank() -> None:
    assert read_start(100, 150) == 100
    assert read_start(100, 100) == 100
    assert read_start(100, 40) == 0  # rotated or truncated


def test_parse_chunk_takes_complete_lines_only() -> None:
    data = lines(row("1.1", T0)) + b"\n  \n" + b"not json\n" + b"[1, 2]\n" + b'{"linkedid": "1.2", "en'
    chunk = parse_chunk(data)
    assert chunk.consumed == data.rfind(b"\n") + 1  # the partial last line waits for the next read
    assert [r["linkedid"] for r in chunk.rows] == ["1.1"]
    assert chunk.unreadable == 2
    assert parse_chunk(b'{"linkedid": "1.3"') == Chunk()  # no complete line yet
    assert parse_chunk(b"") == Chunk()


def test_parse_chunk_survives_bad_bytes() -> None:
    chunk = parse_chunk(b'{"linkedid": "1.1", "src": "\xff\xfe"}\n')
    assert chunk.rows and chunk.rows[0]["linkedid"] == "1.1"


def test_take_advances_the_offset_from_where_the_read_began() -> None:
    rp = CdrReplay()
    data = lines(row("1.1", T0))
    rp.take(0, parse_chunk(data))
    assert rp.offset == len(data)
    rp.take(rp.offset, parse_chunk(b'{"partial": '))
    assert rp.offset == len(data)
    rp.take(0, parse_chunk(b""))  # the file was truncated to nothing
    assert rp.offset == 0


def test_a_call_is_due_once_settled_and_not_while_live() -> None:
    rp = CdrReplay(settle_s=20)
    rp.take(0, parse_chunk(lines(row("1.1", T0), row("1.1", T0 + 5), row("2.1", T0 + 30))))
    assert rp.newest["1.1"] == T0 + 5
    assert rp.due(T0 + 10) == []  # nothing settled yet
    assert rp.due(T0 + 25) == ["1.1"]
    assert rp.due(T0 + 25, open_ids={"1.1"}) == []  # the live assembler still follows it
    assert rp.due(T0 + 60) == ["1.1", "2.1"]


def test_rows_without_a_usable_end_count_as_settled() -> None:
    rp = CdrReplay(settle_s=20)
    rp.take(0, parse_chunk(lines({**row("1.1", T0), "end": "garbage"}, {**row("2.1", T0), "end": None})))
    assert rp.newest == {"1.1": 0.0, "2.1": 0.0}
    assert rp.due(T0) == ["1.1", "2.1"]


def test_calls_of_another_asterisk_instance_are_never_replayed() -> None:
    """Item 12: a test run's calls in the CDR file never become tickets in the production store."""
    rp = CdrReplay(settle_s=0)  # the main instance (production, the demo)
    rp.take(0, parse_chunk(lines(row("test.1", T0, hotline_instance="e2e"), row("ours.1", T0, hotline_instance="main"),
                                 row("old.1", T0))))  # a row written before instances were tagged
    rp.take(rp.offset, parse_chunk(lines(row("test.1", T0 + 1))))  # a later, untagged leg of the test call
    assert rp.due(T0 + 5) == ["ours.1", "old.1"]
    e2e = CdrReplay(settle_s=0, instance="e2e")
    e2e.take(0, parse_chunk(lines(row("test.1", T0, hotline_instance="e2e"), row("ours.1", T0, hotline_instance="main"))))
    assert e2e.due(T0 + 5) == ["test.1"]


def test_the_dialplan_tags_each_call_with_its_instance() -> None:
    from model.loading import default_config_path, load_config
    from routing.dialplan import Layout, RenderInputs, render

    cfg = load_config(default_config_path())
    for layout, tag in ((Layout(), "main"), (Layout().for_instance("e2e"), "e2e")):
        files = render(cfg, RenderInputs(ami_secret="a" * 16, seat_secrets={k: "s" for k in cfg.seats}, layout=layout))
        assert f"Set(CDR(hotline_instance)={tag})" in files["extensions.conf"]
        assert "hotline_instance(uservar)" in files["cdr_custom.conf"]


def test_rows_without_a_linkedid_are_skipped() -> None:
    rp = CdrReplay()
    rp.take(0, parse_chunk(lines({"src": "1"}, {"linkedid": ""}, {"linkedid": None})))
    assert rp.rows == {}


def test_a_call_without_a_hotline_leg_waits_then_is_forgotten() -> None:
    rp = CdrReplay(settle_s=20)
    rp.take(0, parse_chunk(lines(row("7.1", T0, hotline=False))))
    assert rp.due(T0 + 30) == []
    assert "7.1" in rp.rows  # the caller's row may still come
    rp.take(rp.offset, parse_chunk(lines(row("7.1", T0 + 1))))
    assert rp.due(T0 + 30) == ["7.1"]  # it came: now it is a hotline call

    rp.take(rp.offset, parse_chunk(lines(row("8.1", T0, hotline=False))))
    assert rp.due(T0 + CDR_FORGET_S) == ["7.1"]
    assert "8.1" in rp.rows
    assert rp.due(T0 + CDR_FORGET_S + 1) == ["7.1"]
    assert "8.1" not in rp.rows and "8.1" not in rp.newest and "8.1" not in rp.done


def test_conclude_rebuilds_a_missed_call_and_looks_at_each_call_once() -> None:
    rp = CdrReplay(settle_s=0)
    rp.take(0, parse_chunk(lines(row("1.1", T0), row("2.1", T0), row("3.1", T0))))
    assert rp.due(T0) == ["1.1", "2.1", "3.1"]

    rec = rp.conclude("1.1", None)  # no ticket at all
    assert isinstance(rec, CallRecord) and rec.source == "cdr" and rec.linkedid == "1.1"
    assert rec.outcome == "answered" and rec.caller == "13700000000" and rec.queue == "hotline-general"
    rec = rp.conclude("2.1", "in_progress")  # flushed at shutdown: the CDR completes it
    assert rec is not None and rec.outcome == "answered"
    assert rp.conclude("3.1", "answered") is None  # a complete ticket is never overwritten

    assert all(lid in rp.done for lid in ("1.1", "2.1", "3.1")) and len(rp.done) == 3 and rp.rows == {} and rp.newest == {}
    rp.take(rp.offset, parse_chunk(lines(row("1.1", T0 + 1))))  # a late row of a call already looked at
    assert rp.rows == {} and rp.due(T0 + 100) == []


def test_done_calls_stay_done_across_a_rotation() -> None:
    rp = CdrReplay(settle_s=0)
    data = lines(row("1.1", T0), row("2.1", T0), row("3.1", T0))
    rp.take(read_start(rp.offset, len(data)), parse_chunk(data))
    for lid in rp.due(T0):
        assert rp.conclude(lid, None) is not None
    # rotated: the new file is shorter, and holds a call already looked at plus a new one
    rotated = lines(row("1.1", T0), row("4.1", T0))
    start = read_start(rp.offset, len(rotated))
    assert start == 0
    rp.take(start, parse_chunk(rotated))
    assert rp.offset == len(rotated)
    assert rp.due(T0) == ["4.1"]


# --------------------------------------------------------------------------- adapter


class FakeStore:
    """Tickets by linkedid (anything with `.outcome`), and what the replay saved."""

    def __init__(self, **outcomes: str) -> None:
        self.tickets = {lid: SimpleNamespace(outcome=o) for lid, o in outcomes.items()}
        self.saved: list[CallRecord] = []
        self.lookups: list[str] = []

    async def lookup(self, lids: list[str]) -> dict[str, Any]:
        self.lookups.extend(lids)
        return {lid: self.tickets[lid] for lid in lids if lid in self.tickets}

    async def save(self, record: CallRecord) -> None:
        self.saved.append(record)
        self.tickets[record.linkedid] = SimpleNamespace(outcome=record.outcome)


def replayer(path: Path, store: FakeStore, *, now: float = T0 + 100, settle_s: float = 20.0,
             open_ids: set[str] | None = None) -> CdrReplayer:
    return CdrReplayer(path, lookup=store.lookup, save=store.save, open_ids=lambda: open_ids or set(),
                       settle_s=settle_s, clock=lambda: now)


async def test_reconcile_reads_appended_lines_and_saves_each_missed_call_once(tmp_path: Path) -> None:
    path = tmp_path / "Master.json"
    store = FakeStore(**{"2.1": "answered", "3.1": "in_progress"})
    rp = replayer(path, store)
    assert await rp.reconcile() == 0  # no file yet
    path.write_bytes(lines(row("1.1", T0), row("2.1", T0), row("3.1", T0)) + b'{"linkedid": "4.1"')
    assert await rp.reconcile() == 2  # 1.1 had no ticket, 3.1 only an in-progress one
    assert [r.linkedid for r in store.saved] == ["1.1", "3.1"]
    assert rp.replay.offset == path.stat().st_size - len(b'{"linkedid": "4.1"')
    assert await rp.reconcile() == 0  # a second replay changes nothing
    assert sorted(store.lookups) == ["1.1", "2.1", "3.1"]  # each call looked at once

    with path.open("ab") as f:  # the partial line completes, another call follows
        f.write(b', "hotline_dialed": "12345", "end": 1.0, "src": "13900000000"}\n' + lines(row("5.1", T0)))
    assert await rp.reconcile() == 2
    assert [r.linkedid for r in store.saved[2:]] == ["4.1", "5.1"]


async def test_reconcile_leaves_young_and_live_calls_for_later(tmp_path: Path) -> None:
    path = tmp_path / "Master.json"
    path.write_bytes(lines(row("1.1", T0 + 90), row("2.1", T0)))
    store = FakeStore()
    assert await replayer(path, store, open_ids={"2.1"}).reconcile() == 0
    assert store.lookups == []


async def test_a_shrunk_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "Master.json"
    path.write_bytes(lines(row("1.1", T0), row("2.1", T0), row("3.1", T0)))
    store = FakeStore()
    rp = replayer(path, store)
    assert await rp.reconcile() == 3
    path.write_bytes(lines(row("1.1", T0), row("9.1", T0)))  # rotated: shorter, starts over
    assert await rp.reconcile() == 1
    assert store.saved[-1].linkedid == "9.1"


async def test_unreadable_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "Master.json"
    path.write_bytes(b"garbage\n" + lines(row("1.1", T0)))
    store = FakeStore()
    assert await replayer(path, store).reconcile() == 1


def test_interval_is_half_the_settle_time_at_least_a_second(tmp_path: Path) -> None:
    store = FakeStore()
    assert replayer(tmp_path / "x", store, settle_s=20).interval_s == 10
    assert replayer(tmp_path / "x", store, settle_s=0).interval_s == 1


def test_the_calls_looked_at_are_remembered_up_to_a_bound(monkeypatch) -> None:
    """Issue 15's soak: the set of calls looked at grew by one linkedid a call for the controller's life."""
    import ticketbridge.cdr as cdr

    monkeypatch.setattr(cdr, "DONE_MEMORY", 40)
    rp = CdrReplay(settle_s=0)
    for i in range(100):
        rp.take(rp.offset, parse_chunk(lines(row(f"{i}.1", T0))))
        for lid in rp.due(T0):
            rp.conclude(lid, "answered")
    assert len(rp.done) == 40 and "99.1" in rp.done and "0.1" not in rp.done
    assert rp.rows == {} and rp.newest == {}
    rp.take(rp.offset, parse_chunk(lines(row("99.1", T0 + 1))))  # a late row of a recent call: still ignored
    assert rp.rows == {}


def test_the_calls_looked_at_are_forgotten_after_a_while_so_memory_stays_flat() -> None:
    """At a steady call rate the set stays the same size once DONE_KEEP_S has passed (issue 15's soak)."""
    from ticketbridge.cdr import DONE_KEEP_S

    rp = CdrReplay(settle_s=0)
    sizes = []
    for minute in range(12):
        for i in range(60):  # a call a second
            t = T0 + minute * 60 + i
            rp.take(rp.offset, parse_chunk(lines(row(f"{minute}.{i}", t))))
            for lid in rp.due(t):
                rp.conclude(lid, "answered")
        sizes.append(len(rp.done))
    keep_min = int(DONE_KEEP_S // 60)
    assert sizes[keep_min + 1:] == [sizes[-1]] * (len(sizes) - keep_min - 1)  # flat after the window
    assert DONE_KEEP_S <= sizes[-1] <= DONE_KEEP_S + 60
    assert "11.59" in rp.done and "0.0" not in rp.done
