"""The two web pages the live API serves, and the two routes only they need (aiohttp; thin).

- `GET /wallboard` 大屏 and `GET /agent` 座席弹屏: plain HTML + a little vanilla JavaScript
  (live/pages/*.js, no build step, nothing from a CDN) reading the API's snapshot and SSE stream with
  the bearer token the page was opened with (`/wallboard#token=…`: a URL fragment never reaches a
  server or its logs). The pages themselves carry no data and need no token; every figure comes
  from the authenticated API.
- `GET /api/v1/calls/{linkedid}/screenpop`: the screen pop of a call the token may see
  (live/screenpop.py); it opens the call's ticket so the agent sees its number during the call.
- `PUT /api/v1/calls/{linkedid}/intake`: the agent's intake (ticketbridge/intake.py) saved into that
  call's ticket (TicketStore.save_intake); an agent token only for its own current or last call
  (`may_save`), audited like every action.
- `GET /api/v1/calls/{linkedid}/suggestion`: the transcript's suggestion and summary of that call's ticket
  (live/screenpop.py `suggestion`) — also after the call has ended, when the transcript arrives (话后处理):
  the page asks for it until it is there. The same rule as saving: an agent only its current or last call.

The last call each seat answered is followed from the live stream (`_follow`, a task owned by the
API's application: started and cancelled with it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from string import Template
from typing import Any

import structlog
from aiohttp import web

from live.api import PREFIX, PRINCIPAL, LiveApi
from live.screenpop import PREVIOUS, may_save, screen_pop, suggestion
from model.config import Config
from model.privacy import normalise_number
from ticketbridge.intake import IntakeError, parse_intake
from ticketbridge.lifecycle import IllegalTransition

log = structlog.get_logger("hotline.pages")

HERE = Path(__file__).resolve().parent / "pages"
#: the page paths (no token needed: they hold no data)
PAGE_PATHS = ("/", "/wallboard", "/agent")
ASSET_PREFIX = "/pages/"
#: the pages run only their own scripts and talk only to their own origin (defence in depth against injection)
PAGE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                           "base-uri 'none'; frame-ancestors 'none'"}
ASSETS = {"live.js": "application/javascript", "wallboard.js": "application/javascript",
          "agent.js": "application/javascript", "pages.css": "text/css"}


def public(path: str) -> bool:
    """A path the API's token check lets through (the pages and their scripts, never an API route)."""
    return path in PAGE_PATHS or (path.startswith(ASSET_PREFIX) and path[len(ASSET_PREFIX):] in ASSETS)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def names(config: Config) -> dict[str, dict[str, str]]:
    """The center's words for its queues and lines (config names: nothing personal), for the pages."""
    return {"queues": {k: q.name for k, q in config.queues.items()},
            "lines": {k: ln.name for k, ln in config.legacy_lines.items()}}


def render_page(name: str, config: Config) -> str:
    w = config.wallboard
    blob = json.dumps(names(config), ensure_ascii=False).replace("<", "\\u003c")
    return Template((HERE / f"{name}.html").read_text(encoding="utf-8")).substitute(
        center=_esc(config.center.name), zone=_esc(config.center.timezone), wait_red_s=f"{w.wait_red_s:g}",
        answer_rate_min=f"{w.answer_rate_min:g}", answer_rate_pct=f"{w.answer_rate_min * 100:g}%", names=blob)


