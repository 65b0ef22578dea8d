"""Who may do what on the live API (pure): bearer tokens, their hashes, and the three roles.

A token is `hl_` + 43 URL-safe characters (256 random bits); the store keeps only its SHA-256 (a
salted slow hash is for passwords people choose; a random 256-bit secret cannot be guessed from its
digest), so a stolen database grants nothing. It is shown once, at `hotline tokens create`.

Roles:

| role | reads | acts |
|---|---|---|
| `agent` (bound to a seat) | the center's and queues' figures; its own agent and the calls on its own seat | its own state; one-key transfer of its own call |
| `supervisor` | everything live | every agent's state, callbacks, transfers, listen/whisper/barge/force release |
| `admin` | as supervisor | as supervisor |

Full caller numbers: masked by default; `?numbers=full` shows them to a supervisor/admin (any call) or
an agent (its own calls), and only once that read is written to the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

ROLES = ("agent", "supervisor", "admin")
TOKEN_PREFIX = "hl_"
SUPERVISING = frozenset({"supervisor", "admin"})


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class TokenError(ValueError):
    """A token cannot be made as asked (unknown role, an agent token without its seat, …)."""


def check_new(role: str, name: str, seat: str | None, seats: set[str]) -> None:
    """What `hotline tokens create` refuses, with the reason."""
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not name.strip() or len(name) > 64 or any(ord(c) < 32 for c in name):
        raise TokenError("name: 1-64 printable characters (who holds the token: 张班长, seat 1001 …)")
    if role == "agent" and not seat:
        raise TokenError("an agent token is bound to a seat: give --seat")
    if seat is not None and seat not in seats:
        raise TokenError(f"--seat {seat!r} is not a configured seat ({', '.join(sorted(seats)) or 'none'})")


@dataclass(frozen=True)
class Principal:
    """The holder of a valid token, as the API sees it."""

    token_id: int
    name: str
    role: str
    seat: str | None = None

    @property
    def supervising(self) -> bool:
        return self.role in SUPERVISING

    @property
    def who(self) -> str:
        """As written to the audit log and agents' state history (`api:<name>`)."""
        return f"api:{self.name}"[:64]

    def may_see_agent(self, agent: str) -> bool:
        return self.supervising or agent == self.seat

    def may_act_for(self, agent: str) -> bool:
        return self.supervising or agent == self.seat

    def may_see_call(self, call: dict[str, Any]) -> bool:
        return self.supervising or (self.seat is not None and (call.get("agent") == self.seat
                                                               or self.seat in call.get("ringing", ())))
