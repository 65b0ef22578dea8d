"""Password hashes: the ticket query passwords in the store and the agents' hot-desk PINs.

Query passwords (6 digits, one per ticket, made on the save path of every answered call) are
`hmac$salt$mac` (hex): HMAC-SHA256 under the server's query key (model.secrets.query_key, kept
outside the database) of a random 16-byte salt and the password. A microsecond, so nothing slow
sits on the ticket save path. What protects a 6-digit password is the key, not the cost of the
hash: a million candidates fall to any slow hash too (scrypt at 41 ms is 11 core-hours, not a
barrier), whereas whoever copied the tickets table without the key cannot test one guess
offline. Guessing through the IVR, the one place that holds the key, is limited across calls
(model.config.SelfQuery). The salt keeps two tickets with the same password from sharing a hash.

Hot-desk PINs (and query passwords hashed before the HMAC scheme, which still check) are salted
scrypt: `scrypt$n$r$p$salt$hash`, or `hscrypt$…` = scrypt of HMAC-SHA256(key, password). Scrypt
is CPU-heavy (tens of milliseconds): call it through `asyncio.to_thread` from the event loop
(`is_slow` tells which stored hashes need that).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCRYPT = {"n": 2**14, "r": 8, "p": 1}
#: compared against when there is no stored hash, so a miss takes as long as a wrong password
DUMMY_HASH = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32
#: the same for query passwords (keyed HMAC)
DUMMY_QUERY_HASH = "hmac$" + "00" * 16 + "$" + "00" * 32
QUERY_SCHEME = "hmac"


def hash_password(password: str, salt: bytes | None = None, key: bytes | None = None) -> str:
    """Salted scrypt: `scrypt$n$r$p$salt$hash` (hex), or `hscrypt$…` keyed with `key` (hot-desk PINs)."""
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


def hash_query_password(password: str, key: bytes, salt: bytes | None = None) -> str:
    """A ticket's query password as `hmac$salt$mac`: HMAC-SHA256(key, salt + password). No key, no hash."""
    if not key:
        raise ValueError("a query password hash needs the server's query key (model.secrets.query_key)")
    salt = salt if salt is not None else secrets.token_bytes(16)
    return f"{QUERY_SCHEME}${salt.hex()}${_mac(key, salt, password)}"


def _mac(key: bytes, salt: bytes, password: str) -> str:
    return hmac.new(key, salt + password.encode(), "sha256").hexdigest()


def hash_salt(stored: str) -> str:
    """The salt (hex) of a stored hash of any scheme ("" when malformed): names an SMS outbox row."""
    parts = stored.split("$")
    return parts[1] if parts[0] == QUERY_SCHEME and len(parts) == 3 else (parts[4] if len(parts) == 6 else "")


def is_slow(stored: str) -> bool:
    """True for the scrypt schemes (tens of ms: check them off the event loop)."""
    return stored.startswith(("scrypt$", "hscrypt$"))


def check_query_password(password: str, stored: str, key: bytes | None) -> bool:
    """A query password against its stored hash of any scheme: `hmac$` (keyed HMAC), or the older
    `hscrypt$`/`scrypt$` (slow: see `is_slow`). Constant-time; malformed or keyless is a mismatch."""
    if not stored.startswith(QUERY_SCHEME + "$"):
        return check_password(password, stored, key)
    try:
        _, salt, want = stored.split("$")
        if not key:
            return False
        got = _mac(key, bytes.fromhex(salt), password)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)
