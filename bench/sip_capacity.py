"""Real-call capacity with SIP callers: SIPp plays the carrier against our own Asterisk + controller.

Everything real and on loopback: this test instance's Asterisk 22 (HOTLINE_INSTANCE /
HOTLINE_PORT_OFFSET, rendered and started as tests/e2e/conftest.py does), the real controller in its
own process (tests/e2e/fault_controller.py, what `hotline run` runs) with a real SQLite store (or
`--store URL`), and SIPp (Debian's sip-tester) as the carrier on 127.0.0.2 sending INVITEs over
PJSIP with RTP (SIPp's rtp_stream: a looped tone on every call). Each
call enters the hotline like a citizen's: greeting, menu, no key pressed, the general queue; the
carrier holds it `--hold` seconds, then hangs up (the seats are not registered: nobody answers).

Capacity mode (default): steps of concurrency (`--steps 100,200,300,400`), each step's calls offered
at `--rate` per second and held long enough that all of them are up together. Per step: calls
SIPp completed and failed, calls Asterisk hung up before the carrier did, the peak of concurrent
calls Asterisk reported, calls that missed the controller (`handled_by: fallback`: FastAGI not
reached in time — the dialplan still queued them), tickets missing or left incomplete, and the
average CPU of the controller, of Asterisk and of SIPp while all calls were up — which shows
which of them is the limit — and the controller's CPU per call: from the step's first INVITE until the
CDR replay has read its last call, less the controller's idle rate (sampled first, `--idle-s`), and where
it went (bench/procstat.py: user and kernel time, the event loop's thread and the others, how often the
loop thread woke and was preempted). Also per call: the AMI events the controller's account was sent (a second login with that account) and the AGI
commands Asterisk ran for the controller (the `sim` account's AGIExecStart, a class the controller's
account never reads): each AGI command is one round trip of the controller's.

Soak mode (`--soak`): `--rate` new calls per second for `--duration` seconds (each held `--hold`),
the controller's RSS sampled every `--sample` seconds; the same failure and ticket counts. `--heap N`: the
controller profiles its heap (hotline/heapwatch.py, tracemalloc) every N s; the growth by allocation site
and object type is printed at the end.

Run (as root; SIPp, Asterisk and ports of your own instance):
  HOTLINE_INSTANCE=bench HOTLINE_PORT_OFFSET=500 .venv/bin/python bench/sip_capacity.py [--steps 100,200,300,400]
  HOTLINE_INSTANCE=bench HOTLINE_PORT_OFFSET=500 .venv/bin/python bench/sip_capacity.py --soak --rate 20 --duration 600
  --quick: one step of 20 calls held 15 s; with --soak 5 calls/s for 20 s (CI-sized). Results are kept in bench/RESULTS.md.
Bounded: at most `--max-calls` calls per step (600) and `--max-duration` s of soak (1800), loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: `running`: use the instance's Asterisk as it runs (the test suite's, tests/e2e/test_bench_quick.py):
#: neither installed, started nor stopped here
REUSE = os.environ.get("HOTLINE_BENCH_ASTERISK", "") == "running"
if os.environ.get("HOTLINE_INSTANCE", "") in ("", "main") or (os.environ["HOTLINE_INSTANCE"] == "e2e" and not REUSE):
    sys.exit("set HOTLINE_INSTANCE (and HOTLINE_PORT_OFFSET) to an instance of your own: "
             "main is production's Asterisk, e2e the test suite's")

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bench.procstat import Usage, cpu_s, rss_mib  # noqa: E402
from hotline.install import install_everything  # noqa: E402
from hotline.sandbox import Sandbox  # noqa: E402
from hotline.sipcarrier import UacDialog, reply_ok, uac_scenario  # noqa: E402
from model.secrets import ami_secret  # noqa: E402
from wire.ami import AmiClient  # noqa: E402
from tests.e2e.conftest import INSTANCE, OFFSET, SIM_CARRIER_PORT, e2e_config  # noqa: E402
from tests.e2e.faults import ControllerProcess  # noqa: E402

#: seconds after the first calls' hold before the soak's RSS trend is measured (pools, caches and the
#: calls-up level fill first)
WARM_UP_S = 60.0
#: seconds the controller is left to finish starting before its idle CPU is sampled
IDLE_SETTLE_S = 5.0
#: what SIPp streams on every call: 1 s of a 440 Hz tone, A-law (payload 8), looped
TONE_S = 1.0


def scenario(hold_ms: int, prefix: str) -> str:
    """A carrier call streaming a tone, held `hold_ms` unless Asterisk hangs up first (logged `early_bye`)."""
    d = UacDialog(f"{prefix}[call_number]")
    return uac_scenario("carrier call held in the hotline", d.invite((8,)) + f"""\
  <nop><action><exec rtp_stream="tone.alaw,-1,8"/></action></nop>
  <recv request="BYE" timeout="{hold_ms}" ontimeout="ours"/>
  <nop><action><log message="early_bye [call_number]"/></action></nop>
