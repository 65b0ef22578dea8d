"""Pushing ticket changes to an outside system (the provincial 12345 platform): the outbox pusher.

Every ticket change already wrote an outbox row in the same transaction as the change
(ticketbridge.store), so nothing is missed and nothing rolled back is sent. This task
POSTs each row's JSON payload to `outbox.url` with the header `Idempotency-Key`:

* at-least-once: a row is marked delivered only after a 2xx answer; a pusher killed
  mid-POST leaves its claimed rows to fall due again when their lease runs out, so the
  receiver may see a key twice and must dedupe on it (changes of one ticket carry
  `version`: order by it, not by arrival);
* any other answer, a timeout or a refused connection is a failure: retried after
  `backoff_s` doubling per attempt (capped at `max_backoff_s`), a dead letter after
  `max_attempts` (`hotline tickets outbox --dead`; `--retry ID` gives it another round);
* never in a call's way: it runs as its own asyncio task, logs its errors and keeps going;
* https only (`allow_http` is for tests), always with the bearer token from `outbox.token_env`
  (`from_config` refuses to start without it), and at most `max_response_bytes` of an answer read.

The payload is minimal and documented (PUSHED_FIELDS): the ticket's number, version, state and
the call's facts the platform works with (with the agent's intake: 诉求内容, 承办单位, 当场解答/派单,
which a dispatched work order is made of); the caller's number masked (138******00); never the
linkedid, participants' channels, IVR path, transfers, recording name, transcript, self-query
attempts (the ticket numbers a caller tried) nor the query-password hash.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import structlog

from model.privacy import mask_number

log = structlog.get_logger("ticketbridge.outbox")

#: what the platform receives for a ticket change, besides `event` (what changed) and `caller` (masked)
PUSHED_FIELDS = ("ticket_no", "version", "state", "urgent", "deadline_at", "category", "dialed", "legacy_line",
                 "mode", "outcome", "handled_by", "queue", "queue_wait_s", "agent", "answered_at", "talk_s",
                 "survey_rating", "survey_scale", "callback_needed", "started_at", "ended_at", "created_at",
                 "updated_at", "recording_purged_at", "request_text", "department", "disposition")
#: how much of the platform's answer is read (its status is what counts; the rest is for the error note)
MAX_RESPONSE_BYTES = 4096


class OutboxRefused(ValueError):
    """The outbox settings would push personal data unsafely (plain http, no token): nothing is started."""


def push_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The minimal payload (PUSHED_FIELDS, `event`, the caller masked) of a ticket's full view; idempotent."""
    out = {k: payload[k] for k in ("event", *PUSHED_FIELDS) if k in payload}
    if "caller" in payload:
        out["caller"] = mask_number(payload["caller"])
    return out


def _check_url(url: str, allow_http: bool) -> None:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise OutboxRefused(f"outbox url {_redact(url)!r} is not https:// (allow_http is for tests only)")


