"""The ticket notice as an SMS: sealing the query password in its outbox row, and the gateway's message.

The password exists in clear in exactly one message: the one POSTed to the SMS gateway. In the
outbox row it waits in `secret`, sealed with AES-GCM under a key that lives outside the database
(`sms.key_env`), bound to the row's idempotency key (a sealed value copied to another row does
not open), and the store erases it once the gateway took the message (`outbox_mark_delivered`).
The row's `payload` is only `{"event": "sms_notice", "ticket_no": …}`; the caller's number is
read from the ticket when the message is made, so the outbox holds no copy of it either.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from model.caller_loop import SmsSettings

#: the outbox event of an SMS row, and the endpoint its rows go to
SMS_EVENT = "sms_notice"
SMS_ENDPOINT = "sms"
_VERSION = "v1"


class SmsRefused(ValueError):
    """SMS is configured without a usable key or token: nothing is started."""


class Unsendable(ValueError):
    """This row's message cannot be made (its secret was erased, or the key changed): a dead letter."""


class Sealer:
    """AES-256-GCM with a random 96-bit nonce per value; `aad` binds a sealed value to its row."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SmsRefused(f"the SMS key must be 32 bytes (got {len(key)})")
        self._aead = AESGCM(key)

    @classmethod
    def from_env(cls, settings: SmsSettings, environ: Any = None) -> "Sealer":
        env = os.environ if environ is None else environ
        raw = str(env.get(settings.key_env, "")).strip()
        if not raw:
            raise SmsRefused(f"sms.url is set but ${settings.key_env} (sms.key_env) is not: the query password "
                             "would have no key to be sealed with in the outbox")
        try:
            key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            raise SmsRefused(f"${settings.key_env} is not urlsafe base64") from None
        return cls(key)

    def seal(self, value: str, aad: str) -> str:
        nonce = secrets.token_bytes(12)
        ct = self._aead.encrypt(nonce, value.encode(), aad.encode())
        return f"{_VERSION}:{base64.urlsafe_b64encode(nonce + ct).decode()}"

    def open(self, sealed: str | None, aad: str) -> str:
        if not sealed:
            raise Unsendable("the sealed password is gone (erased after sending)")
        version, _, body = sealed.partition(":")
        if version != _VERSION:
            raise Unsendable(f"unknown sealing {version!r}")
        try:
            raw = base64.urlsafe_b64decode(body)
            return self._aead.decrypt(raw[:12], raw[12:], aad.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise Unsendable("the sealed password does not open with this key (was sms.key_env changed?)") from None


def sms_payload(ticket_no: str) -> dict[str, Any]:
    """What the outbox row keeps: no number, no password."""
    return {"event": SMS_EVENT, "ticket_no": ticket_no}


def sms_renderer(settings: SmsSettings, sealer: Sealer,
                 caller_of: Callable[[str], Awaitable[str | None]]) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    """The pusher's `render` for SMS rows: {"to", "text", "ticket_no"}, the password opened only here."""

    async def render(row: Any) -> dict[str, Any]:
        to = await caller_of(row.ticket_no)
        if not to:
            raise Unsendable("the ticket has no caller number")
        password = sealer.open(row.secret, row.idempotency_key)
        return {"to": to, "ticket_no": row.ticket_no,
                "text": settings.template.format(ticket_no=row.ticket_no, password=password)}

    return render
