"""bench/procstat.py: the benches' reader of a process's CPU and its event loop's wake-ups (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from bench.procstat import Usage, cpu_s, rss_mib


def _spin(seconds: float) -> None:
    """Burn `seconds` of this thread's CPU in Python (the clock read only every 10,000 turns: a clock read per
    turn would make most of it kernel time)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        for _ in range(10_000):
            pass


def test_a_span_counts_the_loop_threads_cpu_and_wakeups_apart_from_other_threads() -> None:
    before = Usage.of(os.getpid())
    _spin(0.05)  # this (the first) thread works…
    for _ in range(20):
        time.sleep(0.002)  # …and sleeps: each wake-up is a voluntary switch
    worker = threading.Thread(target=_spin, args=(0.1,))  # another thread's CPU is not the loop's
    worker.start()
    worker.join()
    used = Usage.of(os.getpid()) - before
    # /proc counts in clock ticks (10 ms), user and kernel apart by sampling: bounds with ticks to spare
    assert used.cpu >= 0.12
    assert 0.03 <= used.loop <= used.cpu - 0.07
    assert used.wakeups >= 20
    line = used.per_call(10)
    assert "the event loop's thread" in line and "woken " in line and "other threads" in line


def test_a_process_not_started_reads_as_zero_one_that_is_gone_is_an_error() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert Usage.of(None) == Usage()  # not started yet: nothing used
    with pytest.raises(ProcessLookupError, match=str(p.pid)):  # gone: no figure made of zeros
        Usage.of(p.pid)
    # the samplers' readings of a process that has ended (SIPp after its calls): zero
    assert cpu_s(p.pid) == 0.0 and cpu_s(None) == 0.0 and rss_mib(p.pid) == 0.0
    assert rss_mib(os.getpid()) > 1
