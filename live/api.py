"""The live API in the controller process (aiohttp): snapshot, Server-Sent Events, actions; bearer tokens with roles.

Thin: what is live comes from live/service.py, who may do what from live/tokens.py, and every action
goes to the controller's own paths (`LiveActions`: AgentService through the controller's agent
command, the callback dialer of `hotline tickets callback`, routing/transfer_service.py) or to the
intervention port (live/intervention.py). The routes and shapes are described in live/openapi.py,
served at `/api/v1/openapi.json`.

Audit (the store's audit_log, as `--show-numbers` writes it): every action by a supervisor or admin
(and an agent's own) is written *before* it is carried out — no audit row, no action (503) — and
every read that shows full caller numbers is written before the numbers leave (a stream that cannot
write it sends that change masked).

Why aiohttp (README "Libraries"): it serves inside the controller's own asyncio loop as one more task
(AppRunner/TCPSite: no second server process, no signal handlers of its own), SSE is a plain
StreamResponse, and the OpenAPI description is a hand-written dict (live/openapi.py) rather than a
framework's inference.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from aiohttp import web

from live.intervention import MODES, REASON_STATUS, RELEASE, Intervention
from live.openapi import openapi
from live.service import LiveService, Viewer
from live.tokens import Principal, token_hash
from routing.supervise_service import NO_UID

log = structlog.get_logger("hotline.api")

PREFIX = "/api/v1"
#: the cookie a browser page may carry the token in (EventSource cannot set an Authorization header)
KEEPALIVE_S = 15.0
MAX_BODY = 16 * 1024
PRINCIPAL = web.RequestKey("principal", Principal)


class LiveActions(Protocol):
    """What the controller does for the API (hotline/controller.py implements it)."""

    async def agent_change(self, agent: str, action: str, reason: str, why: str, actor: str) -> dict[str, Any]: ...

    async def call_back(self, ticket: str, actor: str) -> dict[str, Any]: ...

    async def transfer(self, agent_channel: str, target: str, linkedid: str, actor: str) -> dict[str, Any]: ...


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, ensure_ascii=False, default=str),
                        content_type="application/json", charset="utf-8")


def error(status: int, code: str, message: str, **headers: str) -> web.HTTPException:
    """An HTTP error whose body is `{"error": {"code", "message"}}` (raise it)."""
    body = json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False)
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound,
           409: web.HTTPConflict, 413: web.HTTPRequestEntityTooLarge, 415: web.HTTPUnsupportedMediaType, 501: web.HTTPNotImplemented,
           503: web.HTTPServiceUnavailable}[status]
    if status == 413:
        return cls(max_size=MAX_BODY, actual_size=MAX_BODY + 1, text=body, content_type="application/json",
                   headers=headers)
    return cls(text=body, content_type="application/json", headers=headers)


class LiveApi:
    def __init__(self, live: LiveService, store: Any, actions: LiveActions, *,
                 intervention: Intervention | None = None,
                 audit_uid: int | None = None) -> None:
        self.live, self.store, self.actions = live, store, actions
        self.intervention = intervention
        #: the audit log's uid for a token's rows: no OS user is behind a token (its name is the `user`)
        self.audit_uid = NO_UID if audit_uid is None else audit_uid
        self.app = web.Application(middlewares=[self._errors, self._auth], client_max_size=MAX_BODY)
        r = self.app.router
        r.add_get(f"{PREFIX}/openapi.json", self.get_openapi)
        r.add_get(f"{PREFIX}/whoami", self.get_whoami)
        r.add_get(f"{PREFIX}/live", self.get_live)
        r.add_get(f"{PREFIX}/live/stream", self.get_stream)
        r.add_get(f"{PREFIX}/calls/{{linkedid}}", self.get_call)
        r.add_get(f"{PREFIX}/agents/{{agent}}", self.get_agent)
        r.add_post(f"{PREFIX}/agents/{{agent}}/state", self.post_agent_state)
        r.add_post(f"{PREFIX}/callbacks", self.post_callback)
        r.add_post(f"{PREFIX}/calls/{{linkedid}}/transfer", self.post_transfer)
        r.add_post(f"{PREFIX}/calls/{{linkedid}}/intervene", self.post_intervene)
        r.add_post(f"{PREFIX}/calls/{{linkedid}}/release", self.post_release)
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ serving
    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()
        log.info("live_api_listening", bind=f"{host}:{port}")
        if not _loopback(host):
            log.warning("live_api_plain_http", bind=host,
                        hint="tokens cross the network in clear: put a TLS proxy in front or bind 127.0.0.1")

    @property
    def port(self) -> int | None:
        if self._runner is None:
            return None
        for site in self._runner.sites:
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                return int(server.sockets[0].getsockname()[1])
        return None

    async def stop(self) -> None:
        for t in list(self._streams):
            t.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ middlewares
    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.content_type != "application/json" and e.status >= 400:
                raise error(e.status if e.status in (400, 401, 403, 404, 409, 413, 501, 503) else 400,
                            e.reason.lower().replace(" ", "_"), e.reason) from None
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:  # noqa: BLE001 - a bug answers 500 with a plain body, the controller goes on
            log.exception("live_api_failed", path=request.path)
            return _json({"error": {"code": "internal", "message": "internal error (logged)"}}, 500)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if request.path == f"{PREFIX}/openapi.json" or not request.path.startswith(f"{PREFIX}/"):
            return await handler(request)  # the description, and the pages (live/pages.py: they hold no data)
        token = ""
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise error(401, "unauthorized", "Authorization must be 'Bearer <token>'",
                            **{"WWW-Authenticate": 'Bearer realm="hotline"'})
        # the header only: a token in a URL ends up in proxy logs and browser history, and a cookie would let
        # other sites' forms act with it (the pages send the header from fetch, the stream too)
        token = token.strip()
        if not token:
            raise error(401, "unauthorized", "a token is required: Authorization: Bearer <token> "
                        "(hotline tokens create)", **{"WWW-Authenticate": 'Bearer realm="hotline"'})
        row = await self.store.token_by_hash(token_hash(token))
        if row is None:
            raise error(401, "unauthorized", "unknown or revoked token",
                        **{"WWW-Authenticate": 'Bearer realm="hotline", error="invalid_token"'})
        request[PRINCIPAL] = Principal(row.id, row.name, row.role, row.seat)
        return await handler(request)

    # ------------------------------------------------------------------ helpers
    async def _audit(self, who: Principal, action: str, asked: dict[str, Any], rows: int) -> None:
        """Written before the action or the numbers; failing → 503, nothing done or shown."""
        try:
            await self.store.audit(action, {"token": who.name, "role": who.role, **asked}, rows,
                                   uid=self.audit_uid, user=who.who)
        except Exception as e:  # noqa: BLE001
            log.error("live_api_audit_failed", action=action, error=type(e).__name__)
            raise error(503, "audit_unavailable", "the audit log cannot be written: nothing done, nothing shown") from e

    @staticmethod
    def _full(request: web.Request) -> bool:
        v = request.query.get("numbers", "masked")
        if v not in ("masked", "full"):
            raise error(400, "bad_request", "numbers must be 'masked' or 'full'")
        return v == "full"

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        if request.content_type != "application/json":  # no cross-site form post gets this far
            raise error(415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise error(400, "bad_request", "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise error(400, "bad_request", "the body must be a JSON object")
        return body

    @staticmethod
    def _text(body: dict[str, Any], key: str, *, required: bool = False, limit: int = 200) -> str:
        v = body.get(key, "")
        if v is None:
            v = ""
        if not isinstance(v, str):
            raise error(400, "bad_request", f"{key}: a string is expected")
        if required and not v.strip():
            raise error(400, "bad_request", f"{key} is required")
        if len(v) > limit or any(ord(c) < 32 for c in v):
            raise error(400, "bad_request", f"{key}: at most {limit} printable characters")
        return v.strip()

    def _supervisor(self, who: Principal) -> None:
        if not who.supervising:
            raise error(403, "forbidden", f"role {who.role} may not do this (supervisor or admin)")

    def _call(self, who: Principal, linkedid: str) -> dict[str, Any]:
        call = self.live.call(linkedid)
        if call is None or not who.may_see_call(call):
            raise error(404, "not_found", f"no live call {linkedid!r}" +
                        ("" if who.supervising else " on your seat"))
        return call

    # ------------------------------------------------------------------ reads
    async def get_openapi(self, request: web.Request) -> web.Response:
        return _json(openapi())

    async def get_whoami(self, request: web.Request) -> web.Response:
        who = request[PRINCIPAL]
        return _json({"name": who.name, "role": who.role, "seat": who.seat})

    async def get_live(self, request: web.Request) -> web.Response:
        who, full = request[PRINCIPAL], self._full(request)
        viewer = Viewer(who, full_numbers=full)
        snap, shown = self.live.snapshot(viewer)
        if shown:
            await self._audit(who, "api live snapshot numbers", {"calls": shown}, len(shown))
        return _json(snap)

    async def get_call(self, request: web.Request) -> web.Response:
        who, full = request[PRINCIPAL], self._full(request)
        call = self._call(who, request.match_info["linkedid"])
        send, view = Viewer(who, full_numbers=full).call(call, call["linkedid"])
        if full and view and view.get("caller"):
            await self._audit(who, "api call numbers", {"calls": [call["linkedid"]]}, 1)
        return _json(view)

    async def get_agent(self, request: web.Request) -> web.Response:
        who, agent = request[PRINCIPAL], request.match_info["agent"]
        if agent not in self.live.agents.agents:
            raise error(404, "not_found", f"no agent {agent!r}")
        if not who.may_see_agent(agent):
            raise error(403, "forbidden", f"an agent token of seat {who.seat} may not read agent {agent}")
        view = self.live.agent_view(agent, self.live.model.agent_calls())
        call = self.live.agent_call(agent)
        if call is not None:
            call = {**call, "caller": Viewer(who).call(call, call["linkedid"])[1]["caller"]}  # masked
        return _json({**view, "current_call": call})

    async def _still_valid(self, request: web.Request) -> bool:
        """Is the stream's token still there (not revoked since the stream began)?"""
        header = request.headers.get("Authorization", "")
        token = header.partition(" ")[2].strip()
        return bool(token) and await self.store.token_by_hash(token_hash(token), touch=False) is not None

    async def get_stream(self, request: web.Request) -> web.StreamResponse:
        """SSE: `snapshot` first, then `change` events (id = seq) within a second of each event."""
        who, full = request[PRINCIPAL], self._full(request)
        viewer = Viewer(who, full_numbers=full)
        q = self.live.subscribe()
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            snap, shown = self.live.snapshot(viewer)
            if shown:
                await self._audit(who, "api live stream numbers", {"calls": shown}, len(shown))
                viewer.audited.update(shown)
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            await resp.prepare(request)
            await resp.write(_sse("snapshot", snap, snap["seq"]))
            while True:
                try:
                    delta = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except (asyncio.TimeoutError, TimeoutError):
                    if not await self._still_valid(request):
                        break  # revoked meanwhile: the stream ends (the browser reconnects and gets 401)
                    await resp.write(b": keepalive\n\n")
                    continue
                if delta is None:
                    break
                if delta.seq <= snap["seq"]:
                    continue
                parts, shown = viewer.render(delta.parts)
                if shown:  # calls whose full number this stream has not shown before: audited once each
                    try:
                        await self._audit(who, "api live stream numbers", {"calls": shown}, len(shown))
                        viewer.audited.update(shown)
                    except web.HTTPException:
                        parts, _ = Viewer(who, full_numbers=False, seen_calls=viewer.seen_calls).render(delta.parts)
                if not any(parts.get(k) for k in parts):
                    continue
                await resp.write(_sse("change", {"seq": delta.seq, "at": delta.at, **parts}, delta.seq))
            return resp
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        finally:
            self.live.unsubscribe(q)
            if task is not None:
                self._streams.discard(task)

    # ------------------------------------------------------------------ actions
    async def post_agent_state(self, request: web.Request) -> web.Response:
        who, agent = request[PRINCIPAL], request.match_info["agent"]
        body = await self._body(request)
        action = self._text(body, "action", required=True, limit=16)
        if agent not in self.live.agents.agents:
            raise error(404, "not_found", f"no agent {agent!r}")
        if not who.may_act_for(agent):
            raise error(403, "forbidden", f"an agent token of seat {who.seat} may not change agent {agent}")
        reason, why = self._text(body, "reason", limit=32), self._text(body, "why")
        await self._audit(who, "api agent state", {"agent": agent, "action": action, "reason": reason, "why": why}, 0)
        r = await self.actions.agent_change(agent, action, reason, why or (f"{who.role} {who.name}"), who.who)
        return _json(r, 200 if r.get("ok") else 409)

    async def post_callback(self, request: web.Request) -> web.Response:
        who = request[PRINCIPAL]
        self._supervisor(who)
        ticket = self._text(await self._body(request), "ticket", required=True, limit=32)
        await self._audit(who, "api callback", {"ticket_no": ticket}, 0)
        r = await self.actions.call_back(ticket, who.who)
        return _json(r, 200 if r.get("ok") else 409)

    async def post_transfer(self, request: web.Request) -> web.Response:
        who, lid = request[PRINCIPAL], request.match_info["linkedid"]
        target = self._text(await self._body(request), "target", required=True, limit=64)
        call = self._call(who, lid)
        if not call.get("agent") or not call.get("agent_channel"):
            raise error(409, "conflict", f"call {lid} is not with an agent: nothing to transfer")
        if not who.may_act_for(call["agent"]):
            raise error(403, "forbidden", f"call {lid} is not on seat {who.seat}")
        await self._audit(who, "api transfer", {"linkedid": lid, "agent": call["agent"], "target": target}, 0)
        r = await self.actions.transfer(call["agent_channel"], target, lid, who.who)
        return _json(r, 200 if r.get("ok") else 409)

    def _intervention(self) -> Intervention:
        if self.intervention is None:
            raise error(501, "not_implemented", "supervisor intervention (listen/whisper/barge/force release) "
                        "is not available in this controller: no intervention module is wired in")
        return self.intervention

    def _supervisor_seat(self, who: Principal, body: dict[str, Any]) -> str:
        seat = self._text(body, "seat", limit=32) or (who.seat or "")
        if not seat:
            raise error(400, "bad_request", "seat: the supervisor's own SIP phone (or a token bound to a seat)")
        return seat

    async def _supervise(self, who: Principal, mode: str, seat: str, call: dict[str, Any],
                         asked: dict[str, Any]) -> web.Response:
        if not call.get("agent") or not call.get("agent_channel"):
            raise error(409, "conflict", f"call {call['linkedid']} is not with an agent")
        port = self._intervention()
        await self._audit(who, f"api {mode}", {"linkedid": call["linkedid"], "agent": call["agent"], "mode": mode,
                                               "seat": seat, **asked}, 0)
        r = await port.supervise(mode, seat, call["agent"], actor=who.who, uid=self.audit_uid, user=who.who,
                                 via="api", call=call["linkedid"])
        if r.get("ok"):
            return _json(r)
        return _json({"ok": False, "reason": str(r.get("reason") or "refused"), "error": str(r.get("error") or "refused")},
                     REASON_STATUS.get(str(r.get("reason") or ""), 409))

    async def post_intervene(self, request: web.Request) -> web.Response:
        who, lid = request[PRINCIPAL], request.match_info["linkedid"]
        self._supervisor(who)
        body = await self._body(request)
        mode = self._text(body, "mode", required=True, limit=16)
        if mode not in MODES:
            raise error(400, "bad_request", f"mode must be one of {', '.join(MODES)}")
        seat = self._supervisor_seat(who, body)
        return await self._supervise(who, mode, seat, self._call(who, lid), {})

    async def post_release(self, request: web.Request) -> web.Response:
        who, lid = request[PRINCIPAL], request.match_info["linkedid"]
        self._supervisor(who)
        body = await self._body(request)
        seat, why = self._supervisor_seat(who, body), self._text(body, "why")
        return await self._supervise(who, RELEASE, seat, self._call(who, lid), {"why": why})


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _sse(event: str, data: Any, seq: int) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {seq}\nevent: {event}\ndata: {payload}\n\n".encode()