class OutboxPusher:
    def __init__(self, store: Any, url: str, *, timeout_s: float = 10.0, max_attempts: int = 10,
                 backoff_s: float = 30.0, max_backoff_s: float = 3600.0, poll_s: float = 2.0,
                 batch: int = 50, lease_s: float | None = None, headers: dict[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, allow_http: bool = False,
                 max_response_bytes: int = MAX_RESPONSE_BYTES, endpoint: str = "platform",
                 render: Callable[[Any], Awaitable[dict[str, Any]]] | None = None, echo_body: bool = True) -> None:
        """`endpoint`: which outbox rows this pusher takes (`platform`, or `sms` for the SMS gateway);
        `render(row)`: the JSON to POST (default: the row's minimal payload; raising ticketbridge.sms.Unsendable
        makes the row a dead letter at once); `echo_body=False`: the receiver's answer is never kept in the
        row's error or the log (an SMS gateway may echo the message, and so the password)."""
        _check_url(url, allow_http)
        self.endpoint = endpoint
        self.render = render
        self.echo_body = echo_body
        self.store = store
        self.max_response_bytes = max_response_bytes
        self.url = url
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_s = poll_s
        self.batch = batch
        #: a claimed row falls due again after this long if its pusher vanished mid-POST
        self.lease_s = lease_s if lease_s is not None else max(30.0, 3 * timeout_s)
        self.headers = dict(headers or {})
        self._transport = transport
        self._wake = asyncio.Event()
        self.delivered = 0
        self.failed = 0
        self.dead = 0

    @classmethod
    def from_config(cls, store: Any, settings: Any, **kw: Any) -> "OutboxPusher | None":
        """From `config.outbox`; None when no URL is configured. OutboxRefused: plain http, no token."""
        if settings is None or not getattr(settings, "url", None):
            return None
        allow_http = bool(getattr(settings, "allow_http", False))
        _check_url(settings.url, allow_http)
        token = os.environ.get(settings.token_env or "", "").strip() if settings.token_env else ""
        if not token:
            raise OutboxRefused(f"outbox.url is set but the token variable {settings.token_env or '(outbox.token_env)'} "
                                "is not set or empty: the platform is never pushed to without authentication")
        return cls(store, settings.url, timeout_s=settings.timeout_s, max_attempts=settings.max_attempts,
                   backoff_s=settings.backoff_s, max_backoff_s=settings.max_backoff_s, poll_s=settings.poll_s,
                   headers={"Authorization": f"Bearer {token}"}, allow_http=allow_http, **kw)

    def notify(self) -> None:
        """Something new was saved: push now instead of at the next poll."""
        self._wake.set()

    def backoff(self, attempts_done: int) -> float:
        """Wait after the `attempts_done`-th failed attempt (1-based)."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempts_done - 1))

    async def run(self) -> None:
        """Push until cancelled; never raises (errors are logged and retried at the next poll)."""
        log.info("outbox_pusher_started", url=_redact(self.url))
        async with httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport) as client:
            while True:
                try:
                    sent = await self.push_once(client)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the database may be briefly away; try again
                    log.exception("outbox_push_failed")
                    sent = 0
                if sent >= self.batch:
                    continue  # more may be waiting
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except asyncio.TimeoutError:
                    pass

    async def push_once(self, client: httpx.AsyncClient) -> int:
        """Claim the due rows and POST each once; returns how many were claimed."""
        rows = await self.store.outbox_claim(self.batch, self.lease_s, endpoint=self.endpoint)
        for row in rows:
            await self._push(client, row)
        return len(rows)

    async def _push(self, client: httpx.AsyncClient, row: Any) -> None:
        headers = {**self.headers, "Idempotency-Key": row.idempotency_key}
        error: str | None = None
        try:
            body_json = await self.render(row) if self.render is not None else push_payload(row.payload)
        except ValueError as e:  # ticketbridge.sms.Unsendable: trying again cannot help
            await self.store.outbox_mark_dead(row.id, f"unsendable: {e}")
            self.dead += 1
            log.error("outbox_unsendable", ticket=row.ticket_no, key=row.idempotency_key, error=str(e))
            return
        try:
            async with client.stream("POST", self.url, json=body_json, headers=headers) as resp:
                body = b""
                async for chunk in resp.aiter_bytes():  # at most max_response_bytes are read, then closed
                    body += chunk[: self.max_response_bytes - len(body)]
                    if len(body) >= self.max_response_bytes:
                        break
                status = resp.status_code
            if 200 <= status < 300:
                await self.store.outbox_mark_delivered(row.id)
                self.delivered += 1
                log.info("outbox_delivered", ticket=row.ticket_no, key=row.idempotency_key,
                         attempt=row.attempts + 1)
                return
            error = f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}" if self.echo_body else f"HTTP {status}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:500] or type(e).__name__
        attempts = row.attempts + 1
        self.failed += 1
        if attempts >= self.max_attempts:
            await self.store.outbox_mark_failed(row.id, error, backoff_s=0)
            await self.store.outbox_mark_dead(row.id, f"gave up after {attempts} attempts: {error}")
            self.dead += 1
            log.error("outbox_dead_letter", ticket=row.ticket_no, key=row.idempotency_key, attempts=attempts,
                      error=error)
            return
        wait = self.backoff(attempts)
        await self.store.outbox_mark_failed(row.id, error, backoff_s=wait)
        log.warning("outbox_retry_later", ticket=row.ticket_no, key=row.idempotency_key, attempts=attempts,
                    retry_in_s=wait, error=error)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