""" + reply_ok(attrs=' next="done"') + """\
  <label id="ours"/>
  <nop><action><exec rtp_stream="pause"/></action></nop>
""" + d.bye() + """\
  <recv response="200" crlf="true"/>
  <label id="done"/>
""")


def write_tone(path: Path) -> None:
    """1 s of a 440 Hz tone as raw A-law (what rtp_stream sends with payload 8)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # deprecated in 3.11 (gone in 3.13), still here; a tone needs nothing more

    pcm = b"".join(int(8000 * math.sin(2 * math.pi * 440 * i / 8000)).to_bytes(2, "little", signed=True)
                   for i in range(int(8000 * TONE_S)))
    path.write_bytes(audioop.lin2alaw(pcm, 2))


def asterisk_pid(sb: Sandbox) -> int | None:
    """The Asterisk process itself (the sandbox's pid may be the chroot wrapper that exec'd it)."""
    return sb.pid()


@dataclass
class Sample:
    t: float
    ctl_cpu: float
    ast_cpu: float
    sipp_cpu: float
    ctl_rss: float
    channels: int = -1


@dataclass
class Step:
    label: str
    offered: int
    prefix: str
    started: float = 0.0
    ended: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    sipp_rc: int = -1
    ok: int = 0
    failed: int = 0
    early_bye: int = 0
    tickets: int = 0
    incomplete: int = 0
    fallback: int = 0
    peak_calls: int = 0
    errors: str = ""
    #: what the controller had used (CPU, its loop thread's CPU and wake-ups) and the monotonic clock at the
    #: step's first INVITE, and what it used from then until the CDR replay read its last call
    ctl_at_start: Usage = field(default_factory=Usage)
    at_start: float = 0.0
    ctl: Usage = field(default_factory=Usage)
    span_s: float = 0.0
    #: what the controller's AMI account was sent during the step, by event name; the AGI commands Asterisk
    #: ran, by command (`EXEC UserEvent`, `STREAM FILE`, …)
    ami_sent: Counter[str] = field(default_factory=Counter)
    agi_commands: Counter[str] = field(default_factory=Counter)


