"""Ids remembered for a while (pure): the calls that ended, so that their late events or CDR rows are ignored.

Issue 15's soak: a set that keeps the last N linkedids grows with every call until N of them are in it
(50,000 calls: hours at a busy center), so the controller's memory rose for the whole of a 10-minute soak.
What such a set is for — events of a call that come after it ended, within seconds — needs minutes at most:
`RecentIds` forgets an id `keep_s` after it was added (by the owner's own clock: event or CDR times, so it
stays pure) and never holds more than `limit` (a hard bound should the clock stall). At a steady call rate
its size is flat once `keep_s` has passed.
"""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    """Ids added with a time; each forgotten `keep_s` after the newest time seen, or when more than `limit`
    are held (oldest first)."""

    def __init__(self, keep_s: float, limit: int) -> None:
        if keep_s <= 0 or limit <= 0:
            raise ValueError("keep_s and limit must be positive")
        self.keep_s = keep_s
        self.limit = limit
        self._at: OrderedDict[str, float] = OrderedDict()
        self._newest = float("-inf")

    def add(self, key: str, at: float | None) -> None:
        """Remember `key` from `at` on (None: the newest time seen so far); adding it again renews it."""
        if at is not None and at > self._newest:
            self._newest = at
        self._at.pop(key, None)
        self._at[key] = self._newest if at is None else at
        self._trim()

    def _trim(self) -> None:
        horizon = self._newest - self.keep_s
        at = self._at
        while at and (len(at) > self.limit or next(iter(at.values())) < horizon):
            at.popitem(last=False)

    def discard(self, key: str) -> None:
        self._at.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._at

    def __len__(self) -> int:
        return len(self._at)
