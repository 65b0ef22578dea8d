"""Issue 6: `apply` against the real Asterisk — a live call survives the reload; a broken config changes nothing."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from admin.apply import apply_config
from hotline.callrobot import CallRobot, wait_ticket
from model.config import Queue
from model.destinations import QueueDest

pytestmark = pytest.mark.e2e


def fingerprint(sb) -> dict[str, str]:
    return {str(p.relative_to(sb.etc_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(sb.etc_dir.rglob("*.conf"))}


def is_event(name: str, **headers: str):
    return lambda e: e.get("Event") == name and all(e.get(k) == v for k, v in headers.items())


async def test_apply_reloads_without_dropping_a_live_call(cfg, asterisk, controller, ami, apply_ami, agents):
    await agents.add("general", talk_s=25)
    robot = await CallRobot(ami, caller="13500000005").dial()
    await robot.wait_step("menu:main", 30)
    await robot.press("1")
    await robot.wait_for(is_event("AgentConnect"), 20)

    changed = cfg.model_copy(deep=True)
    changed.queues["apply_probe"] = Queue(name="应用验证", members=["1003"], overflow=QueueDest(queue="general"))
    changed.queues["general"].max_wait_s = 90
    result = await apply_config(changed, asterisk, apply_ami, dry_run=False)
    assert result.ok, result.message + "\n" + "\n".join(str(p) for p in result.problems)
    assert "queues.conf" in result.changed and "extensions.conf" in result.changed
    assert "hotline-apply_probe" in asterisk.cli("queue show hotline-apply_probe")
    assert "hotline-general,c" in asterisk.cli("dialplan show hotline-queue-general") or \
        ",90)" in asterisk.cli("dialplan show hotline-queue-general")

    # the call in progress is untouched by the reload: still bridged, hangs up only when we say so
    await asyncio.sleep(2)
    assert not robot.hung_up
    assert not [e for e in robot.events if e.get("Event") == "Hangup"]
    await robot.hangup()
    t = await wait_ticket(controller.store, robot.linkedid, 20)
    assert t.outcome == "answered" and (t.talk_s or 0) >= 2

    # put the shipped configuration back for the tests after this one
    restored = await apply_config(cfg, asterisk, apply_ami, dry_run=False)
    assert restored.ok, restored.message


async def test_broken_config_is_refused_and_nothing_changes(cfg, asterisk, apply_ami):
    before_files = fingerprint(asterisk)
    before_plan = asterisk.cli("dialplan show hotline-route")
    broken = cfg.model_copy(deep=True)
    broken.menus["main"].options["3"] = QueueDest(queue="no_such_queue")
    broken.legacy_lines["12315"].merged_on = None
    result = await apply_config(broken, asterisk, apply_ami, dry_run=False)
    assert not result.ok
    assert result.failed_step == "check"
    text = "\n".join(str(p) for p in result.problems)
    assert "no_such_queue" in text and "menus.main.options.3" in text
    assert "12315" in text and "merged_on" in text
    assert fingerprint(asterisk) == before_files
    assert asterisk.cli("dialplan show hotline-route") == before_plan


async def test_apply_reaches_the_controller_a_new_legacy_line_routes_by_its_mode(cfg, asterisk, controller, ami,
                                                                                 apply_ami, agents):
    """Item 4 of "Ready for real traffic": a legacy line added to the config and applied is routed by its mode
    by the running controller (not the 12345 flow for an unknown number), without a restart."""
    from model.config import LegacyLine

    changed = cfg.model_copy(deep=True)
    changed.legacy_lines["12398"] = LegacyLine(name="新增热线", mode="dual_cancelled", category="求助")
    result = await apply_config(changed, asterisk, apply_ami, dry_run=False, reach_controller=True)
    try:
        assert result.ok, result.message + "\n" + "\n".join(str(p) for p in result.problems)
        assert "controller reloaded: generation" in result.message
        assert "12398" in controller.config.legacy_lines

        await agents.add("general", talk_s=1)
        robot = await CallRobot(ami, number="12398", caller="13900004098").dial()
        route = await robot.wait_user_event("HotlineRoute", 15)
        assert route.get("Line") == "12398" and route.get("Mode") == "dual_cancelled", route
        join = await robot.wait_for(is_event("QueueCallerJoin"), 15)
        assert join["Queue"] == "hotline-general"
        await robot.wait_for(is_event("AgentConnect"), 15)
        await robot.hangup()
        t = await wait_ticket(controller.store, robot.linkedid, 20)
        assert t.legacy_line == "12398" and t.mode == "dual_cancelled" and t.category == "求助"
        assert not t.ivr_path  # not the 12345 menu an unknown number gets
    finally:
        restored = await apply_config(cfg, asterisk, apply_ami, dry_run=False, reach_controller=True)
        assert restored.ok, restored.message
        assert "12398" not in controller.config.legacy_lines
