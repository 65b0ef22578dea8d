"""Secrets, read in one place: each seat's SIP secret and the AMI secret.

Secrets never live in `config/hotline.yaml`: a seat names an environment variable
(`secret_env`) and/or a file (`secret_file`); the AMI secret comes from
`$HOTLINE_AMI_SECRET` (the variable `asterisk.ami.secret_env` names) or a secret
generated once per machine into a root-only file under the state directory.
Rendering, `check`, `apply`, the CLI and the controller all read them through here.
"""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Mapping
from pathlib import Path

from model.config import Config, Seat

#: where generated secrets and other machine state live (`$HOTLINE_STATE` overrides)
DEFAULT_STATE_DIR = "/var/lib/hotline12345"


class SecretMissing(Exception):
    """A seat has no secret: rendering would publish an endpoint anyone could register as."""


def state_dir() -> Path:
    return Path(os.environ.get("HOTLINE_STATE", DEFAULT_STATE_DIR))


def seat_secret(ext: str, seat: Seat, environ: Mapping[str, str] | None = None) -> str:
    """The seat's secret: its `secret_file` first, then its `secret_env`; SecretMissing says why not."""
    env = os.environ if environ is None else environ
    why = f"seats.{ext}: no secret (set ${seat.secret_env or '…'} or secret_file)"
    if seat.secret_file:
        try:
            value = Path(seat.secret_file).read_text().strip()
        except OSError as e:
            value, why = "", f"seats.{ext}: secret_file {seat.secret_file} cannot be read ({e.strerror or e})"
        else:
            if not value:
                why = f"seats.{ext}: secret_file {seat.secret_file} is empty"
        if value:
            return value
    if seat.secret_env:
        value = env.get(seat.secret_env, "")
        if value:
            return value
        if not seat.secret_file:
            why = f"seats.{ext}: environment variable ${seat.secret_env} is not set (the seat's SIP secret)"
    raise SecretMissing(why)


def seat_secrets(config: Config, environ: Mapping[str, str] | None = None, *,
                 fallback: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every seat's secret; a seat without one takes `fallback[ext]` (e.g. what Asterisk already has).

    Raises SecretMissing naming every seat that has neither.
    """
    out: dict[str, str] = {}
    missing: list[str] = []
    for ext, seat in config.seats.items():
        try:
            out[ext] = seat_secret(ext, seat, environ)
        except SecretMissing as e:
            if fallback and fallback.get(ext):
                out[ext] = fallback[ext]
            else:
                missing.append(str(e))
    if missing:
        raise SecretMissing("; ".join(missing))
    return out


def ami_secret(config: Config) -> str:
    """The AMI secret: from its environment variable, else one generated once for this machine.

    Never a well-known default: the AMI account can originate calls and sees callers'
    numbers. The generated secret lives in a root-only file that the controller, the
    CLI and the rendered manager.conf all read.
    """
    env = os.environ.get(config.asterisk.ami.secret_env)
    if env:
        return env
    path = state_dir() / "ami.secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = _random.token_hex(16)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret
