"""hotline/heapwatch.py: the controller's opt-in heap profiler (off: nothing; on: where memory grew)."""

from __future__ import annotations

import asyncio
import json
import tracemalloc

from hotline.heapwatch import HeapWatch, growth_of_types

HELD: list[object] = []


def test_off_unless_the_environment_asks() -> None:
    assert HeapWatch.from_env({}) is None
    assert HeapWatch.from_env({"HOTLINE_TRACEMALLOC": ""}) is None
    assert HeapWatch.from_env({"HOTLINE_TRACEMALLOC": "0"}) is None
    assert HeapWatch.from_env({"HOTLINE_TRACEMALLOC": "soon"}) is None
    w = HeapWatch.from_env({"HOTLINE_TRACEMALLOC": "30", "HOTLINE_TRACEMALLOC_FRAMES": "3",
                            "HOTLINE_TRACEMALLOC_OUT": "/dev/null"})
    assert w is not None and (w.interval_s, w.frames, str(w.out)) == (30.0, 3, "/dev/null")


def test_growth_of_types_names_what_grew_most() -> None:
    assert growth_of_types({"dict": 10, "Call": 5}, {"dict": 12, "Call": 505, "new": 1}) == [
        ("Call", 500), ("dict", 2), ("new", 1)]


async def test_a_growing_allocation_site_is_reported_and_tracing_stops_with_it(tmp_path) -> None:
    out = tmp_path / "heap.jsonl"
    w = HeapWatch(0.05, frames=3, out=out)
    task = asyncio.create_task(w.run())
    try:
        for _ in range(60):
            HELD.append([bytearray(1000) for _ in range(20)])  # ~20 KB a step, kept
            await asyncio.sleep(0.01)
            if w.reports >= 2:
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        HELD.clear()
    assert not tracemalloc.is_tracing()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and rows[-1]["grown_kib"] > 0
    assert any(any("test_heapwatch.py" in f for f in s["where"]) for s in rows[-1]["sites"][:3])
