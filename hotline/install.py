"""Putting a configuration into an Asterisk: render the files, build the prompts, install both.

Used by `hotline asterisk start` and the demo (an already running Asterisk is changed
with `hotline apply` instead, which diffs, checks, reloads and can roll back).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ivr.prompts import RECORDINGS, build_prompts
from model.config import Config
from model.secrets import ami_secret, carrier_secrets, seat_secrets
from routing.dialplan import RenderInputs, custom_files, render


def demo_seat_secrets(cfg: Config) -> None:
    """Give every seat whose secret variable is unset a random one (demo and tests only), in os.environ."""
    for seat in cfg.seats.values():
        if seat.secret_env and not os.environ.get(seat.secret_env):
            os.environ[seat.secret_env] = "demo-" + secrets.token_urlsafe(12)


def install_everything(cfg: Config, sb: Any, *, with_sim: bool, demo_secrets: bool, prompts_dir: Path,
                       rtp_range: tuple[int, int] = (10000, 10999), node: str | None = None,
                       say: Callable[[str], None] = lambda line: None) -> None:
    """Render config, build prompts and put both where Asterisk reads them.

    Raises model.secrets.SecretMissing when a seat has no secret (never a made-up one
    outside the demo). `node`: which node of `cluster:` this Asterisk is (required with a cluster).
    """
    if demo_secrets:
        demo_seat_secrets(cfg)
    files = render(cfg, RenderInputs(ami_secret=ami_secret(cfg), seat_secrets=seat_secrets(cfg),
                                     with_sim=with_sim, layout=sb.layout, carrier_secrets=carrier_secrets(cfg),
                                     rtp_range=rtp_range, ami_apply_secret=ami_secret(cfg, "apply"),
                                     ami_sim_secret=ami_secret(cfg, "sim") if with_sim else "", node=node))
    files.update(custom_files())
    sb.remove_stale(set(files))
    sb.install_config(files)

    def progress(i: int, n: int, name: str, *_: Any) -> None:
        say(f"  prompts [{i}/{n}] {name}")

    report = build_prompts(cfg, RECORDINGS, prompts_dir, progress=progress)
    for k, why in report.failed.items():
        say(f"  prompt {k} failed: {why}")
    sb.install_sounds(prompts_dir)