class Bench:
    def __init__(self, a: argparse.Namespace, work: Path) -> None:
        self.a = a
        self.work = work
        self.cfg = e2e_config()
        self.sb = Sandbox.discover(ami_host=self.cfg.asterisk.ami.host, ami_port=self.cfg.asterisk.ami.port,
                                   instance=INSTANCE)
        self.store_url = a.store or f"sqlite+aiosqlite:///{work}/tickets.db"
        # the CDR replay at production's pace (a replay every 10 s, 20 s after a call's last row), not the
        # tests' every second, where it races the live saves of calls that just ended
        self.ctl = ControllerProcess(self.store_url, work / "controller.log", extra=["--cdr-settle", str(a.cdr_settle)])
        self.run_id = uuid.uuid4().int % 90 + 10
        self.idle_rate = 0.0  # the controller's CPU seconds per second with no call (its timers, the CDR replay)
        self.watchers: list[AmiClient] = []
        self.sent: Counter[str] = Counter()
        self.agi: Counter[str] = Counter()

    async def watch_ami(self) -> None:
        """Two AMI logins beside the controller's: its own account (what it is sent) and `sim` (the AGI commands
        run, AGIExecStart)."""
        a = self.cfg.asterisk.ami
        for account, on_event in (("controller", self._on_sent), ("sim", self._on_sim)):
            c = AmiClient(a.host, a.port, a.account_username(account), ami_secret(self.cfg, account),
                          action_timeout=30)
            self.watchers.append(c)
            c.on_event("*", on_event)
            await c.start()
            await c.wait_connected(10)

    def _on_sent(self, e: dict[str, str]) -> None:
        self.sent[e.get("Event", "")] += 1

    def _on_sim(self, e: dict[str, str]) -> None:
        if e.get("Event") == "AGIExecStart":
            words = e.get("Command", "").split()
            self.agi[" ".join(words[:2])] += 1

    async def unwatch_ami(self) -> None:
        for c in self.watchers:
            await c.close()

    async def measure_idle(self, seconds: float) -> None:
        """The controller's CPU per second with no call, once its start-up work (the live rebuild, today's
        tickets, the first CDR replay) is over."""
        await asyncio.sleep(IDLE_SETTLE_S)
        c0, t0 = self.ctl_cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        self.idle_rate = (self.ctl_cpu() - c0) / (time.monotonic() - t0)
        print(f"controller idle: {self.idle_rate * 1000:.1f} ms of CPU per second ({seconds:.0f} s, no call)", flush=True)

    def ctl_cpu(self) -> float:
        """The controller's CPU seconds so far (0 before it started)."""
        return cpu_s(self.ctl.proc.pid if self.ctl.proc else None)

    def ctl_usage(self) -> Usage:
        """The controller's CPU, and its event loop's CPU and wake-ups, so far (zero before it started)."""
        return Usage.of(self.ctl.proc.pid if self.ctl.proc else None)

    # ------------------------------------------------------------------ the world
    def start_asterisk(self) -> None:
        if REUSE:
            if not self.sb.running():
                raise SystemExit(f"HOTLINE_BENCH_ASTERISK=running but instance {INSTANCE}'s Asterisk is not running")
            return
        if self.sb.running():
            self.sb.stop()
        if self.sb.cdr_csv.exists():
            self.sb.cdr_csv.unlink()  # earlier runs' calls would be replayed into this run's fresh store
        rtp = 10000 + OFFSET * 10
        install_everything(self.cfg, self.sb, with_sim=True, demo_secrets=True, rtp_range=(rtp, rtp + 999),
                           prompts_dir=Path(os.environ.get("HOTLINE_STATE", "/var/lib/hotline12345")) / "prompts")
        self.sb.start(sip_port=self.cfg.asterisk.sip_port)

    def calls_up(self) -> int:
        out = self.sb.cli("core show channels count", timeout=5)
        for line in out.splitlines():
            if "active call" in line:
                return int(line.split()[0])
        return -1

    # ------------------------------------------------------------------ one batch of calls
    async def run_calls(self, step: Step, *, calls: int, rate: float, hold_s: float, limit: int) -> None:
        xml = self.work / f"{step.prefix}.xml"
        xml.write_text(scenario(int(hold_s * 1000), step.prefix), encoding="ascii")
        msgs = self.work / f"{step.prefix}-messages.log"
        err = self.work / f"{step.prefix}-errors.log"
        stat = self.work / f"{step.prefix}-stat.csv"
        media = 20000 + OFFSET * 10  # SIPp's RTP port (SIPp 3.6.1 streams every call from it)
        cmd = ["sipp", f"127.0.0.1:{self.cfg.asterisk.sip.port}", "-sf", str(xml),
               "-i", "127.0.0.2", "-p", str(SIM_CARRIER_PORT), "-mi", "127.0.0.2",
               "-mp", str(media), "-cp", str(8888 + OFFSET),
               "-m", str(calls), "-l", str(limit), "-r", f"{rate:g}", "-rp", "1000",
               "-nostdin", "-timeout", f"{int(hold_s + calls / rate + 120)}s", "-timeout_error",
               "-trace_err", "-error_file", str(err), "-trace_logs", "-log_file", str(msgs),
               "-trace_stat", "-stf", str(stat), "-fd", "1", "-max_socket", "5000"]
        step.started = time.time()
        step.ctl_at_start, step.at_start = self.ctl_usage(), time.monotonic()
        self.sent.clear()
        self.agi.clear()
        proc = subprocess.Popen(cmd, cwd=self.work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ast = asterisk_pid(self.sb)
        last = time.monotonic()
        prev = (self.ctl_cpu(), cpu_s(ast), cpu_s(proc.pid))
        n = 0
        while proc.poll() is None:
            await asyncio.sleep(self.a.sample)
            now = time.monotonic()
            cur = (self.ctl_cpu(), cpu_s(ast), cpu_s(proc.pid))
            dt = now - last
            n += 1
            channels = await asyncio.to_thread(self.calls_up) if n % max(1, int(5 / self.a.sample)) == 0 else -1
            step.samples.append(Sample(time.time() - step.started, (cur[0] - prev[0]) / dt * 100,
                                       (cur[1] - prev[1]) / dt * 100, (cur[2] - prev[2]) / dt * 100,
                                       rss_mib(self.ctl.proc.pid if self.ctl.proc else None), channels))
            prev, last = cur, now
        step.ended = time.time()
        step.sipp_rc = proc.returncode
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        step.ok, step.failed = sipp_counts(stat)
        step.early_bye = msgs.read_text(errors="replace").count("early_bye") if msgs.exists() else 0
        step.peak_calls = max([s.channels for s in step.samples] or [-1])
        if step.failed or proc.returncode not in (0, 1):
            step.errors = (err.read_text(errors="replace")[-1500:] if err.exists() else "") + stderr[-500:]

    async def check_tickets(self, step: Step, expect: int, timeout: float = 90.0) -> None:
        """Every call of the step has one complete ticket (waits for the last saves)."""
        engine = create_async_engine(self.store_url)
        q = text("SELECT count(*), sum(CASE WHEN outcome = 'in_progress' THEN 1 ELSE 0 END), "
                 "sum(CASE WHEN handled_by = 'fallback' THEN 1 ELSE 0 END), "
                 "sum(CASE WHEN cdr_check = 'due' THEN 1 ELSE 0 END) FROM tickets WHERE caller LIKE :p")
        deadline = time.monotonic() + timeout
        try:
            while True:
                async with engine.connect() as c:
                    total, incomplete, fallback, due = (await c.execute(q, {"p": step.prefix + "%"})).one()
                step.tickets, step.incomplete, step.fallback = int(total or 0), int(incomplete or 0), int(fallback or 0)
                # done when every call has its ticket, complete and checked against its CDR row (the replay's
                # work is the controller's too: counted in the CPU per call)
                if (step.tickets >= expect and not step.incomplete and not due) or time.monotonic() > deadline:
                    # the CDR replay reads the step's last rows a settle time after they were written (it runs
                    # every half of it): its work for these calls is counted too
                    await asyncio.sleep(self.a.cdr_settle * 1.5 + 2)
                    step.ctl = self.ctl_usage() - step.ctl_at_start
                    step.span_s = time.monotonic() - step.at_start
                    step.ami_sent, step.agi_commands = Counter(self.sent), Counter(self.agi)
                    return
                await asyncio.sleep(1)
        finally:
            await engine.dispose()

    # ------------------------------------------------------------------ modes
    async def capacity(self) -> list[Step]:
        steps = []
        for i, n in enumerate(int(x) for x in self.a.steps.split(",")):
            n = min(n, self.a.max_calls)
            # held long enough that every call of the step is up together for a while
            hold = max(self.a.hold, n / self.a.rate + 20)
            step = Step(f"{n} concurrent", n, f"139{self.run_id}{i}")
            print(f"-- step {step.label}: {n} calls at {self.a.rate:g}/s, each held {hold:.0f} s", flush=True)
            await self.run_calls(step, calls=n, rate=self.a.rate, hold_s=hold, limit=n)
            await self.check_tickets(step, step.ok + step.failed)
            report_step(step, plateau=(n / self.a.rate + 3, hold - 3), idle_rate=self.idle_rate)
            steps.append(step)
            await asyncio.sleep(3)
        return steps

    async def soak(self) -> Step:
        duration = min(self.a.duration, self.a.max_duration)
        calls = int(self.a.rate * duration)
        limit = int(self.a.rate * self.a.hold * 1.5) + 10
        step = Step(f"soak {self.a.rate:g}/s × {duration:.0f} s", calls, f"138{self.run_id}9")
        print(f"-- soak: {self.a.rate:g} new calls/s for {duration:.0f} s ({calls} calls), each held "
              f"{self.a.hold:g} s (≈{self.a.rate * self.a.hold:.0f} up at once)", flush=True)
        await self.run_calls(step, calls=calls, rate=self.a.rate, hold_s=self.a.hold, limit=limit)
        await self.check_tickets(step, step.ok + step.failed)
        report_step(step, plateau=(self.a.hold + 5, duration - 5), idle_rate=self.idle_rate)
        rss = [s for s in step.samples if s.ctl_rss]
        if rss:
            print("controller RSS over time (MiB): " + ", ".join(
                f"{s.t:.0f}s={s.ctl_rss:.0f}" for s in rss[:: max(1, len(rss) // 20)]))
            third = max(1, len(rss) // 3)
            first, lastp = rss[:third], rss[-third:]
            print(f"controller RSS: first third avg {sum(s.ctl_rss for s in first) / len(first):.1f} MiB, "
                  f"last third avg {sum(s.ctl_rss for s in lastp) / len(lastp):.1f} MiB, "
                  f"max {max(s.ctl_rss for s in rss):.1f} MiB")
            warm = [s for s in rss if s.t >= self.a.hold + WARM_UP_S]
            if len(warm) >= 3:
                slope = rss_slope([(s.t, s.ctl_rss) for s in warm])
                print(f"controller RSS trend after warm-up ({warm[0].t:.0f} s on, least squares): "
                      f"{slope * 60:+.2f} MiB/min ({slope * 1024 / self.a.rate:+.2f} KiB per call)")
        return step


def rss_slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of (t s, RSS MiB): MiB per second."""
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mr = sum(r for _, r in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (r - mr) for t, r in points) / den if den else 0.0


def sipp_counts(stat: Path) -> tuple[int, int]:
    """Successful and failed calls (cumulative) from SIPp's last statistics line."""
    if not stat.exists():
        return 0, 0
    lines = [line for line in stat.read_text(errors="replace").splitlines() if line.strip()]
    if len(lines) < 2:
        return 0, 0
    head, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(head, last))
    return int(row.get("SuccessfulCall(C)", 0) or 0), int(row.get("FailedCall(C)", 0) or 0)


def report_step(step: Step, plateau: tuple[float, float], idle_rate: float) -> None:
    lo, hi = plateau
    during = [s for s in step.samples if lo <= s.t <= hi] or step.samples

    def avg(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    ctl, ast, sipp = (avg([getattr(s, k) for s in during]) for k in ("ctl_cpu", "ast_cpu", "sipp_cpu"))
    peak_ctl = max([s.ctl_cpu for s in step.samples] or [0])
    peak_ast = max([s.ast_cpu for s in step.samples] or [0])
    print(f"{step.label}: offered {step.offered}, completed {step.ok}, failed {step.failed}, "
          f"hung up early by Asterisk {step.early_bye}, peak calls up {step.peak_calls}; "
          f"tickets {step.tickets} (incomplete {step.incomplete}, missing {max(0, step.ok + step.failed - step.tickets)}, "
          f"FastAGI missed → fallback {step.fallback}); "
          f"CPU % of one core while all up: controller {ctl:.0f} (peak {peak_ctl:.0f}), "
          f"Asterisk {ast:.0f} (peak {peak_ast:.0f}), SIPp {sipp:.0f}; load {os.getloadavg()[0]:.1f}", flush=True)
    calls = step.ok + step.failed
    if calls and step.span_s > 0:
        busy = step.ctl.cpu - idle_rate * step.span_s
        print(f"  controller CPU per call: {busy / calls * 1000:.1f} ms with its idle rate removed "
              f"({step.ctl.cpu / calls * 1000:.1f} ms raw; {step.ctl.cpu:.2f} s over {step.span_s:.0f} s, "
              f"first INVITE to the CDR replay of the last call)", flush=True)
        print(f"  of it (raw, per call): {step.ctl.per_call(calls)}", flush=True)

        def per_call(counts: Counter[str]) -> str:
            return ", ".join(f"{k} {n / calls:.1f}" for k, n in counts.most_common(8))

        print(f"  AMI events to the controller's account: {sum(step.ami_sent.values()) / calls:.1f} per call "
              f"({per_call(step.ami_sent)}); AGI commands (round trips): "
              f"{sum(step.agi_commands.values()) / calls:.1f} per call ({per_call(step.agi_commands)})", flush=True)
    if step.errors:
        print("  SIPp errors (tail):\n  " + step.errors.strip().replace("\n", "\n  ")[-1200:])


def report_heap(path: Path) -> None:
    """The controller's heap reports (growth since its baseline, N s after start): RSS-independent figures
    of what its traced memory holds, and the last report's top allocation sites and object types."""
    import json

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    if not rows:
        print("heap: no report (run shorter than two --heap intervals?)")
        return
    print("heap over time (MiB; traced by tracemalloc / SQLite's own / malloc free but kept / RSS): " + ", ".join(
        f"{r['t_s']}s={r['traced_mib']}/{r.get('sqlite_mib')}/{r.get('malloc_free_mib')}/{r.get('rss_mib')}"
        for r in rows))
    last = rows[-1]
    print(f"heap growth since the baseline at {last['t_s']} s: {last['grown_kib']:.0f} KiB; top sites:")
    for site in last["sites"][:10]:
        print(f"  +{site['kib']:.0f} KiB in {site['blocks']} blocks: " + " <- ".join(reversed(site["where"][-6:])))
    print("  object types grown: " + ", ".join(f"{k} +{n}" for k, n in last["types"][:12]))


async def main_async(a: argparse.Namespace) -> int:
    if shutil.which("sipp") is None:
        print("sipp not found: install Debian's sip-tester", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("run as root (Asterisk runs in a chroot)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sip-capacity-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        write_tone(work / "tone.alaw")
        if a.heap:  # the controller's heap profiler (hotline/heapwatch.py): its reports into a file read below
            os.environ["HOTLINE_TRACEMALLOC"] = f"{a.heap:g}"
            os.environ["HOTLINE_TRACEMALLOC_OUT"] = str(work / "heap.jsonl")
        b = Bench(a, work)
        print(f"instance {INSTANCE} (offset {OFFSET}), store {b.store_url.split('://')[0]}, "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} cores", flush=True)
        b.start_asterisk()
        try:
            try:
                await b.ctl.start(timeout=120)
            except BaseException:
                if b.ctl.proc is not None:  # started but not ready in time: never leave it running
                    b.ctl.proc.kill()
                    b.ctl.proc.wait(10)
                raise
            try:
                await b.watch_ami()
                await b.measure_idle(a.idle_s)
                steps = [await b.soak()] if a.soak else await b.capacity()
            finally:
                await b.unwatch_ami()
                try:
                    await b.ctl.stop(timeout=60)
                except AssertionError as e:  # killed: say so, keep the figures
                    print(f"controller: {e}")
        finally:
            if not REUSE:
                b.sb.stop()
        if a.heap:
            report_heap(work / "heap.jsonl")
        bad = [s for s in steps if s.failed or s.early_bye or s.incomplete or s.tickets < s.ok + s.failed]
        if bad:  # what the controller said about it (its log goes with the temporary directory)
            worst = [r for r in b.ctl.logs() if r.get("level") in ("warning", "error", "critical")]
            print(f"controller warnings/errors: {len(worst)}; the last ones:")
            for r in worst[-15:]:
                print("  " + " ".join(f"{k}={str(v)[:160]}" for k, v in r.items() if k not in ("exception",)))
        print(f"result: {'every call completed and ticketed' if not bad else 'FAILURES in ' + ', '.join(s.label for s in bad)}")
        return 1 if bad and a.strict else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="100,200,300,400", help="concurrent calls per step")
    ap.add_argument("--rate", type=float, default=40.0, help="new calls per second")
    ap.add_argument("--hold", type=float, default=30.0, help="seconds the carrier holds each call (at least)")
    ap.add_argument("--soak", action="store_true", help="a steady --rate for --duration seconds")
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--sample", type=float, default=1.0, help="seconds between CPU/RSS samples")
    ap.add_argument("--store", default=None, help="ticket store URL (default: a fresh SQLite file)")
    ap.add_argument("--cdr-settle", type=float, default=20.0,
                    help="the controller's CDR replay settle time (default 20 s: production's; 0: every second)")
    ap.add_argument("--idle-s", type=float, default=10.0,
                    help="seconds the controller's idle CPU is sampled before the calls (removed from the per-call figure)")
    ap.add_argument("--max-calls", type=int, default=600)
    ap.add_argument("--max-duration", type=float, default=1800.0)
    ap.add_argument("--heap", type=float, default=0.0, metavar="N",
                    help="the controller's heap profiler: tracemalloc growth every N s (slows the controller)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a call failed or a ticket is missing")
    ap.add_argument("--quick", action="store_true", help="one step of 20 calls at 10/s held 15 s")
    a = ap.parse_args()
    if a.quick:  # CI-sized: capacity one step of 20 calls; soak 5 calls/s for 20 s
        a.steps, a.rate, a.hold = "20", 10.0, 15.0
        a.idle_s = min(a.idle_s, 3.0)
        if a.soak:
            a.rate, a.hold, a.duration, a.sample = 5.0, 10.0, min(a.duration, 20.0), 2.0
    sys.exit(asyncio.run(main_async(a)))


if __name__ == "__main__":
    main()
