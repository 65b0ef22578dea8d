"""One routing vocabulary: every place a call can go is one typed, tagged destination.

Menu options, timeouts, hours alternatives, queue overflow and legacy lines all
point at a `Destination`, so the whole graph can be validated in one pass
(see `hotline check`: routing/graph.py and admin/check.py). In YAML a destination is either a mapping with a `type`
key or the short string form ``"type:name"`` (``"queue:general"``,
``"menu:main"``, ``"hangup"``).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


#: Redirections one destination chain may take (announce → then, closed → alternative, fail-open)
#: before it gives up and fails open to the general queue. The menu engine and the closed-queue
#: rule both stop here, so `explain` and a live call give up at the same point.
MAX_REDIRECTS = 16
#: Line-to-line hops one call may take (a forward to another legacy line, a legacy line chosen in a menu).
MAX_LINE_HOPS = 4


class Category(str, Enum):
    """Request categories of the national classification (诉求类型)."""

    consult = "咨询"
    complaint = "投诉举报"
    help = "求助"
    suggestion = "意见建议"
    other = "其他"


class _Dest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def label(self) -> str:
        """Short human form used in logs, explain output and the IVR path."""
        return self.type  # type: ignore[attr-defined]


class MenuDest(_Dest):
    type: Literal["menu"] = "menu"
    menu: str

    def label(self) -> str:
        return f"menu:{self.menu}"


class QueueDest(_Dest):
    type: Literal["queue"] = "queue"
    queue: str
    category: Category | None = None

    def label(self) -> str:
        return f"queue:{self.queue}" + (f"/{self.category.value}" if self.category else "")


class AnnounceDest(_Dest):
    """Play a prompt, then go on to `then` (default: the general queue)."""

    type: Literal["announce"] = "announce"
    prompt: str
    then: "Destination | None" = None

    def label(self) -> str:
        return f"announce:{self.prompt}"


class LegacyDest(_Dest):
    """Enter a legacy line's flow as if its old number had been dialed."""

    type: Literal["legacy"] = "legacy"
    line: str

    def label(self) -> str:
        return f"legacy:{self.line}"


class SelfServiceDest(_Dest):
    type: Literal["self_service"] = "self_service"
    service: Literal["progress_query"] = "progress_query"

    def label(self) -> str:
        return f"self_service:{self.service}"


class TransferDest(_Dest):
    """Connect the caller to a one-key target (110, 119, 120, 122, utilities) or a branch center."""

    type: Literal["transfer"] = "transfer"
    target: str

    def label(self) -> str:
        return f"transfer:{self.target}"


class DialDest(_Dest):
    """Dial a number or Asterisk dial string (call forwarding 呼叫转移)."""

    type: Literal["dial"] = "dial"
    number: str

    def label(self) -> str:
        return f"dial:{self.number}"


class HangupDest(_Dest):
    """Only reachable by explicit configuration (a retired line); menus never end here."""

    type: Literal["hangup"] = "hangup"
    prompt: str | None = None

    def label(self) -> str:
        return "hangup"


_SHORT_KEYS = {
    "menu": "menu",
    "queue": "queue",
    "announce": "prompt",
    "legacy": "line",
    "self_service": "service",
    "transfer": "target",
    "dial": "number",
    "hangup": "prompt",
}


def _parse_short(value: Any) -> Any:
    """Accept ``"queue:general"`` / ``"queue:general/咨询"`` / ``"hangup"`` as shorthand."""
    if not isinstance(value, str):
        return value
    kind, _, rest = value.partition(":")
    kind = kind.strip()
    if kind not in _SHORT_KEYS:
        raise ValueError(
            f"unknown destination {value!r}; expected one of "
            + ", ".join(f"'{k}:…'" for k in _SHORT_KEYS)
        )
    out: dict[str, Any] = {"type": kind}
    rest = rest.strip()
    if kind == "queue" and "/" in rest:
        rest, _, cat = rest.partition("/")
        out["category"] = cat
    if rest:
        out[_SHORT_KEYS[kind]] = rest
    return out


Destination = Annotated[
    Annotated[
        Union[MenuDest, QueueDest, AnnounceDest, LegacyDest, SelfServiceDest, TransferDest, DialDest, HangupDest],
        Field(discriminator="type"),
    ],
    BeforeValidator(_parse_short),
]

AnnounceDest.model_rebuild()


def parse_destination(value: Any) -> "Destination":
    """Parse one destination outside a model (CLI arguments, tests)."""
    from pydantic import TypeAdapter

    return TypeAdapter(Destination).validate_python(value)
