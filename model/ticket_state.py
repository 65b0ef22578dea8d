"""The ticket lifecycle's states (工单状态): named once, for the ticket bridge and for the IVR's prompts.

The self-query speaks a ticket's state (`state_<value>` prompts, checked by routing/graph.py);
the allowed moves between states live in ticketbridge/lifecycle.py. `QueryLimited` is the store's
refusal the self-query (ivr/calls.py) acts on.
"""

from __future__ import annotations

from enum import Enum


class TicketState(str, Enum):
    accepted = "accepted"      # 受理
    dispatched = "dispatched"  # 派单
    handling = "handling"      # 办理
    replied = "replied"        # 答复
    supervised = "supervised"  # 督办
    closed = "closed"          # 办结
    revisited = "revisited"    # 回访
    rated = "rated"            # 评价

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS: dict[TicketState, str] = {
    TicketState.accepted: "受理", TicketState.dispatched: "派单", TicketState.handling: "办理", TicketState.replied: "答复",
    TicketState.supervised: "督办", TicketState.closed: "办结", TicketState.revisited: "回访", TicketState.rated: "评价",
}
#: Chinese label → state (parse_state accepts both)
BY_LABEL = {v: k for k, v in LABELS.items()}


class QueryLimited(Exception):
    """Too many wrong self-query tries across calls from this caller, or on this ticket (`args[0]`:
    "caller" or "ticket"): no password is checked; the caller goes on to an agent."""
