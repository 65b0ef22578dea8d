"""One controller of one node of tests/e2e/test_cluster.py's local cluster, as its own OS process (so a test can
kill -9 it): `python -m tests.e2e.cluster_controller --store URL --node a [--nth 1] [--control-path P]`.

The node's configuration is the test module's (same HOTLINE_INSTANCE / HOTLINE_PORT_OFFSET): `--nth k` is the
node's controller number k of asterisk.fastagi.controllers (hotline.cluster.nth_controller). What runs is what
`hotline run` runs (Controller + serve; SIGTERM stops it gracefully), JSON logs on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from hotline.cli_base import setup_logging
from hotline.cluster import LocalCluster, nth_controller
from hotline.controller import Controller, serve


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--nth", type=int, default=0, help="the node's controller number (0: the first tried)")
    p.add_argument("--control-path", default=None, help="the control socket here")
    args = p.parse_args()
    setup_logging(cache_loggers=True)  # as `hotline run`
    from tests.e2e.test_cluster import CONTROLLERS_PER_NODE, cluster_create

    lc: LocalCluster = cluster_create(Path(tempfile.gettempdir()) / "cluster-controller-unused",  # not made
                                      controllers_per_node=CONTROLLERS_PER_NODE)
    node = lc.nodes[args.node]
    cfg = nth_controller(node.cfg, args.nth)
    control = Path(args.control_path) if args.control_path else None
    asyncio.run(serve(Controller.for_sandbox(cfg, node.sandbox, store_url=args.store, control_path=control)))


if __name__ == "__main__":
    main()
