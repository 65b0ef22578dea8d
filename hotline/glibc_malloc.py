"""glibc malloc for a long-running controller: at most two arenas, and free memory handed back every minute.

Issue 15's soak: with the Python heap flat after warm-up (tracemalloc: +0.2 MiB in the last 2.5 minutes of a
10 calls/s run, the statement caches filling), the controller's RSS still rose about a MiB a minute at
20 calls/s, and glibc's own count of free-but-kept bytes (`mallinfo2().fordblks`, hotline/heapwatch.py) rose
with it: memory the interpreter and SQLite had freed stayed in malloc's arenas (one per thread that
allocates: the loop's, the call-writer's, aiosqlite's, the executor's), ready for reuse but resident.
`malloc_trim(0)` hands the free pages inside those arenas back (madvise), so RSS follows what is in use.

Arenas: glibc gives each thread that allocates an arena of its own (up to 8 per core), and memory freed in
one is kept there. In the same soak, RSS still rose by steps after bursts, in anonymous mappings (the thread
arenas; /proc/PID/smaps) with the Python heap flat; with at most two arenas (`MALLOC_ARENA_MAX=2`, set from
here by `mallopt(M_ARENA_MAX)` when the controller starts, before its threads) RSS stayed within 123–125 MiB
from 5 minutes to the end of a 10-minute 20 calls/s soak (bench/RESULTS.md). An operator's own
`$MALLOC_ARENA_MAX` wins.

The trim runs in a worker thread (it walks every arena under its lock: milliseconds) and is a no-op where the C
library has no `malloc_trim` (musl, macOS). `$HOTLINE_MALLOC_TRIM_S` sets the period (seconds); 0 turns it off.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from typing import Any

import structlog

log = structlog.get_logger("hotline.glibc_malloc")

#: how often (seconds); `$HOTLINE_MALLOC_TRIM_S` overrides it, 0 turns it off
MALLOC_TRIM_S = 60.0
MALLOC_TRIM_ENV = "HOTLINE_MALLOC_TRIM_S"


#: malloc arenas at most (glibc's default: 8 per core); see above
MALLOC_ARENAS = 2
#: mallopt's parameter number for it (malloc.h)
_M_ARENA_MAX = -8


def _libc_function(name: str, argtypes: list[Any]) -> Any:
    """The C library's function `name` with its argument types and an int result; None where it has none."""
    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn


_MALLOPT = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
_TRIM = _libc_function("malloc_trim", [ctypes.c_size_t])


def limit_arenas(n: int = MALLOC_ARENAS) -> bool | None:
    """At most `n` malloc arenas from now on (call it before starting threads): True when set, None when this
    C library cannot or `$MALLOC_ARENA_MAX` is set (glibc read the operator's choice at start)."""
    if os.environ.get("MALLOC_ARENA_MAX") or _MALLOPT is None:
        return None
    return bool(_MALLOPT(_M_ARENA_MAX, n))


def trim() -> bool | None:
    """Hand malloc's free pages back now: True when some memory was released, False when none could be,
    None when this C library cannot."""
    return None if _TRIM is None else bool(_TRIM(0))


def interval_from_env() -> float:
    """The period `$HOTLINE_MALLOC_TRIM_S` asks for (default MALLOC_TRIM_S; 0: off; nonsense: the default, said)."""
    raw = os.environ.get(MALLOC_TRIM_ENV, "").strip()
    if not raw:
        return MALLOC_TRIM_S
    try:
        value = float(raw)
    except ValueError:
        log.warning("malloc_trim_bad_interval", value=raw, used=MALLOC_TRIM_S)
        return MALLOC_TRIM_S
    return max(0.0, value)


async def trim_periodically(every_s: float) -> None:
    """`trim()` every `every_s` seconds in a worker thread, until cancelled (nothing to do without malloc_trim)."""
    if _TRIM is None or every_s <= 0:
        return
    while True:
        await asyncio.sleep(every_s)
        log.debug("malloc_trimmed", released=await asyncio.to_thread(trim))
