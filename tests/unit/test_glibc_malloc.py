"""hotline/glibc_malloc.py: at most two malloc arenas; free memory handed back, on a timer that stops when cancelled."""

from __future__ import annotations

import asyncio
import ctypes

import pytest

from hotline import glibc_malloc as malloc_trim
from hotline.heapwatch import native_memory


def test_trim_gives_free_malloc_memory_back_on_glibc() -> None:
    """Write ~31 MiB of small blocks (far below malloc's mmap threshold: kept in its heap when freed) and free
    them below one that stays: the process still holds them (RSS) until the trim hands their pages back."""
    assert malloc_trim.trim() is not None  # this machine's C library (glibc) has malloc_trim
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(16 * 1024) for _ in range(2000)]
    for b in blocks:
        ctypes.memset(b, 1, 16 * 1024)  # resident now
    for b in blocks[:-1]:  # the last one stays: the heap's top cannot simply shrink past it
        libc.free(b)
    held = native_memory()["rss_mib"]
    assert malloc_trim.trim() is True
    after = native_memory()["rss_mib"]
    libc.free(blocks[-1])
    assert held is not None and after is not None and held - after >= 20, (held, after)


@pytest.mark.parametrize("raw, want", [("", 60.0), ("30", 30.0), ("0", 0.0), ("-5", 0.0), ("soon", 60.0)])
def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str, want: float) -> None:
    monkeypatch.setenv(malloc_trim.MALLOC_TRIM_ENV, raw)
    assert malloc_trim.interval_from_env() == want


async def test_the_periodic_trim_runs_and_stops_when_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(malloc_trim, "trim", lambda: calls.append(1) or True)
    task = asyncio.create_task(malloc_trim.trim_periodically(0.01))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(calls) >= 3
    assert await asyncio.wait_for(malloc_trim.trim_periodically(0), 1) is None  # off: returns at once


def test_the_arenas_are_limited_unless_the_operator_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert malloc_trim.limit_arenas() is True  # glibc took it
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert malloc_trim.limit_arenas() is None  # the operator's own setting wins
