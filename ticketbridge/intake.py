"""The agent's intake of a call (受理): what the citizen asked and what the agent decided — pure.

During the call the agent types the request (诉求内容), picks the category (诉求类型) and the
department that will handle it (承办单位), and marks it answered on the spot (当场解答) or to be
dispatched (派单). `parse_intake` turns what a form or an API sent into an `Intake`, or raises
`IntakeError` naming the field; `target_state` says where the ticket's lifecycle goes. The store
(ticketbridge/store.py `save_intake`) writes it into the call's ticket by linkedid, creating the
ticket when the call has none yet, so a save made before the call ends is never lost.

当场解答 moves the ticket 受理 → 办结 (accepted → closed), which is exactly what the
当场解答率 KPI counts (ticketbridge/kpi.py); 派单 moves it 受理 → 派单 (accepted → dispatched).
No disposition keeps the ticket 受理 (a draft the agent may finish later).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from model.destinations import Category
from model.ticket_state import TicketState

#: 诉求内容 longer than this is refused (a form's textarea says so before sending)
MAX_TEXT = 4000
#: the tickets.department column
MAX_DEPARTMENT = 64


class Disposition(str, Enum):
    on_spot = "on_spot"    # 当场解答
    dispatch = "dispatch"  # 派单

    @property
    def label(self) -> str:
        return DISPOSITION_LABELS[self]


DISPOSITION_LABELS = {Disposition.on_spot: "当场解答", Disposition.dispatch: "派单"}
_BY_LABEL = {v: k for k, v in DISPOSITION_LABELS.items()}
#: the state each disposition moves an accepted ticket to
TARGET = {Disposition.on_spot: TicketState.closed, Disposition.dispatch: TicketState.dispatched}


class IntakeError(ValueError):
    """Bad intake input; `field` names which one, for the form to point at."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Intake:
    text: str
    category: Category | None
    department: str
    disposition: Disposition | None


def _clean(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise IntakeError(field, f"must be text, not {type(value).__name__}")
    cleaned = "".join(ch for ch in value if ch in "\n\t" or ch.isprintable())
    return cleaned.strip()


def parse_intake(data: Any) -> Intake:
    """A JSON object {text, category, department, disposition} → Intake; IntakeError names the field.

    `category` is a national category (咨询, 投诉举报, 求助, 意见建议, 其他); `disposition` is
    `on_spot`/`dispatch` or its Chinese label, empty for a draft. 派单 needs a department.
    """
    if not isinstance(data, dict):
        raise IntakeError("body", "must be a JSON object")
    unknown = sorted(set(data) - {"text", "category", "department", "disposition"})
    if unknown:
        raise IntakeError(unknown[0], "unknown field")
    text = _clean(data.get("text"), "text")
    if len(text) > MAX_TEXT:
        raise IntakeError("text", f"{len(text)} characters, at most {MAX_TEXT}")
    raw_category = _clean(data.get("category"), "category")
    try:
        category = Category(raw_category) if raw_category else None
    except ValueError:
        raise IntakeError("category", f"{raw_category!r} is not one of "
                          + ", ".join(c.value for c in Category)) from None
    department = _clean(data.get("department"), "department").replace("\n", " ")
    if len(department) > MAX_DEPARTMENT:
        raise IntakeError("department", f"{len(department)} characters, at most {MAX_DEPARTMENT}")
    raw_disposition = _clean(data.get("disposition"), "disposition")
    disposition: Disposition | None = None
    if raw_disposition:
        disposition = _BY_LABEL.get(raw_disposition)
        if disposition is None:
            try:
                disposition = Disposition(raw_disposition)
            except ValueError:
                raise IntakeError("disposition", f"{raw_disposition!r} is not on_spot (当场解答) "
                                  "or dispatch (派单)") from None
    if disposition is not None and not text:
        raise IntakeError("text", "诉求内容 is needed before 当场解答 or 派单")
    if disposition is not None and category is None:
        raise IntakeError("category", "诉求类型 is needed before 当场解答 or 派单")
    if disposition is Disposition.dispatch and not department:
        raise IntakeError("department", "派单 needs a 承办单位")
    return Intake(text, category, department, disposition)


def target_state(current: TicketState | str, disposition: Disposition | None) -> TicketState | None:
    """The state the ticket moves to, or None when it stays (a draft, or already there).

    The move itself is checked by ticketbridge.lifecycle.transition (受理 → 办结 / 派单 only)."""
    if disposition is None:
        return None
    target = TARGET[disposition]
    return None if TicketState(current) is target else target
