"""bench/procstat.py: the benches' reader of a process's CPU and its event loop's wake-ups (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from bench.procstat import Usage, cpu_s, rss_mib


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
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
    # /proc counts in clock ticks (10 ms): bounds with a tick or two to spare
    assert used.cpu >= 0.12 and used.user > 0
    assert 0.03 <= used.loop <= used.cpu - 0.07
    assert used.wakeups >= 20
    line = used.per_call(10)
    assert "the event loop's thread" in line and "woken " in line and "other threads" in line


def test_a_process_that_is_gone_or_not_started_reads_as_zero() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert Usage.of(p.pid) == Usage() == Usage.of(None)
    assert cpu_s(p.pid) == 0.0 and cpu_s(None) == 0.0 and rss_mib(p.pid) == 0.0
    assert rss_mib(os.getpid()) > 1
