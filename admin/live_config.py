"""Getting an applied configuration into the running controller, and saying honestly whether it got there.

`hotline apply` writes the checked configuration as a snapshot file (root-only; it names
secret variables, never secrets), then raises the AMI UserEvent `ControlEvent.CONFIG_APPLIED`
with its generation, path and digest. The controller loads it (`load_snapshot`), decides
whether it can take it live (`restart_fields`: only what each new call reads at its start
can change under a running process) and answers `ControlEvent.CONFIG_LOADED` with the same
generation: `loaded`, or `restart` naming the fields (nothing swapped: never half-applied),
or `error`. No answer within the timeout means no controller took it: apply says so and fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from model.config import Config
from model.contract import ControlEvent, ControlHeader
from model.loading import parse_config

#: top-level config sections a new call reads at its start (the IVR's CallScripts): swapped between calls
HOT_FIELDS = frozenset({"prompts", "menus", "queues", "legacy_lines", "hours", "survey", "self_query", "center",
                        "access"})  # access: read per call by ivr/callflow.py (a new priority list applies at once)
#: inside a hot section, what the process was wired with at start (the clock's time zone)
COLD_SUBFIELDS = {"center": frozenset({"timezone"})}
#: per-item fields of a hot section that the process was wired with at start: a queue's members and
#: after-call work belong to the agents' state machines (routing/agent_service.py), built at start
COLD_ITEM_FIELDS = {"queues": frozenset({"members", "wrapup_s"})}

LOADED, RESTART, ERROR = "loaded", "restart", "error"


def restart_fields(old: Config, new: Config) -> list[str]:
    """The changed fields the running controller cannot take without a restart (empty: it can swap)."""
    out = []
    for name in type(new).model_fields:
        a, b = getattr(old, name), getattr(new, name)
        if a == b:
            continue
        if name not in HOT_FIELDS:
            out.append(name)
            continue
        for sub in sorted(COLD_SUBFIELDS.get(name, ())):
            if getattr(a, sub) != getattr(b, sub):
                out.append(f"{name}.{sub}")
        for field in sorted(COLD_ITEM_FIELDS.get(name, ())):
            for key in sorted(set(a) | set(b)):
                old_v = getattr(a[key], field) if key in a else None
                new_v = getattr(b[key], field) if key in b else None
                if old_v != new_v and (key in a or new_v):
                    out.append(f"{name}.{key}.{field}")
    return out


def config_text(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False)


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_snapshot(config: Config, directory: Path) -> tuple[int, Path, str]:
    """Write the configuration apply checked; returns (generation, path, digest). Root-only file."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = config_text(config)
    generation = time.time_ns() // 1000
    path = directory / f"config-{generation}.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return generation, path, digest_of(text)


def load_snapshot(path: str | os.PathLike[str], digest: str) -> Config:
    """The snapshot apply announced; ValueError when it is not the one announced (or not a config)."""
    text = Path(path).read_text(encoding="utf-8")
    if digest_of(text) != digest:
        raise ValueError(f"{path} does not have the digest apply announced")
    return parse_config(text, str(path))


async def notify_controller(ami: Any, config: Config, directory: Path, timeout_s: float = 5.0) -> tuple[bool, str]:
    """Announce the applied config to the controller and wait for its answer: (ok, what to tell the admin)."""
    on_event = getattr(ami, "on_event", None)
    if on_event is None:
        return False, "controller not reachable: this AMI client cannot hear its answer; restart the controller"
    generation, path, digest = write_snapshot(config, directory)
    answer: asyncio.Future[Mapping[str, str]] = asyncio.get_running_loop().create_future()

    def heard(event: Mapping[str, str]) -> None:
        if (event.get("UserEvent") == ControlEvent.CONFIG_LOADED
                and event.get(ControlHeader.GENERATION) == str(generation) and not answer.done()):
            answer.set_result(event)

    off = on_event("UserEvent", heard)
    try:
        await ami.action("UserEvent", UserEvent=ControlEvent.CONFIG_APPLIED.value,
                         **{ControlHeader.GENERATION.value: str(generation), ControlHeader.FILE.value: str(path),
                            ControlHeader.DIGEST.value: digest})
        try:
            event = await asyncio.wait_for(answer, timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            return False, (f"controller not reachable: no controller answered generation {generation} within "
                           f"{timeout_s:g} s; calls are routed by the configuration it started with until you "
                           "restart it (`hotline run`)")
    finally:
        if callable(off):
            off()
    result, detail = event.get(ControlHeader.RESULT, ""), event.get(ControlHeader.DETAIL, "")
    if result == LOADED:
        return True, f"controller reloaded: generation {generation}"
    if result == RESTART:
        return False, (f"controller needs a restart to take this configuration ({detail}); it keeps the one it "
                       "has until then (Asterisk already runs the new files)")
    return False, f"controller refused generation {generation}: {detail}; it keeps the configuration it has"
