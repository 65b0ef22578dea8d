"""Building a state machine's table, for every machine we have (transfers, seat agents).

A table maps (state, input kind) → handler. It is written as rows — one handler for every
pair in `states × kinds`, so a rule shared by several states is written once — and built
total: a pair defined twice or left out is a ValueError at import, so no input falls
through silently (h11's `_state.py` does the same for HTTP).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum
from itertools import product
from typing import Any, TypeVar

StateT = TypeVar("StateT", bound=Enum)
KindT = TypeVar("KindT", bound=Enum)
Handler = Callable[..., Any]
Row = tuple[frozenset[Any], frozenset[Any], Handler]


def row(states: Enum | Iterable[Enum], kinds: Enum | Iterable[Enum], handler: Handler) -> Row:
    """One line of a table: `handler` for every pair in `states` × `kinds` (a member, or several)."""
    s = frozenset([states]) if isinstance(states, Enum) else frozenset(states)
    k = frozenset([kinds]) if isinstance(kinds, Enum) else frozenset(kinds)
    return s, k, handler


def build_table(rows: Iterable[Row], states: type[StateT], kinds: type[KindT]
                ) -> dict[tuple[StateT, KindT], Handler]:
    """Expand rows into a total table over `states` × `kinds`; a pair defined twice or not at all is a ValueError."""
    table: dict[tuple[StateT, KindT], Handler] = {}
    for row_states, row_kinds, handler in rows:
        for pair in product(row_states, row_kinds):
            if pair in table:
                raise ValueError(f"{pair} defined twice ({table[pair].__name__}, {handler.__name__})")
            table[pair] = handler
    missing = set(product(states, kinds)) - set(table)
    if missing:
        raise ValueError(f"no transition for {sorted(missing)}")
    return table
