"""The live API's test world (tests/unit/test_live_api.py, test_pages_api.py): a real aiohttp server on a free
port serving the API and the pages, a real SQLite store, a fake AMI, recorded actions, tokens."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from live.api import PREFIX, LiveApi
from live.pages import Pages
from live.service import LiveService
from live.tokens import new_token, token_hash
from model.config import Config
from model.loading import load_config
from routing.agent_service import AgentService
from ticketbridge.store import TicketStore


class FakeAmi:
    def __init__(self) -> None:
        self.handlers: dict[str, list[Any]] = {}

    def on_event(self, name: str, cb: Any) -> None:
        self.handlers.setdefault(name, []).append(cb)

    async def action(self, name: str, timeout: float | None = None, raise_on_error: bool = True,
                     **headers: Any) -> dict[str, str]:
        return {"Response": "Success"}

    async def action_list(self, name: str, **headers: Any) -> list[dict[str, str]]:
        return []

    def push(self, **ev: str) -> None:
        for cb in self.handlers.get("*", []) + self.handlers.get(ev["Event"], []):
            cb(dict(ev))


class Actions:
    def __init__(self, agents: AgentService) -> None:
        self.agents = agents
        self.calls: list[tuple[str, ...]] = []

    async def agent_change(self, agent: str, action: str, reason: str, why: str, actor: str) -> dict[str, Any]:
        self.calls.append(("agent", agent, action, actor))
        return {"ok": True, "agent": agent, "state": "busy" if action == "busy" else "ready", "reason": reason}

    async def call_back(self, ticket: str, actor: str) -> dict[str, Any]:
        self.calls.append(("callback", ticket, actor))
        return {"ok": False, "error": f"ticket {ticket} is not on the callback list"}

    async def transfer(self, agent_channel: str, target: str, linkedid: str, actor: str) -> dict[str, Any]:
        self.calls.append(("transfer", agent_channel, target, linkedid))
        return {"ok": True, "transfer": {"target": target}}


@dataclass
class LiveWorld:
    cfg: Config
    store: TicketStore
    ami: FakeAmi
    live: LiveService
    api: LiveApi
    actions: Actions
    #: by role and seat: "supervisor", "agent" (seat 1001's), "1001", "1002"
    tokens: dict[str, str]
    #: the API's routes (base URL …/api/v1)
    client: httpx.AsyncClient
    #: the whole site: pages and API
    site: httpx.AsyncClient


async def open_world(tmp_path: Path) -> LiveWorld:
    cfg = load_config("config/hotline.yaml")
    store = TicketStore(f"sqlite+aiosqlite:///{tmp_path}/t.db", cfg)
    await store.open()
    ami = FakeAmi()
    agents = AgentService(ami, cfg)
    agents.start_from(None)
    live = LiveService(ami, cfg, agents, flush_s=0.01, poll_s=0.05)
    live.attach()
    await live.start()
    actions = Actions(agents)
    api = LiveApi(live, store, actions)
    Pages(api, cfg).attach()
    await api.start("127.0.0.1", 0)
    tokens: dict[str, str] = {}
    for name, role, seat in [("张班长", "supervisor", None), ("坐席1001", "agent", "1001"), ("坐席1002", "agent", "1002")]:
        tokens[seat or role] = t = new_token()
        await store.create_token(name=name, role=role, seat=seat, token_hash=token_hash(t))
    tokens["agent"] = tokens["1001"]
    site = f"http://127.0.0.1:{api.port}"
    return LiveWorld(cfg, store, ami, live, api, actions, tokens,
                     httpx.AsyncClient(base_url=site + PREFIX, timeout=5), httpx.AsyncClient(base_url=site, timeout=5))


async def close_world(w: LiveWorld) -> None:
    await w.client.aclose()
    await w.site.aclose()
    await w.live.stop()
    await w.api.stop()
    await w.store.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def a_call_waits(ami: FakeAmi, lid: str = "1700000000.1", caller: str = "13800138000") -> None:
    now = f"{time.time():.6f}"
    ami.push(Event="Newchannel", Linkedid=lid, Uniqueid=lid, Channel="PJSIP/trunk-1", Context="hotline-inbound",
             CallerIDNum=caller, Exten="12345", Timestamp=now)
    ami.push(Event="UserEvent", UserEvent="HotlineCall", Linkedid=lid, Uniqueid=lid, Caller=caller, Dialed="12345",
             Timestamp=now)
    ami.push(Event="QueueCallerJoin", Linkedid=lid, Uniqueid=lid, Queue="hotline-general", Timestamp=now)
