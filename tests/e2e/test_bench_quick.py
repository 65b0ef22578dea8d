"""`bench/run --quick` in CI: every benchmark runs at small sizes and prints its figures.

Nothing about times is asserted (a shared or slow machine must not fail CI): a benchmark fails this
test only by crashing, or by printing none of the figures it exists for. The SIP benchmarks place
their calls into this session's Asterisk (HOTLINE_BENCH_ASTERISK=running: not restarted) with a
controller process of their own, so no other controller may run meanwhile (none does: fixtures are
per test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.conftest import INSTANCE, OFFSET

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_bench_run_quick_runs_every_benchmark_and_prints_figures(asterisk) -> None:  # noqa: ANN001
    require(shutil.which("sipp") is not None, "sipp (Debian package sip-tester) plays the carrier")
    env = {**os.environ, "HOTLINE_INSTANCE": INSTANCE, "HOTLINE_PORT_OFFSET": str(OFFSET),
           "HOTLINE_BENCH_ASTERISK": "running", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "bench/run", "--quick", "--skip", "ami_saturation,cluster_load"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    summary = out.rsplit("== summary", 1)[-1]
    assert proc.returncode == 0, f"bench/run --quick failed:\n{out[-6000:]}"
    for name in ("ticket_saves", "fastagi_burst", "agi_compare", "ami_compare", "speech_grammar", "sip_capacity",
                 "sip_soak"):
        assert f"\n{name} " in summary, f"{name} missing from the run:\n{summary}"
    assert "FAILED" not in summary and "NOT RUN" not in summary, summary
    assert "every call completed and ticketed" in out or "FAILURES in" in out  # the SIP figures were printed
    # and what a SIP call costs in round trips: AMI events to the controller, AGI commands Asterisk ran
    assert "AMI events to the controller's account:" in out and "AGI commands (round trips):" in out, out[-3000:]
    # where a call's CPU went: user / kernel, the loop thread and how often it woke (bench/procstat.py)
    assert "of it (raw, per call): user " in out and "times, preempted " in out, out[-3000:]
