"""Issue "Ready for real traffic" item 5: prompts reach Asterisk.

check (and apply --dry-run, the same check) fails on a prompt the running Asterisk cannot play and
apply could not build; apply builds what is missing and installs it where Asterisk plays it;
`hotline prompts` installs what it builds into this machine's Asterisk.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import wave
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ivr.prompts
from admin import apply as admin_apply
from admin import check as admin_check
from ivr.prompts import all_prompt_ids, missing_prompts, output_path
from model.loading import default_config_path, load_located
from routing.dialplan import Layout

SHIPPED = default_config_path()


def write_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 800)


class SoundSandbox:
    """An Asterisk etc dir and sounds dir in tmp; install_sounds copies like Sandbox.install_sounds."""

    def __init__(self, root: Path) -> None:
        self.etc_dir = root / "etc"
        self.etc_dir.mkdir(parents=True)
        self.sounds_dir = root / "sounds"
        self.layout = Layout()

    def install_config(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            (self.etc_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (self.etc_dir / name).write_text(text, encoding="utf-8")

    def install_sounds(self, built: Path) -> None:
        shutil.copytree(built, self.sounds_dir / "hotline", dirs_exist_ok=True)


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> Any:
    lo = load_located(SHIPPED)
    assert lo.config is not None
    for ext, seat in lo.config.seats.items():
        if seat.secret_env:
            monkeypatch.setenv(seat.secret_env, f"seat-{ext}-secret-Xq7-for-tests")
    monkeypatch.setenv("HOTLINE_AMI_SECRET", "ami-secret-for-tests")
    return lo


def with_new_announcement(cfg: Any) -> Any:
    new = cfg.model_copy(deep=True)
    new.prompts["notice_new_2026"] = "新的公告"
    return new


def install_all_but(cfg: Any, sounds: Path, *skip: str) -> None:
    for pid in all_prompt_ids(cfg):
        if pid not in skip:
            write_wav(output_path(sounds, pid))


def no_espeak(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which
    monkeypatch.setattr(ivr.prompts.shutil, "which", lambda name, *a, **k: None if name == "espeak-ng" else real(name))


def test_check_fails_on_a_prompt_asterisk_cannot_play_and_nothing_can_build(loaded: Any, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = with_new_announcement(loaded.config)
    sounds = tmp_path / "sounds" / "hotline"
    install_all_but(cfg, sounds, "notice_new_2026", "silence/300ms")  # a missing silence: apply always builds it
    no_espeak(monkeypatch)
    problems = admin_check.check_config(cfg, file="x.yaml", sounds_dir=sounds, recordings_dir=tmp_path / "rec",
                                        custom_dir=tmp_path)
    bad = [p for p in problems if p.field.startswith("prompts.")]
    assert [p.field for p in bad] == ["prompts.notice_new_2026"] and "cannot be played" in bad[0].message
    # an admin recording, or espeak-ng, lets apply build it: then it is no problem
    write_wav(tmp_path / "rec" / "prompts" / "notice_new_2026.wav")
    assert not [p for p in admin_check.check_config(cfg, file="x.yaml", sounds_dir=sounds,
                                                    recordings_dir=tmp_path / "rec", custom_dir=tmp_path)
                if p.field.startswith("prompts.")]


def test_check_and_apply_dry_run_agree_on_an_unplayable_prompt(loaded: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = with_new_announcement(loaded.config)
    sb = SoundSandbox(tmp_path / "root")
    install_all_but(cfg, sb.sounds_dir / "hotline", "notice_new_2026")
    no_espeak(monkeypatch)
    custom = tmp_path / "custom"
    custom.mkdir()
    dry = asyncio.run(admin_apply.apply_config(cfg, sb, None, dry_run=True, custom_dir=custom))
    checked = admin_check.check_config(cfg, custom_dir=custom, sounds_dir=sb.sounds_dir / "hotline")
    prompts = lambda ps: sorted(str(p) for p in ps if p.field.startswith("prompts."))  # noqa: E731
    assert prompts(dry.problems) == prompts(checked) == [
        p for p in prompts(checked) if "notice_new_2026" in p] and prompts(checked)
    assert not dry.ok and dry.failed_step == "check"


def test_apply_builds_missing_prompts_and_installs_them_where_asterisk_plays(loaded: Any, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_admin import FakeAmi

    cfg = with_new_announcement(loaded.config)
    sb = SoundSandbox(tmp_path / "root")
    install_all_but(cfg, sb.sounds_dir / "hotline", "notice_new_2026")
    built: list[Path] = []

    def fake_build(config: Any, recordings: Path, out: Path, **kw: Any) -> Any:
        for pid in all_prompt_ids(config):
            write_wav(output_path(out, pid))
        built.append(out)
        return ivr.prompts.BuildReport()

    monkeypatch.setattr(admin_apply, "build_prompts", fake_build)
    custom = tmp_path / "custom"
    custom.mkdir()
    res = asyncio.run(admin_apply.apply_config(cfg, sb, FakeAmi(cfg), dry_run=False, custom_dir=custom,
                                               prompts_build_dir=tmp_path / "built", backup_root=tmp_path / "b"))
    assert res.ok, res.message
    assert built == [tmp_path / "built"]
    assert missing_prompts(cfg, sb.sounds_dir / "hotline") == []
    step = next(s for s in res.steps if s.name == "prompts")
    assert step.ok and "notice_new_2026" in step.detail
    # nothing missing: no build the next time
    again = asyncio.run(admin_apply.apply_config(cfg, sb, FakeAmi(cfg), dry_run=False, custom_dir=custom,
                                                 prompts_build_dir=tmp_path / "built"))
    assert again.ok and built == [tmp_path / "built"]


def test_apply_refuses_when_a_prompt_cannot_be_built_and_writes_nothing(loaded: Any, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_admin import FakeAmi

    cfg = with_new_announcement(loaded.config)
    sb = SoundSandbox(tmp_path / "root")
    install_all_but(cfg, sb.sounds_dir / "hotline", "notice_new_2026")
    def failing_build(config: Any, recordings: Path, out: Path, **kw: Any) -> Any:
        out.mkdir(parents=True, exist_ok=True)
        return ivr.prompts.BuildReport(failed={"notice_new_2026": "boom"})

    monkeypatch.setattr(admin_apply, "build_prompts", failing_build)
    custom = tmp_path / "custom"
    custom.mkdir()
    res = asyncio.run(admin_apply.apply_config(cfg, sb, FakeAmi(cfg), dry_run=False, custom_dir=custom,
                                               prompts_build_dir=tmp_path / "built"))
    assert not res.ok and res.failed_step == "prompts" and "notice_new_2026: boom" in res.message
    assert not list(sb.etc_dir.iterdir())


def test_hotline_prompts_installs_into_the_local_asterisk(loaded: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from hotline import cli

    sb = SoundSandbox(tmp_path / "root")
    monkeypatch.setattr(cli, "STATE", tmp_path / "state")
    monkeypatch.setattr(cli.Sandbox, "discover", classmethod(lambda cls, **kw: sb))

    def fake_build(config: Any, recordings: Path, out: Path, **kw: Any) -> Any:
        for pid in all_prompt_ids(config):
            write_wav(output_path(out, pid))
        return ivr.prompts.BuildReport()

    monkeypatch.setattr(cli, "build_prompts", fake_build)
    r = CliRunner().invoke(cli.main, ["prompts", "-c", str(SHIPPED)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert missing_prompts(loaded.config, sb.sounds_dir / "hotline") == []
    assert str(sb.sounds_dir / "hotline") in r.output
    assert os.path.isdir(tmp_path / "state" / "prompts")
