"""Secrets, read in one place: each seat's SIP secret, the AMI accounts' secrets, the self-query key.

Secrets never live in `config/hotline.yaml`: a seat names an environment variable
(`secret_env`) and/or a file (`secret_file`); each AMI account's secret comes from
`$HOTLINE_AMI_SECRET` (the variable `asterisk.ami.secret_env` names; `…_APPLY`, `…_SIM`
for the other accounts) or a secret generated once per machine into a root-only file
under the state directory.
Rendering, `check`, `apply`, the CLI and the controller all read them through here.
"""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Mapping
from pathlib import Path

from model.config import AMI_ACCOUNTS, Carrier, Config, Seat

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


#: shorter than this, or digits only, a SIP secret falls to a scan of the LAN in minutes
MIN_SECRET_LEN = 12


def weak_secret(value: str) -> str | None:
    """Why a SIP secret is too weak to publish an endpoint with, or None."""
    if len(value) < MIN_SECRET_LEN:
        return f"the secret is too short ({len(value)} characters; at least {MIN_SECRET_LEN})"
    if value.isdigit():
        return "the secret is digits only (guessable); mix letters and digits"
    if len(set(value)) < 4:
        return "the secret repeats too few characters (guessable)"
    return None


def carrier_secret(name: str, carrier: Carrier, environ: Mapping[str, str] | None = None) -> str:
    """A registering carrier's password: its `secret_file`, then its `secret_env`; SecretMissing says why not."""
    env = os.environ if environ is None else environ
    if carrier.secret_file:
        try:
            value = Path(carrier.secret_file).read_text().strip()
        except OSError as e:
            raise SecretMissing(f"carriers.{name}: secret_file {carrier.secret_file} cannot be read "
                                f"({e.strerror or e})") from None
        if value:
            return value
    if carrier.secret_env and env.get(carrier.secret_env):
        return env[carrier.secret_env]
    raise SecretMissing(f"carriers.{name}: no secret (set ${carrier.secret_env or '…'} or secret_file)")


def carrier_secrets(config: Config, environ: Mapping[str, str] | None = None, *,
                    placeholder: str | None = None) -> dict[str, str]:
    """Secrets of the carriers that register; a missing one raises SecretMissing unless `placeholder` is given."""
    out: dict[str, str] = {}
    for name, c in config.carriers.items():
        if c.auth != "register":
            continue
        try:
            out[name] = carrier_secret(name, c, environ)
        except SecretMissing:
            if placeholder is None:
                raise
            out[name] = placeholder
    return out


def seat_secrets(config: Config, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every seat's secret; SecretMissing names every seat that has none.

    (`hotline apply` also accepts the secret the running Asterisk already has: admin/apply.py.)
    """
    out: dict[str, str] = {}
    missing: list[str] = []
    for ext, seat in config.seats.items():
        try:
            out[ext] = seat_secret(ext, seat, environ)
        except SecretMissing as e:
            missing.append(str(e))
    if missing:
        raise SecretMissing("; ".join(missing))
    return out


def ami_secret(config: Config, account: str = "controller") -> str:
    """An AMI account's secret: from its environment variable, else one generated once for this machine.

    Never a well-known default. One secret per account (model.config.AMI_ACCOUNTS), each in its
    own root-only file (`ami.secret` for the controller, `ami-apply.secret`, `ami-sim.secret`):
    the controller's can originate calls and sees callers' numbers, apply's can reload modules,
    the test world's keys DTMF into calls. Supervisors hold none of them (a callback is asked of
    the running controller). The rendered manager.conf reads them all through here.
    """
    if account not in AMI_ACCOUNTS:
        raise ValueError(f"unknown AMI account {account!r} (one of {', '.join(AMI_ACCOUNTS)})")
    env = os.environ.get(config.asterisk.ami.account_secret_env(account))
    if env:
        return env
    return _generated(state_dir() / ("ami.secret" if account == "controller" else f"ami-{account}.secret"))


def _generated(path: Path) -> str:
    """The secret in root-only `path`, generated (32 hex digits) the first time it is asked for."""
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


#: the variable holding the self-query key (else a generated root-only `query.key` in the state directory)
QUERY_KEY_ENV = "HOTLINE_QUERY_KEY"


def query_key(environ: Mapping[str, str] | None = None) -> bytes:
    """The server key of the self-query password hashes (HMAC before scrypt): kept outside the
    database, so a copy of the tickets table alone cannot be brute-forced (6 digits are only a
    million guesses). Every controller and supervisor command sharing one store must have the same:
    set $HOTLINE_QUERY_KEY on each, or copy `query.key`. Also keys the callers' hashes in the
    self-query guess log."""
    env = (environ if environ is not None else os.environ).get(QUERY_KEY_ENV, "")
    if env:
        return env.encode()
    return _generated(state_dir() / "query.key").encode()


def ami_secrets(config: Config, *, with_sim: bool) -> dict[str, str]:
    """The secrets of the accounts a rendered manager.conf holds: controller and apply, plus sim with --sim."""
    return {acc: ami_secret(config, acc) for acc in AMI_ACCOUNTS if with_sim or acc != "sim"}
