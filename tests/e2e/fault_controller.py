"""The real controller as its own OS process, for the fault-injection tests (tests/e2e/test_faults.py).

`python -m tests.e2e.fault_controller --store URL [--ami-port N] [--sim-callbacks] [--fastagi-port N --api-port N
--control-path P --controllers H:P,H:P] [--auto-callbacks PATTERN]` runs what
`hotline run` runs (Controller + serve: SIGTERM stops it gracefully) on this test instance's
Asterisk (HOTLINE_INSTANCE / HOTLINE_PORT_OFFSET), JSON logs on stderr. The tests kill it with
SIGKILL — a real process death: sockets closed by the kernel, nothing flushed.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from hotline.cli_base import event_loop_factory, setup_logging
from hotline.controller import Controller, serve
from hotline.sandbox import Sandbox
from model.config import Hours
from tests.e2e.conftest import INSTANCE, e2e_config


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--ami-port", type=int, default=None, help="AMI through this port (a proxy the test controls)")
    p.add_argument("--sim-callbacks", action="store_true", help="callbacks ring the sim's citizens' phones")
    # a second controller beside the first on this Asterisk (tests/e2e/test_controller_failover.py)
    p.add_argument("--fastagi-port", type=int, default=None, help="listen for FastAGI here")
    p.add_argument("--api-port", type=int, default=None, help="the live API here")
    p.add_argument("--control-path", default=None, help="the control socket here")
    p.add_argument("--controllers", default=None, help="asterisk.fastagi.controllers, comma-separated host:port")
    p.add_argument("--auto-callbacks", default=None, metavar="PATTERN",
                   help="the scheduler calls missed callers back by itself (seconds, any hour), only numbers "
                        "matching this outbound pattern (other tests' missed calls are given up)")
    p.add_argument("--profile", default=None, help="write a cProfile of the event loop's thread (CPU time) here")
    p.add_argument("--profile-on-signal", action="store_true",
                   help="with --profile: profile only between SIGUSR1 and SIGUSR2")
    p.add_argument("--cdr-settle", type=float, default=0.0,
                   help="the CDR replay's settle time (s; replays every half of it, at least every second); "
                        "0, the tests' default, replays every second")
    args = p.parse_args()
    setup_logging(cache_loggers=True)  # as `hotline run`
    cfg = e2e_config()
    sb = Sandbox.discover(ami_host=cfg.asterisk.ami.host, ami_port=cfg.asterisk.ami.port, instance=INSTANCE,
                          build=False)
    if args.ami_port:
        cfg.asterisk.ami.port = args.ami_port
    if args.sim_callbacks:  # as tests/e2e/test_tickets.py's callbacks_to_sim
        cfg.callbacks.dial = "Local/{number}@caller-answer"
        cfg.callbacks.ring_s = 4
        cfg.callbacks.queue = "general"
        cfg.outbound.allow = [*cfg.outbound.allow, "_000X."]
    if args.fastagi_port:
        cfg.asterisk.fastagi.port = args.fastagi_port
    if args.api_port:
        cfg.api.port = args.api_port
    if args.controllers:
        cfg.asterisk.fastagi.controllers = args.controllers.split(",")
    if args.auto_callbacks:
        always = "fault_controller_always"
        cfg.hours[always] = Hours(weekly={d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
        cb = cfg.callbacks
        cb.dial, cb.ring_s, cb.queue, cb.connect = "Local/{number}@caller-answer", 4, "general", "queue"
        cb.auto = cb.auto.model_copy(update=dict(enabled=True, delay_min=0, within_min=5, max_attempts=2,
                                                 spacing_min=0.1, hours=always, poll_s=0.5, max_concurrent=4))
        cfg.outbound.allow = [args.auto_callbacks]
    control = Path(args.control_path) if args.control_path else None

    def run() -> None:  # as `hotline run`: $HOTLINE_EVENT_LOOP picks asyncio's loop or uvloop
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(Controller.for_sandbox(cfg, sb, store_url=args.store, cdr_settle_s=args.cdr_settle,
                                                    control_path=control)))

    if not args.profile:
        run()
        return
    import cProfile
    import signal
    import time

    prof = cProfile.Profile(time.thread_time)  # CPU of this thread: the machine's load does not inflate it
    # SIGUSR1 starts the profile, SIGUSR2 stops it (bench/ami_saturation.py: the calls only, not start-up);
    # without either signal it covers the whole run
    signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
    signal.signal(signal.SIGUSR2, lambda *_: prof.disable())
    try:
        if args.profile_on_signal:
            run()
        else:
            prof.runcall(run)
    finally:
        prof.disable()
        prof.dump_stats(args.profile)


if __name__ == "__main__":
    main()
