"""Salted password hashes (scrypt): the ticket query passwords in the store and the agents' hot-desk PINs.

One scheme for both: `scrypt$n$r$p$salt$hash` (hex). Hashing is CPU-heavy (tens of milliseconds): call
both functions through `asyncio.to_thread` from the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCRYPT = {"n": 2**14, "r": 8, "p": 1}
#: compared against when there is no stored hash, so a miss takes as long as a wrong password
DUMMY_HASH = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Salted scrypt: `scrypt$n$r$p$salt$hash` (hex)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    n, r, p = SCRYPT["n"], SCRYPT["r"], SCRYPT["p"]
    dk = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${dk.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Constant-time compare; a malformed stored hash is simply a mismatch."""
    try:
        scheme, n, r, p, salt, want = stored.split("$")
        if scheme != "scrypt":
            return False
        dk = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                            dklen=len(want) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk.hex(), want)
