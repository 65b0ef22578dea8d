"""Names and dial strings that reach Asterisk's files, restricted so no config value can inject (issue 14.13).

A newline in a queue name once added `exten => 666,1,System(...)` to the rendered dialplan and a
seat key a PJSIP section. The config models (model/config.py) type their keys and free text with
these: keys take a safe alphabet, display names and dial strings refuse what Asterisk's `.conf`
syntax gives a meaning to.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

#: Names that become Asterisk section names, extensions, queue or file names (the keys of queues,
#: seats, menus, carriers, transfer targets, hours, …): a safe alphabet, so no config value can
#: open a section, add a line or an application call in a rendered file (issue 14.13)
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: never in a display name or dial string that reaches an Asterisk file: line breaks and other
#: control characters (a new line, a new `exten =>`), `;` (a comment), `[]` (a section), `()` (an
#: application's arguments); dial strings also never carry `,` (Dial's options)
_CONF_UNSAFE = re.compile(r"[\x00-\x1f\x7f;\[\]()]")


def _safe_name(v: str) -> str:
    if not SAFE_NAME.fullmatch(v):
        raise ValueError(f"name {v!r} must be 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
    return v


def _safe_text(v: str) -> str:
    bad = _CONF_UNSAFE.search(v)
    if bad:
        raise ValueError(f"{v!r} contains {bad.group()!r}: no control characters, ';', '[', ']', '(' or ')'")
    return v


def _safe_dial(v: str) -> str:
    _safe_text(v)
    if "," in v or " " in v:
        raise ValueError(f"dial string {v!r} contains ',' or a space (Dial's options are not configured here)")
    return v


def _line_number(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9*#+][A-Za-z0-9_.*#+-]{0,31}", v):
        raise ValueError(f"number {v!r} must be 1-32 of 0-9 * # + (or a name's A-Z a-z _ . -)")
    return v


#: a dialed number that becomes an extension (a legacy line's number)
LineNumber = Annotated[str, AfterValidator(_line_number)]
#: a key or reference that reaches Asterisk's files
SafeName = Annotated[str, AfterValidator(_safe_name)]
#: a display name that reaches Asterisk's files (Chinese welcome)
SafeText = Annotated[str, AfterValidator(_safe_text)]


def _seat_key(v: str) -> str:
    v = _safe_name(v)
    if len(v) > 32:  # the agents' tables key on it (agent_states.agent is 32 wide)
        raise ValueError(f"seat {v!r} is longer than 32 characters")
    return v


#: a seat's extension: a safe name of at most 32 characters (it is also the agent's ID in the store)
SeatKey = Annotated[str, AfterValidator(_seat_key)]
#: an Asterisk dial string
DialString = Annotated[str, AfterValidator(_safe_dial)]
