"""Reloading a running Asterisk and asking it what it loaded, through apply's own AMI account.

That account (manager.conf `hotline-apply`, model.contract.AmiRights.APPLY) may run `Reload` with
`Module=` (class system) and the list actions below; never `Command`, which is a shell on the server.
None of these reloads hangs up a live call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from model.config import Config
from model.contract import Context
from routing.dialplan import asterisk_queue


class AmiLike(Protocol):
    """apply's AMI account: Reload, ShowDialPlan, QueueSummary, PJSIPShowEndpoints and UserEvent."""

    async def action(self, name: str, **headers: Any) -> dict[str, Any]: ...

    async def action_list(self, name: str, **headers: Any) -> list[dict[str, Any]]: ...


@dataclass
class StepResult:
    name: str
    ok: bool
    detail: str = ""


#: file → the module (AMI `Reload` with `Module=`) that makes Asterisk read it, in the order they run.
#: manager last: it may drop our link.
RELOADS: list[tuple[str, str]] = [
    ("pjsip.conf", "res_pjsip.so"),
    ("queues.conf", "app_queue.so"),
    ("features.conf", "features"),
    ("rtp.conf", "res_rtp_asterisk.so"),
    ("musiconhold.conf", "res_musiconhold.so"),
    ("logger.conf", "logger"),
    ("cdr.conf", "cdr"),
    ("cdr_custom.conf", "cdr_custom.so"),
    ("cdr_manager.conf", "cdr_manager.so"),
    ("extensions.conf", "pbx_config.so"),
    ("manager.conf", "manager"),
]
MANAGER = "manager"
#: read only at start-up
RESTART_ONLY = ("asterisk.conf", "modules.conf")


def reload_commands(changed: list[str]) -> tuple[list[str], list[str]]:
    """(modules to reload for the changed files, files that only take effect at a restart)."""
    names = set(changed)
    if any(n.startswith(("custom/", "sim/")) for n in names):
        names.add("extensions.conf")
    cmds = [cmd for f, cmd in RELOADS if f in names]
    return cmds, [f for f in RESTART_ONLY if f in names]


async def reload_module(ami: AmiLike, module: str) -> str:
    """AMI `Reload` of one module (needs only the `system` class, unlike `Command`, which is a shell);
    RuntimeError when Asterisk says it did not reload (no such module, not loaded, reload failed)."""
    try:
        resp = await ami.action("Reload", Module=module)
    except Exception as e:  # noqa: BLE001 - wire.ami raises on `Response: Error`
        raise RuntimeError(f"Asterisk did not reload {module}: {getattr(e, 'message', None) or e}") from e
    if str(resp.get("Response", "")).lower() == "error":
        raise RuntimeError(f"Asterisk did not reload {module}: {resp.get('Message', 'error')}")
    return str(resp.get("Message") or "")


async def _listing(ami: AmiLike, name: str, empty_when: str = "", **headers: Any) -> list[dict[str, Any]]:
    """An AMI list action's items; an error whose message holds `empty_when` is an empty list."""
    try:
        return await ami.action_list(name, **headers)
    except Exception as e:  # noqa: BLE001 - wire.ami raises on `Response: Error`
        if empty_when and empty_when.lower() in str(getattr(e, "message", None) or e).lower():
            return []
        raise


async def verify_loaded(config: Config, ami: AmiLike) -> list[StepResult]:
    """Ask Asterisk what it loaded: our inbound extension, every queue, every seat endpoint (list actions
    the apply account may run: ShowDialPlan, QueueSummary, PJSIPShowEndpoints; no CLI output parsed)."""
    results = []
    ctx = str(Context.INBOUND)
    rows = await _listing(ami, "ShowDialPlan", "did not find context", Context=ctx)
    ok = any(r.get("Context") == ctx and r.get("Extension") == "_X." for r in rows)
    results.append(StepResult(f"verify dialplan {ctx}", ok,
                              "" if ok else "the inbound context has no _X. extension after the reload"))
    for name in config.queues:
        qn = asterisk_queue(name)
        rows = await _listing(ami, "QueueSummary", Queue=qn)
        ok = any(r.get("Queue") == qn for r in rows)
        results.append(StepResult(f"verify queue {qn}", ok, "" if ok else f"Asterisk does not know queue {qn}"))
    if config.seats:
        rows = await _listing(ami, "PJSIPShowEndpoints", "no endpoints")
        have = {str(r.get("ObjectName", "")) for r in rows}
        missing = [ext for ext in config.seats if ext not in have]
        results.append(StepResult("verify pjsip endpoints", not missing,
                                  "" if not missing else f"endpoints missing after reload: {', '.join(missing)}"))
    return results
