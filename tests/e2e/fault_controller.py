"""The real controller as its own OS process, for the fault-injection tests (tests/e2e/test_faults.py).

`python -m tests.e2e.fault_controller --store URL [--ami-port N] [--sim-callbacks]` runs what
`hotline run` runs (Controller + serve: SIGTERM stops it gracefully) on this test instance's
Asterisk (HOTLINE_INSTANCE / HOTLINE_PORT_OFFSET), JSON logs on stderr. The tests kill it with
SIGKILL — a real process death: sockets closed by the kernel, nothing flushed.
"""

from __future__ import annotations

import argparse
import asyncio

from hotline.cli_base import setup_logging
from hotline.controller import Controller, serve
from hotline.sandbox import Sandbox
from tests.e2e.conftest import INSTANCE, e2e_config


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--ami-port", type=int, default=None, help="AMI through this port (a proxy the test controls)")
    p.add_argument("--sim-callbacks", action="store_true", help="callbacks ring the sim's citizens' phones")
    p.add_argument("--profile", default=None, help="write a cProfile of the event loop's thread (CPU time) here")
    args = p.parse_args()
    setup_logging()
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
    run = lambda: asyncio.run(serve(Controller.for_sandbox(cfg, sb, store_url=args.store, cdr_settle_s=0)))  # noqa: E731
    if not args.profile:
        run()
        return
    import cProfile
    import time

    prof = cProfile.Profile(time.thread_time)  # CPU of this thread: the machine's load does not inflate it
    try:
        prof.runcall(run)
    finally:
        prof.dump_stats(args.profile)


if __name__ == "__main__":
    main()
