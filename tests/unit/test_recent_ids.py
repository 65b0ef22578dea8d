"""ticketbridge/recent_ids.py: ids forgotten after a while, and never more than a bound."""

from __future__ import annotations

import pytest

from ticketbridge.recent_ids import RecentIds


def test_an_id_is_forgotten_keep_s_after_the_newest_time_seen() -> None:
    r = RecentIds(keep_s=10, limit=100)
    r.add("a", 100.0)
    r.add("b", 105.0)
    assert "a" in r and "b" in r and len(r) == 2
    r.add("c", 110.0)  # a is exactly 10 s old: still there
    assert "a" in r
    r.add("d", 110.5)
    assert "a" not in r and "b" in r and len(r) == 3


def test_the_limit_holds_whatever_the_clock_does() -> None:
    r = RecentIds(keep_s=1e9, limit=3)
    for i in range(10):
        r.add(str(i), 0.0)
    assert len(r) == 3 and "9" in r and "6" not in r


def test_no_time_stamps_with_the_newest_seen_and_adding_again_renews() -> None:
    r = RecentIds(keep_s=10, limit=100)
    r.add("a", 100.0)
    r.add("b", None)  # as of 100
    r.add("a", 108.0)  # renewed: now stamped 108
    r.add("c", 115.0)
    assert "b" not in r and "a" in r
    r.add("d", 118.5)
    assert "a" not in r and set(["c", "d"]) <= {k for k in ("a", "b", "c", "d") if k in r}


def test_a_steady_rate_gives_a_flat_size() -> None:
    r = RecentIds(keep_s=60, limit=10_000)
    sizes = []
    for t in range(600):
        r.add(f"call-{t}", float(t))
        sizes.append(len(r))
    assert sizes[100:] == [61] * 500


@pytest.mark.parametrize("keep_s, limit", [(0, 10), (10, 0), (-1, 5)])
def test_nonsense_bounds_are_refused(keep_s: float, limit: int) -> None:
    with pytest.raises(ValueError):
        RecentIds(keep_s, limit)
