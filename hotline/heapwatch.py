"""An opt-in heap profiler of the controller: where its memory grows, by allocation traceback (tracemalloc).

Off unless `$HOTLINE_TRACEMALLOC` is a number of seconds N (then nothing of it is imported, started or
run: `HeapWatch.from_env()` is None and the controller spawns no task). On, it starts `tracemalloc`
(`$HOTLINE_TRACEMALLOC_FRAMES` frames a traceback, 5 by default: every frame more costs CPU on each
allocation), takes a baseline snapshot once the controller has run N seconds (past its start-up), and
every N seconds after compares a new snapshot with that baseline: the allocation sites (by traceback;
frames of the standard library and site-packages kept, so a SQLAlchemy or structlog cache shows as
itself) whose live memory grew most, and the object types whose count grew most (`gc`); with them what
tracemalloc cannot see: RSS, SQLite's own memory (its page caches) and glibc malloc's free-but-kept bytes
(`native_memory`). Each report is logged as `heap_growth` and, when `$HOTLINE_TRACEMALLOC_OUT` names a
file, appended to it as one JSON line (bench/sip_capacity.py `--heap N` reads them).

A diagnostic for soaks (bench/RESULTS.md, "Soak"), not for production: tracemalloc slows every
allocation (the controller's CPU roughly doubles) and keeps a traceback per live block.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import linecache
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("hotline.heapwatch")

ENV_INTERVAL = "HOTLINE_TRACEMALLOC"
ENV_FRAMES = "HOTLINE_TRACEMALLOC_FRAMES"
ENV_OUT = "HOTLINE_TRACEMALLOC_OUT"
#: allocation sites and object types per report
TOP = 15


def native_memory() -> dict[str, float | None]:
    """What tracemalloc cannot see (MiB): the process's RSS, SQLite's own allocations (its page caches:
    `sqlite3_memory_used`), and glibc malloc's bytes in use and free but kept (`mallinfo2`: fragmentation).
    None for what this platform does not tell."""
    out: dict[str, float | None] = {"rss_mib": None, "sqlite_mib": None, "malloc_used_mib": None,
                                    "malloc_free_mib": None}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_mib"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import ctypes
        import ctypes.util
        __import__("sqlite3")  # loads the library the store uses, so the name below finds that one

        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        out["sqlite_mib"] = round(lib.sqlite3_memory_used() / 2**20, 1)
    except (OSError, AttributeError):
        pass
    try:
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]

        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = MallInfo2
        m = libc.mallinfo2()
        out["malloc_used_mib"] = round((m.uordblks + m.hblkhd) / 2**20, 1)
        out["malloc_free_mib"] = round(m.fordblks / 2**20, 1)
    except (OSError, AttributeError):
        pass
    return out


def type_counts() -> collections.Counter[str]:
    """Live objects the collector tracks, by type name (module-qualified for our own and libraries' classes)."""
    counts: collections.Counter[str] = collections.Counter()
    for o in gc.get_objects():
        t = type(o)
        mod = t.__module__
        counts[t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"] += 1
    return counts


def growth_of_types(before: Mapping[str, int], after: Mapping[str, int], top: int = TOP) -> list[tuple[str, int]]:
    """The object types whose count grew most from `before` to `after` (pure)."""
    grown = [(k, n - before.get(k, 0)) for k, n in after.items() if n > before.get(k, 0)]
    return sorted(grown, key=lambda kv: -kv[1])[:top]


class HeapWatch:
    def __init__(self, interval_s: float, *, frames: int = 5, out: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.frames = frames
        self.out = out
        self.clock = clock
        self.reports = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "HeapWatch | None":
        raw = env.get(ENV_INTERVAL, "").strip()
        if not raw:
            return None
        try:
            interval = float(raw)
        except ValueError:
            log.warning("heap_watch_bad_interval", value=raw)
            return None
        if interval <= 0:
            return None
        out = env.get(ENV_OUT, "").strip()
        raw_frames = env.get(ENV_FRAMES, "").strip() or "5"
        try:
            frames = max(1, int(raw_frames))
        except ValueError:  # a diagnosis switch never keeps the controller from starting
            log.warning("heap_watch_bad_frames", value=raw_frames, using=5)
            frames = 5
        return cls(interval, frames=frames, out=Path(out) if out else None)

    async def run(self) -> None:
        import tracemalloc  # only when on

        tracemalloc.start(self.frames)
        started = self.clock()
        try:
            await asyncio.sleep(self.interval_s)
            base, base_types = await self._snapshot(tracemalloc)
            traced = tracemalloc.get_traced_memory()[0]
            row = {"t_s": round(self.clock() - started), "traced_mib": round(traced / 2**20, 1), **native_memory(),
                   "grown_kib": 0.0, "sites": [], "types": []}
            log.info("heap_watch_baseline", interval_s=self.interval_s, frames=self.frames,
                     **{k: v for k, v in row.items() if k.endswith("mib")})
            self._write(row)
            while True:
                await asyncio.sleep(self.interval_s)
                snap, types = await self._snapshot(tracemalloc)
                self._report(tracemalloc, base, snap, base_types, types, self.clock() - started)
        finally:
            tracemalloc.stop()

    async def _snapshot(self, tracemalloc: Any) -> tuple[Any, collections.Counter[str]]:
        # both walk every live block/object on the loop's thread (seconds of a stall at a large heap):
        # acceptable for a diagnostic; it is why this is opt-in
        snap = tracemalloc.take_snapshot().filter_traces((
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, __file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*"),
            tracemalloc.Filter(False, linecache.__file__),
        ))
        await asyncio.sleep(0)
        return snap, type_counts()

    def _report(self, tracemalloc: Any, base: Any, snap: Any, base_types: Mapping[str, int],
                types: Mapping[str, int], elapsed: float) -> None:
        stats = snap.compare_to(base, "traceback")
        current, peak = tracemalloc.get_traced_memory()
        sites = []
        # compare_to orders by the absolute difference: what shrank would hide what grew
        for s in sorted((s for s in stats if s.size_diff > 0), key=lambda s: -s.size_diff)[:TOP]:
            sites.append({"kib": round(s.size_diff / 1024, 1), "blocks": s.count_diff,
                          "where": [f"{_short(f.filename)}:{f.lineno}" for f in s.traceback][-self.frames:]})
        report = {"t_s": round(elapsed), "traced_mib": round(current / 2**20, 1), **native_memory(),
                  "grown_kib": round(sum(s.size_diff for s in stats) / 1024, 1),
                  "sites": sites, "types": growth_of_types(base_types, types)}
        self.reports += 1
        log.info("heap_growth", t_s=report["t_s"], traced_mib=report["traced_mib"], grown_kib=report["grown_kib"],
                 rss_mib=report["rss_mib"], sqlite_mib=report["sqlite_mib"], malloc_free_mib=report["malloc_free_mib"],
                 top=[f"{x['kib']} KiB {x['where'][-1] if x['where'] else '?'}" for x in sites[:5]],
                 types=report["types"][:8])
        self._write(report)

    def _write(self, row: Mapping[str, Any]) -> None:
        if self.out is not None:
            with self.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _short(filename: str) -> str:
    """A file's path from its package on (`…/site-packages/sqlalchemy/x.py` → `sqlalchemy/x.py`)."""
    for mark in ("site-packages/", "/lib/python3"):
        if mark in filename:
            rest = filename.split(mark, 1)[1]
            return rest.split("/", 1)[1] if mark.startswith("/lib") and "/" in rest else rest
    parts = Path(filename).parts
    for i, p in enumerate(parts):
        if p in ("hotline", "live", "ticketbridge", "wire", "routing", "ivr", "model", "admin"):
            return "/".join(parts[i:])
    return filename
