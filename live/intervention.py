"""The port the live API calls for supervisors' intervention: listen, whisper, barge, force release.

The API defines the endpoints (`POST /api/v1/calls/{linkedid}/intervene`, `…/release`), checks the
role, writes the audit row and then calls this interface; the implementation (Asterisk ChanSpy from
the supervisor's own SIP phone, a Hangup for 强拆) belongs to the intervention work (issue 12,
"intervene"). Until a controller is given one, the API answers 501 and says so: nothing is faked.

    mode      ChanSpy            the caller hears   the agent hears
    listen    监听  (q)          nothing new        nothing new
    whisper   耳语  (w)          nothing new        the supervisor
    barge     强插  (B)          the supervisor     the supervisor
"""

from __future__ import annotations

from typing import Any, Protocol

MODES = ("listen", "whisper", "barge")


class InterventionError(Exception):
    """The intervention could not be started (no such call, the supervisor's phone is not registered, …)."""


class Intervention(Protocol):
    async def intervene(self, *, linkedid: str, agent: str, agent_channel: str, supervisor_seat: str,
                        mode: str, actor: str) -> dict[str, Any]:
        """Ring `supervisor_seat`; when answered, ChanSpy on `agent_channel` in `mode` (MODES). Returns what
        was started (JSON-able); raises InterventionError with a reason a supervisor can act on."""
        ...

    async def release(self, *, linkedid: str, actor: str, why: str) -> dict[str, Any]:
        """强拆: end the call `linkedid` (every channel of it). Raises InterventionError."""
        ...