def _problem(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return web.json_response({"error": body}, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


class Pages:
    def __init__(self, api: LiveApi, config: Config) -> None:
        self.api, self.live, self.store, self.config = api, api.live, api.store, config
        self.html = {name: render_page(name, config) for name in ("wallboard", "agent")}
        self.assets = {name: (HERE / name).read_bytes() for name in ASSETS}
        #: seat → the linkedids it was last seen talking on (newest last, a few kept)
        self.last: dict[str, list[str]] = {}

    def attach(self) -> None:
        r = self.api.app.router
        r.add_get("/", self.index)
        r.add_get("/wallboard", self.wallboard)
        r.add_get("/agent", self.agent)
        r.add_get(ASSET_PREFIX + "{name}", self.asset)
        r.add_get(f"{PREFIX}/calls/{{linkedid}}/screenpop", self.get_screenpop)
        r.add_put(f"{PREFIX}/calls/{{linkedid}}/intake", self.put_intake)
        r.add_get(f"{PREFIX}/calls/{{linkedid}}/suggestion", self.get_suggestion)
        self.api.app.cleanup_ctx.append(self._follow_ctx)

    # ------------------------------------------------------------------ pages
    async def index(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/wallboard")

    async def wallboard(self, request: web.Request) -> web.Response:
        return web.Response(text=self.html["wallboard"], content_type="text/html", charset="utf-8",
                            headers=PAGE_HEADERS)

    async def agent(self, request: web.Request) -> web.Response:
        return web.Response(text=self.html["agent"], content_type="text/html", charset="utf-8",
                            headers=PAGE_HEADERS)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        return web.Response(body=self.assets[name], content_type=ASSETS[name], charset="utf-8",
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    # ------------------------------------------------------------------ the last call of each seat
    async def _follow_ctx(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._follow(), name="pages-last-calls")
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    def _note(self, seat: str, lid: str) -> None:
        calls = self.last.setdefault(seat, [])
        if not calls or calls[-1] != lid:
            calls.append(lid)
            del calls[:-4]

    def _note_calls(self, calls: dict[str, Any]) -> None:
        """Calls answered by an agent (the live model's call views): that seat's latest call."""
        for lid, view in calls.items():
            if view and view.get("agent") and view.get("answered_at") is not None:
                self._note(view["agent"], lid)

    async def _follow(self) -> None:
        while True:
            q = self.live.subscribe()
            try:
                now = self.live.clock()
                self._note_calls({c.linkedid: c.view(now) for c in self.live.model.calls.values()})
                while (delta := await q.get()) is not None:
                    self._note_calls(delta.parts.get("calls") or {})
            finally:
                self.live.unsubscribe(q)
            await asyncio.sleep(0.5)  # dropped (fell behind) or the live service stopped: follow again

    def _current(self, seat: str | None) -> dict[str, Any] | None:
        if not seat:
            return None
        call = self.live.agent_call(seat)
        if call is not None:
            self._note(seat, call["linkedid"])
        return call

    # ------------------------------------------------------------------ API routes of the pages
    async def get_screenpop(self, request: web.Request) -> web.Response:
        who, lid = request[PRINCIPAL], request.match_info["linkedid"]
        full = self.api._full(request)
        call = self.api._call(who, lid)  # 404 unless the token may see this live call
        self._current(who.seat)
        ticket = await self.store.ticket_of_call(lid)
        caller = normalise_number(call.get("caller") or "")
        previous = (await self.store.list_tickets(caller=caller, limit=PREVIOUS + 1)) if caller else []
        if full and caller:
            await self.api._audit(who, "api screenpop numbers", {"calls": [lid]}, 1)
        return web.json_response(screen_pop(call, ticket, previous, self.config, now=self.live.clock(),
                                            full_numbers=full),
                                 dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))

    async def put_intake(self, request: web.Request) -> web.Response:
        who, lid = request[PRINCIPAL], request.match_info["linkedid"]
        body = await self.api._body(request)
        try:
            intake = parse_intake(body)
        except IntakeError as e:
            return _problem(400, "bad_request", str(e), e.field)
        current = self._current(who.seat)
        if not may_save(supervising=who.supervising, seat=who.seat, linkedid=lid, current=current,
                        last=self.last.get(who.seat or "", [])):
            return _problem(403, "forbidden", f"call {lid} is neither the current nor the last call of seat "
                            f"{who.seat}: an agent saves only its own call's ticket")
        await self.api._audit(who, "api intake", {"linkedid": lid, "disposition":
                                                  intake.disposition.value if intake.disposition else "draft"}, 1)
        agent = who.seat or who.name
        try:
            await self.store.save_intake(lid, intake, agent=agent)
        except IllegalTransition as e:
            return _problem(409, "conflict", f"{e}: the ticket has moved on since", "disposition")
        t = await self.store.get_by_linkedid(lid)
        brief = screen_pop({"linkedid": lid}, t, [], self.config, now=self.live.clock(), full_numbers=False)["ticket"]
        return web.json_response({"ok": True, "ticket": brief},
                                 dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))

    async def get_suggestion(self, request: web.Request) -> web.Response:
        """The call's transcript suggestion and summary (`transcribed: false` until the worker has written it)."""
        who, lid = request[PRINCIPAL], request.match_info["linkedid"]
        current = self._current(who.seat)
        if not may_save(supervising=who.supervising, seat=who.seat, linkedid=lid, current=current,
                        last=self.last.get(who.seat or "", [])):
            return _problem(403, "forbidden", f"call {lid} is neither the current nor the last call of seat "
                            f"{who.seat}")
        t = await self.store.get_by_linkedid(lid)
        if t is None:
            return _problem(404, "not_found", f"no ticket for call {lid}")
        return web.json_response({"linkedid": lid, "ticket_no": t.ticket_no, **suggestion(t)},
                                 dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))
