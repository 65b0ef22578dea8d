"""Prompt building with the real espeak-ng and pydub, on a tiny config so it stays quick."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from pydub import AudioSegment
from pydub.generators import Sine

from model.loading import parse_config
from ivr import prompts as P

# in CI a missing espeak-ng is a failure (scripts/bootstrap installs it), never a silent skip
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None and not IN_CI, reason="needs Debian's espeak-ng")

CONFIG = """
prompts:
  greeting: 您好，这里是12345政务服务便民热线。
  connecting: 正在为您转接人工服务，请稍候。
queues:
  general: {name: 综合受理}
"""


def tiny_config(text: str = CONFIG):
    return parse_config(text)


def every_prompt() -> set[str]:
    """What a build of the tiny config makes: its texts, the digits, the busy reasons and the notice's silence."""
    return {"greeting", "connecting", *P.DIGIT_PROMPTS, *P.agent_reason_prompts(tiny_config()), "silence/300ms"}


def wav_info(path: Path) -> tuple[bytes, int, int, int, int]:
    """(raw header bytes, rate, channels, sample width, frames) read with the stdlib, not pydub."""
    with wave.open(str(path), "rb") as w:
        return path.read_bytes()[:44], w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


def assert_asterisk_wav(path: Path, min_s: float = 0.15) -> AudioSegment:
    header, rate, ch, width, frames = wav_info(path)
    assert header[:4] == b"RIFF" and header[8:12] == b"WAVE" and header[12:16] == b"fmt "
    assert int.from_bytes(header[20:22], "little") == 1  # PCM
    assert int.from_bytes(header[22:24], "little") == 1  # mono
    assert int.from_bytes(header[24:28], "little") == 8000
    assert int.from_bytes(header[34:36], "little") == 16
    assert header[36:40] == b"data"
    assert (rate, ch, width) == (8000, 1, 2)
    assert frames / rate >= min_s
    seg = AudioSegment.from_wav(str(path))
    assert seg.rms > 300, "not silence"
    return seg


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One cold build shared by the read-only tests."""
    root = tmp_path_factory.mktemp("prompts")
    seen: list[tuple[int, int, str, str]] = []
    report = P.build_prompts(tiny_config(), root / "rec", root / "out", progress=lambda *a: seen.append(a))
    return root, report, seen


def test_every_prompt_and_digit_is_a_valid_8k_mono_wav(built):
    root, report, _ = built
    assert report.ok, report.failed
    assert set(report.built) == every_prompt()
    greeting = assert_asterisk_wav(root / "out" / "greeting.wav", min_s=2.0)
    assert len(greeting) > 2000
    for d in "0123456789":
        assert_asterisk_wav(root / "out" / "digits" / f"{d}.wav")
    assert P.missing_prompts(tiny_config(), root / "out") == []
    # Asterisk runs as its own user: the files must be world-readable
    assert (root / "out" / "greeting.wav").stat().st_mode & 0o044 == 0o044


def test_progress_counts_every_prompt_once(built):
    _, report, seen = built
    assert [s[0] for s in seen] == list(range(1, report.total + 1))
    assert {s[1] for s in seen} == {report.total}
    assert {s[2] for s in seen} == every_prompt()
    assert {s[3] for s in seen} == {"built"}


def test_rebuild_reuses_the_cache_and_changed_text_rebuilds(tmp_path):
    rec, out = tmp_path / "rec", tmp_path / "out"
    P.build_prompts(tiny_config(), rec, out)
    mtime = (out / "greeting.wav").stat().st_mtime_ns
    again = P.build_prompts(tiny_config(), rec, out)
    assert again.built == [] and again.recorded == []
    assert set(again.reused) == every_prompt()
    assert (out / "greeting.wav").stat().st_mtime_ns == mtime

    changed = tiny_config(CONFIG.replace("请稍候。", "请稍候，谢谢您的耐心等待。"))
    third = P.build_prompts(changed, rec, out)
    assert third.built == ["connecting"]
    assert "greeting" in third.reused

    forced = P.build_prompts(changed, rec, out, force=True)
    assert len(forced.built) == forced.total


def test_a_damaged_output_is_rebuilt(tmp_path):
    rec, out = tmp_path / "rec", tmp_path / "out"
    P.build_prompts(tiny_config(), rec, out)
    (out / "greeting.wav").write_bytes(b"not a wav")
    assert P.missing_prompts(tiny_config(), out) == ["greeting"]
    report = P.build_prompts(tiny_config(), rec, out)
    assert report.built == ["greeting"]
    assert_asterisk_wav(out / "greeting.wav")


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_an_admin_recording_wins_over_tts(tmp_path, ext):
    rec, out = tmp_path / "rec", tmp_path / "out"
    (rec / "prompts").mkdir(parents=True)
    tone = Sine(440, sample_rate=44100).to_audio_segment(duration=1234, volume=-6).set_channels(2)
    tone.export(str(rec / "prompts" / f"connecting.{ext}"), format=ext)

    report = P.build_prompts(tiny_config(), rec, out)
    assert report.recorded == ["connecting"]
    assert "connecting" not in report.built
    seg = assert_asterisk_wav(out / "connecting.wav")
    assert abs(len(seg) - 1234) <= 5  # the tone's length, not the ~3 s sentence espeak would say

    # the recording's mtime/size are part of the cache key: unchanged → reused, replaced → reconverted
    assert P.build_prompts(tiny_config(), rec, out).reused.count("connecting") == 1
    shorter = Sine(440, sample_rate=8000).to_audio_segment(duration=600)
    shorter.export(str(rec / "prompts" / f"connecting.{ext}"), format=ext)
    assert P.build_prompts(tiny_config(), rec, out).recorded == ["connecting"]
    assert abs(len(AudioSegment.from_wav(str(out / "connecting.wav"))) - 600) <= 5

    # the admin removes the recording: back to TTS
    (rec / "prompts" / f"connecting.{ext}").unlink()
    assert P.build_prompts(tiny_config(), rec, out).built == ["connecting"]


def test_missing_espeak_ng_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(P.EspeakMissingError, match=r"Debian package 'espeak-ng'") as e:
        P.build_prompts(tiny_config(), tmp_path / "rec", tmp_path / "out")
    # every text needs it; the silence does not
    assert f"{2 + len(P.DIGIT_PROMPTS) + len(P.agent_reason_prompts(tiny_config()))} prompt(s) need synthesis" in str(e.value)
    assert not (tmp_path / "out" / "greeting.wav").exists()


def test_prompts_already_built_need_no_espeak_ng(tmp_path, monkeypatch):
    P.build_prompts(tiny_config(), tmp_path / "rec", tmp_path / "out")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    report = P.build_prompts(tiny_config(), tmp_path / "rec", tmp_path / "out")
    assert report.ok and report.built == []


def test_bad_prompt_ids_and_empty_text_fail_alone(tmp_path):
    cfg = tiny_config(CONFIG.replace("prompts:\n", "prompts:\n  ../evil: 你好\n  blank: '  '\n  '空': 你好\n"))
    report = P.build_prompts(cfg, tmp_path / "rec", tmp_path / "out")
    assert set(report.failed) == {"../evil", "空", "blank"}
    assert "greeting" in report.built
    assert not (tmp_path / "evil.wav").exists()


def test_names_and_digits():
    assert P.PROMPT_PREFIX == "hotline/"
    assert P.sound_name("greeting") == "hotline/greeting"
    assert P.say_digits_files("305") == ["hotline/digits/3", "hotline/digits/0", "hotline/digits/5"]
    assert P.say_digits_files("2.5") == ["hotline/digits/2", "hotline/digits/point", "hotline/digits/5"]
    assert P.say_digits_files("2026-01") == P.say_digits_files("202601")
    assert P.say_digits_files("") == []
    # with a gap: the generated silence between every two digits, none before or after
    assert P.say_digits_files("2.05", 0.3) == ["hotline/digits/2", "hotline/silence/300ms", "hotline/digits/point",
                                               "hotline/silence/300ms", "hotline/digits/0", "hotline/silence/300ms",
                                               "hotline/digits/5"]
    assert P.say_digits_files("7", 0.3) == ["hotline/digits/7"]
    assert P.say_digits_files("305", 0) == P.say_digits_files("305")
    assert P.silence_prompt(1.25) == "silence/1250ms" and P.silence_prompt(0.0004) is None


def test_the_digit_gap_is_a_built_silence_of_its_length_and_needs_no_espeak(built, tmp_path, monkeypatch):
    root, _, _ = built
    header, rate, ch, width, frames = wav_info(root / "out" / "silence" / "300ms.wav")
    assert (rate, ch, width, frames) == (8000, 1, 2, 2400)  # 0.3 s
    assert set((root / "out" / "silence" / "300ms.wav").read_bytes()[44:]) == {0}  # nothing but silence
    assert P.missing_prompts(tiny_config(), root / "out") == []
    # the gap follows the config; a silence is generated, never spoken: no espeak-ng needed for it
    rec, out = tmp_path / "rec", tmp_path / "out"
    P.build_prompts(tiny_config(), rec, out)
    slower = tiny_config(CONFIG + "ticket_notice: {digit_gap_s: 0.75}\n")
    assert P.missing_prompts(slower, out) == ["silence/750ms"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert P.unplayable_prompts(slower, out, rec) == []  # apply can always build a silence
    report = P.build_prompts(slower, rec, out)
    assert report.built == ["silence/750ms"] and wav_info(out / "silence" / "750ms.wav")[4] == 6000
    # no gap, no silence to build
    assert P.silence_prompts(tiny_config(CONFIG + "ticket_notice: {digit_gap_s: 0}\n")) == {}


def test_speakable_text_reads_long_numbers_digit_by_digit():
    assert P.speakable_text("请拨打12345。") == "请拨打幺二三四五。"
    assert P.speakable_text("拨打110、119、120") == "拨打幺幺零、幺幺九、幺二零"
    assert P.speakable_text("请按1，10个工作日") == "请按1，10个工作日"


def test_the_recordings_folder_is_where_admin_recordings_are_read_from() -> None:
    """recordings/prompts exists in a fresh clone and is what `hotline prompts` reads (README, Layout)."""
    from ivr.prompts import RECORDINGS

    assert RECORDINGS == Path(__file__).resolve().parents[2] / "recordings"
    assert (RECORDINGS / "prompts").is_dir() and (RECORDINGS / "README.md").is_file()
