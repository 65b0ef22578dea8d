"""The controller's scheduler of automatic calls: missed-call callbacks and 回访 follow-ups.

Thin adapter around the pure rules (ticketbridge.outreach_rules): every `poll_s` it reads what is owed from
the store, asks the rules what is due, settles what the rules ended (not needed any more → done; window over,
attempts used up, number refused → given up), claims each due call in the store (ticketbridge.outreach_store:
atomic, so two controllers sharing a database never both dial it) and places the claimed ones through the
dialer (ticketbridge.callbacks), at most `max_concurrent` at once per kind. Dial tasks are its own (a
TaskGroup): stopping the scheduler ends them; a claim left behind by a killed controller expires with its
lease. The clock is injected; a failing round (store away) is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import structlog

from model.config import AutoDialRules, Config
from routing.outbound import outbound_refusal
from ticketbridge.outreach_rules import Decision, Verdict, plan

log = structlog.get_logger("ticketbridge.scheduler")

KINDS = ("callback", "followup")


def rules_of(config: Config, kind: str) -> AutoDialRules:
    return config.callbacks.auto if kind == "callback" else config.followups.auto


class OutreachScheduler:
    """`config()` returns the configuration in force (the controller's, which `hotline apply` may swap)."""

    def __init__(self, store: Any, dialer: Any, config: Callable[[], Config],
                 clock: Callable[[], dt.datetime]) -> None:
        self.store = store
        self.dialer = dialer
        self.config = config
        self.clock = clock
        #: owed-call ids this scheduler is dialing now, per kind
        self.running: dict[str, set[int]] = {k: set() for k in KINDS}
        self.placed: list[Any] = []  # results of the calls placed (tests, the demo)
        self.lost = 0  # due calls another controller claimed first

    def enabled(self) -> bool:
        cfg = self.config()
        return any(rules_of(cfg, k).enabled for k in KINDS)

    def poll_s(self) -> float:
        cfg = self.config()
        return min((rules_of(cfg, k).poll_s for k in KINDS if rules_of(cfg, k).enabled), default=15.0)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            while True:
                try:
                    await self.tick(lambda coro, name: tg.create_task(coro, name=name))
                except Exception:  # noqa: BLE001 - the store may be away for a while: next round
                    log.exception("scheduler_round_failed")
                await asyncio.sleep(self.poll_s())

    async def tick(self, spawn: Callable[[Any, str], Any]) -> list[Decision]:
        """One round: settle, claim and start what is due; returns the decisions acted on."""
        cfg = self.config()
        acted: list[Decision] = []
        for kind in KINDS:
            rules = rules_of(cfg, kind)
            if not rules.enabled:
                continue
            owed = [o for o in await self.store.owed_calls(kind, window_min=rules.within_min)
                    if o.id not in self.running[kind]]
            now = self.clock()
            hours = cfg.hours.get(rules.hours) if rules.hours else None
            decisions = plan(owed, rules, now, refusal=lambda n: outbound_refusal(cfg, n), hours=hours,
                             tz=cfg.center.timezone, limit=max(0, rules.max_concurrent - len(self.running[kind])))
            for d in decisions:
                o = d.owed
                if d.verdict in (Verdict.GIVE_UP, Verdict.NOT_NEEDED):
                    if await self.store.settle_owed(kind, o.id, d.verdict.value, d.reason):
                        log.info("outreach_settled", kind=kind, ticket=o.ticket_no, verdict=d.verdict.value,
                                 reason=d.reason)
                        acted.append(d)
                    continue
                claimed = await self.store.claim_owed(kind, o.id, self.dialer.owner, lease_s=self.dialer.lease_s(kind),
                                                      expect_attempts=o.attempts, actor="scheduler")
                if claimed is None:
                    self.lost += 1
                    log.info("outreach_claimed_elsewhere", kind=kind, ticket=o.ticket_no)
                    continue
                self.running[kind].add(o.id)
                spawn(self._place(kind, claimed), f"{kind}-{o.ticket_no}-{claimed.attempts}")
                acted.append(d)
        return acted

    async def _place(self, kind: str, claimed: Any) -> None:
        try:
            self.placed.append(await self.dialer.place(claimed, actor="scheduler"))
        except Exception:  # noqa: BLE001 - one failed call never stops the others; its lease expires
            log.exception("outreach_call_failed", kind=kind, ticket=claimed.ticket_no)
        finally:
            self.running[kind].discard(claimed.id)
