"""The port the live API calls for supervisors' intervention: listen, whisper, barge, force release.

The API defines the endpoints (`POST /api/v1/calls/{linkedid}/intervene`, `…/release`), checks the
token's role, writes its own audit row, finds the call's agent and then calls this interface; the
implementation (Asterisk ChanSpy from the supervisor's own SIP phone, a Hangup for 强拆, its own rules
and audit rows) is routing/supervise_service.py, reached through `Controller.supervise(mode, seat, agent,
*, actor, uid, user, via)`: the controller sets `intervention = self`. A controller without one makes the
API answer 501 and say so: nothing is faked.

    mode      ChanSpy            the caller hears   the agent hears
    listen    监听  (q)          nothing new        nothing new
    whisper   耳语  (w)          nothing new        the supervisor
    barge     强插  (B)          the supervisor     the supervisor
    release   强拆               the call ends
"""

from __future__ import annotations

from typing import Any, Protocol

MODES = ("listen", "whisper", "barge")
RELEASE = "release"
#: the implementation's refusal reasons → the API's HTTP status (anything else: 409)
REASON_STATUS = {"not_supervisor": 403, "unknown_seat": 404, "unknown_agent": 404, "not_an_agent": 409,
                 "not_in_call": 409, "unknown_mode": 400, "audit_failed": 503}


class Intervention(Protocol):
    async def supervise(self, mode: str, seat: str, agent: str, *, actor: str, uid: int, user: str,
                        via: str = "api", call: str = "") -> dict[str, Any]:
        """`mode` in MODES: ring supervisor seat `seat`, and when answered ChanSpy on `agent`'s call; RELEASE:
        hang `agent`'s call up. `call`: the linkedid the supervisor chose (refused when the agent is
        no longer on it). Answer {"ok": True, "mode", "seat", "agent", "linkedid", …} or
        {"ok": False, "reason" (a key of REASON_STATUS, or another word), "error" (for a person)}."""
        ...
