"""What a running process has used so far, from /proc: the benches' reader of CPU, wake-ups and memory.

`Usage.of(pid)` reads a process's user and system CPU seconds, its first thread's (the controller's event
loop's) CPU and context switches; subtracting two readings gives what happened between them. Not started yet
(`None`) reads as nothing used; a process that is gone is an error (`ProcessLookupError`), not a reading of
zeros that would turn into a negative figure. The samplers' `cpu_s` and `rss_mib` read a gone process as 0
(SIPp ends before the last sample). `cpu_ns` and `peak_rss_mib` (the FastAGI benches' server process) read
nanoseconds and the peak instead.

Voluntary switches of the loop thread are the times it blocked: mostly in epoll with nothing to do, woken by
a socket, a timer or another thread; also a wait for the GIL or a lock. Involuntary ones are preemptions:
the kernel took the core away (on a 2-core box, mostly for Asterisk and SIPp). The kernel splits user from
system time by sampling at its clock tick: a share over a short span is an estimate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_times(path: str | Path) -> tuple[float, float]:
    """(user, system) CPU seconds of a process or thread from its /proc `stat` file; (0, 0) when it is gone."""
    try:
        return _times(Path(path).read_text(encoding="ascii", errors="replace"))
    except OSError:
        return 0.0, 0.0


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process `pid` (all its threads); 0 when it is gone or not started."""
    return sum(cpu_times(f"/proc/{pid}/stat")) if pid else 0.0


def cpu_ns(pid: int) -> int:
    """CPU time (user + system) of every thread of a live process, in ns (schedstat: finer than clock ticks; a
    thread that ends while it is read is left out)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory (VmHWM) of a live process, in MiB."""
    return _status_number(_read(f"/proc/{pid}/status", pid), "VmHWM") / 1024


def rss_mib(pid: int | None) -> float:
    """Resident memory of process `pid` in MiB; 0 when it is gone."""
    try:
        return _status_number(Path(f"/proc/{pid}/status").read_text(), "VmRSS") / 1024
    except OSError:
        return 0.0


def _read(path: str, pid: int) -> str:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as e:
        raise ProcessLookupError(f"process {pid} is gone ({path}: {e.strerror})") from e


def _status_number(status: str, key: str) -> int:
    """The number of `key` in a /proc `status` text ("VmRSS:  1234 kB" → 1234); 0 when it has none."""
    for line in status.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def _switches(status: str) -> tuple[int, int]:
    """(voluntary, involuntary) context switches from a thread's /proc `status` text."""
    return _status_number(status, "voluntary_ctxt_switches"), _status_number(status, "nonvoluntary_ctxt_switches")


def _times(stat: str) -> tuple[float, float]:
    # the command name (field 2) may hold spaces and parentheses: the fields after it start past the last ')'
    rest = stat.rsplit(")", 1)[1].split()
    return int(rest[11]) / TICK, int(rest[12]) / TICK


@dataclass(frozen=True)
class Usage:
    """A process's counters at one moment, or (after subtraction) over a span."""
    user: float = 0.0
    system: float = 0.0
    #: the first thread's (the event loop's) CPU seconds; the rest is the other threads' (the call writer, …)
    loop: float = 0.0
    #: the first thread's voluntary context switches (wake-ups) and involuntary ones (preemptions)
    wakeups: int = 0
    preempted: int = 0

    @classmethod
    def of(cls, pid: int | None) -> Usage:
        if not pid:
            return cls()
        user, system = _times(_read(f"/proc/{pid}/stat", pid))
        loop = sum(_times(_read(f"/proc/{pid}/task/{pid}/stat", pid)))
        wakeups, preempted = _switches(_read(f"/proc/{pid}/task/{pid}/status", pid))
        return cls(user, system, loop, wakeups, preempted)

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def __sub__(self, earlier: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)})

    def per_call(self, calls: int) -> str:
        """One line: where a call's CPU went (user / kernel, loop thread / others) and how often the loop woke."""
        n = max(1, calls)
        return (f"user {self.user / n * 1000:.1f} ms, system (the kernel: sockets, epoll, files) "
                f"{self.system / n * 1000:.1f} ms; the event loop's thread {self.loop / n * 1000:.1f} ms "
                f"(woken {self.wakeups / n:.1f} times, preempted {self.preempted / n:.1f} times), other threads "
                f"{(self.cpu - self.loop) / n * 1000:.1f} ms")
