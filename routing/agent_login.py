"""Hot-desking's PIN rule (pure): wrong PINs for one agent ID are limited; after `max_tries` in a row it is locked.

An agent signs in at any seat phone with agent ID + PIN (`agents.roster`, feature code `hot_desk`). The
adapter (routing/agent_service.py) checks the PIN against its salted hash; this guard decides whether a try
is allowed at all and counts the wrong ones. A right PIN clears the count; the lock ends by itself after
`lock_s`. Unknown agent IDs are counted the same way (a guesser learns nothing about which IDs exist).
The count is rebuilt after a controller restart from the `pin_wrong`/`hot_desk` rows of agent_events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class PinOutcome(StrEnum):
    SIGNED_IN = "signed_in"
    WRONG = "wrong"
    LOCKED = "locked"
    #: right PIN, but the seat cannot change hands now (a call rings or is on)
    REFUSED = "refused"


@dataclass
class PinGuard:
    max_tries: int = 3
    lock_s: float = 900.0
    #: agent ID → wrong PINs in a row, and when the last one was keyed
    _wrong: dict[str, tuple[int, float]] = field(default_factory=dict)

    def _forget_old(self, now: float) -> None:
        for aid in [k for k, (_, at) in self._wrong.items() if now - at >= self.lock_s]:
            del self._wrong[aid]

    def tries(self, agent_id: str, now: float) -> int:
        """Wrong PINs in a row for `agent_id` still counting at `now` (a lock, or tries, older than lock_s end)."""
        self._forget_old(now)
        return self._wrong.get(agent_id, (0, now))[0]

    def locked(self, agent_id: str, now: float) -> bool:
        return self.tries(agent_id, now) >= self.max_tries

    def wrong(self, agent_id: str, now: float) -> int:
        """One more wrong PIN; returns the count in a row (≥ max_tries: locked from now for lock_s)."""
        n = self.tries(agent_id, now) + 1
        self._wrong[agent_id] = (n, now)
        return n

    def right(self, agent_id: str) -> None:
        self._wrong.pop(agent_id, None)
