"""Salted password hashes (scrypt): the ticket query passwords in the store and the agents' hot-desk PINs.

One scheme for both: `scrypt$n$r$p$salt$hash` (hex); given a server `key` (the query passwords:
model.secrets.query_key), scrypt of HMAC-SHA256(key, password), written `hscrypt$…`: useless to whoever
copied only the database (6 digits are a million guesses). Unkeyed hashes still check, keyed or not.
Hashing is CPU-heavy (tens of milliseconds): call both functions through `asyncio.to_thread` from the
event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCRYPT = {"n": 2**14, "r": 8, "p": 1}
#: compared against when there is no stored hash, so a miss takes as long as a wrong password
DUMMY_HASH = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32


def hash_password(password: str, salt: bytes | None = None, key: bytes | None = None) -> str:
    """Salted scrypt: `scrypt$n$r$p$salt$hash` (hex), or `hscrypt$…` keyed with `key`."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    n, r, p = SCRYPT["n"], SCRYPT["r"], SCRYPT["p"]
    dk = hashlib.scrypt(_keyed(password, key), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"{'hscrypt' if key else 'scrypt'}${n}${r}${p}${salt.hex()}${dk.hex()}"


def _keyed(password: str, key: bytes | None) -> bytes:
    return hmac.new(key, password.encode(), "sha256").digest() if key else password.encode()


def check_password(password: str, stored: str, key: bytes | None = None) -> bool:
    """Constant-time compare; a malformed stored hash (or a keyed one without the key) is a mismatch."""
    try:
        scheme, n, r, p, salt, want = stored.split("$")
        if scheme not in ("scrypt", "hscrypt") or (scheme == "hscrypt" and not key):
            return False
        dk = hashlib.scrypt(_keyed(password, key if scheme == "hscrypt" else None), salt=bytes.fromhex(salt),
                            n=int(n), r=int(r), p=int(p), dklen=len(want) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk.hex(), want)
