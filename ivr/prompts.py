"""Building the audio Asterisk plays: admin recordings win, espeak-ng speaks the rest.

Every prompt id in ``config.prompts`` becomes ``<out_dir>/<id>.wav``, which is
installed as ``<asterisk sounds>/hotline/<id>.wav`` and played as ``hotline/<id>``.

Sources, in order:

1. an admin's recording ``<recordings>/prompts/<id>.(wav|mp3|ogg|flac)`` — a real
   voice always beats a synthetic one;
2. otherwise ``espeak-ng`` speaking the Mandarin text — or, for the prompts of a language path
   (``access.languages``: its offer, prompts and recording notice), that language's voice
   (``en-us`` for English; ``model.config.LANGUAGE_VOICES``).

Both are converted with pydub to what Asterisk's ``wav`` format reads: RIFF/WAVE,
PCM, 8000 Hz, mono, 16-bit signed, written with :mod:`wave` (a canonical 44-byte
header, no extra chunks). Audio is low-passed before downsampling (telephone band,
no aliasing hiss from espeak's fricatives) and peak-normalised so a recorded prompt
and a synthesized one play at the same loudness.

Why the voice is ``cmn-latn-pinyin`` and not ``cmn``: Debian's espeak-ng 1.51 ``cmn``
voice is "Mandarin, latin as English": it turns 您好 into the pinyin ``nin2 hao3``
and then reads *that* as English ("nin two hao three"). ``cmn-latn-pinyin`` reads
the same pinyin as Mandarin. Digit runs of three or more (12345, 110, ticket
numbers) are read digit by digit the way Chinese telephony does (幺二三四五), not
as a quantity (一万二千…); shorter numbers ("按1", "10个工作日") stay as written.

Besides the texts, silences are generated (no speech, nothing to record): ``silence/<ms>ms``,
the ticket notice's pause between two digits (``ticket_notice.digit_gap_s``), so a whole number
is one Playback list instead of a Wait between every two files (none when the gap is 0).

Rebuilds are cheap: each output has a sidecar ``<id>.wav.json`` holding a hash of
what produced it (text, voice, speed; or the recording's name, mtime and size);
when it matches and the wav is present, the prompt is reused. Outputs are written
to a temporary file and renamed, so a running Asterisk never plays half a file.
Prompts dropped from the config are left in place (an admin may still use them).

Why one module (≈540 lines): which prompt ids exist (texts, digits, busy reasons, silences), the
sound names they are played by, where each is built and whether it is there are one set of rules
that the build, `hotline check` and `hotline apply` must read alike; split, the list a check
looks for and the list a build makes could drift.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog

from model.config import Config

if TYPE_CHECKING:
    from pydub import AudioSegment

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_SPEED",
    "DEFAULT_VOICE",
    "DIGIT_PROMPTS",
    "PROMPT_PREFIX",
    "SAMPLE_RATE",
    "BuildReport",
    "EspeakMissingError",
    "Outcome",
    "ProgressCallback",
    "agent_reason_prompt",
    "agent_reason_prompts",
    "all_prompt_ids",
    "all_prompt_texts",
    "build_prompts",
    "is_asterisk_wav",
    "missing_prompts",
    "unplayable_prompts",
    "output_path",
    "say_digits_files",
    "silence_prompt",
    "silence_prompts",
    "sound_name",
    "speakable_text",
]

log = structlog.get_logger(__name__)

#: Asterisk sound names are relative to its sounds dir; our prompts live in ``<sounds>/hotline/``.
PROMPT_PREFIX = "hotline/"
#: What Asterisk's ``wav`` format is: 8 kHz, mono, 16-bit signed PCM.
SAMPLE_RATE = 8000
CHANNELS = 1
SAMPLE_WIDTH = 2
#: See the module docstring: ``cmn`` reads pinyin as English on Debian's espeak-ng 1.51.
DEFAULT_VOICE = "cmn-latn-pinyin"
#: words per minute; espeak's default is 175, slower is clearer over a phone line.
DEFAULT_SPEED = 210
#: admin recording extensions, in the order they are preferred when several exist.
AUDIO_EXTENSIONS = ("wav", "mp3", "ogg", "flac")
#: per-prompt synthesis limit; espeak-ng takes well under a second for a sentence.
ESPEAK_TIMEOUT_S = 30.0
#: bump when the conversion changes so every cached prompt is rebuilt.
_CACHE_VERSION = 1
#: corner of each of the two low-pass poles before going down to 8 kHz (Nyquist 4 kHz):
#: about -4 dB at 3.4 kHz, -8 dB at 6 kHz — a compromise between a dull voice and aliasing.
_LOWPASS_HZ = 4500
_PEAK_HEADROOM_DB = 1.0

_DIGIT_CHARS = "零幺二三四五六七八九"
#: Digit-by-digit speech for numbers (ticket numbers, queue position, wait time).
#: 1 is 幺 (yāo), as Chinese telephony reads digit strings: it never sounds like 七.
DIGIT_PROMPTS: dict[str, str] = {f"digits/{d}": _DIGIT_CHARS[d] for d in range(10)}
DIGIT_PROMPTS |= {"digits/point": "点", "digits/persons": "位", "digits/minutes": "分钟"}

#: generated silences' ids: ``silence/<ms>ms`` (an id of ``prompts:`` there would be overwritten)
_SILENCE_PREFIX = "silence/"

_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
_DIGIT_RUN_RE = re.compile(r"\d{3,}")

Outcome = Literal["built", "reused", "recorded", "failed"]
#: ``progress(done, total, prompt_id, outcome)``, called in the caller's thread once per prompt.
ProgressCallback = Callable[[int, int, str, Outcome], None]

#: the repository's `recordings/` folder: admin recordings in `recordings/prompts/<id>.wav` win over synthesis
RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"


class EspeakMissingError(RuntimeError):
    """Some prompt needs synthesis and espeak-ng is not installed."""


@dataclass
class BuildReport:
    """What one build did. The four groups are disjoint; every prompt id is in exactly one.

    ``built``: synthesized now; ``recorded``: converted now from an admin recording;
    ``reused``: up to date from an earlier build (either source); ``failed``: id → reason.
    """

    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def total(self) -> int:
        return len(self.built) + len(self.reused) + len(self.recorded) + len(self.failed)


# --------------------------------------------------------------------------- names


def sound_name(prompt_id: str) -> str:
    """The name Asterisk's Playback/Background takes: ``hotline/<id>`` (no extension)."""
    return PROMPT_PREFIX + prompt_id


def say_digits_files(number: str, gap_s: float = 0.0) -> list[str]:
    """Sound names that speak ``number`` digit by digit; ``.`` is 点, other characters are skipped;
    with ``gap_s``, the silence of that length (``silence_prompt``) between every two.

    Skipping (rather than raising) keeps a call going when a number carries a
    separator (``2026-0001``); the caller still hears every digit.
    """
    out: list[str] = []
    silence = silence_prompt(gap_s)
    for ch in str(number):
        if "0" <= ch <= "9":
            name = sound_name(f"digits/{ch}")
        elif ch == ".":
            name = sound_name("digits/point")
        else:
            continue
        if out and silence is not None:
            out.append(sound_name(silence))
        out.append(name)
    return out


def silence_prompt(seconds: float) -> str | None:
    """The prompt id of ``seconds`` of generated silence, to the millisecond (``silence/300ms``); None for
    none (under half a millisecond)."""
    ms = round(seconds * 1000)
    return f"{_SILENCE_PREFIX}{ms}ms" if ms > 0 else None


def silence_prompts(config: Config) -> dict[str, int]:
    """The silences to build, prompt id → milliseconds: the ticket notice's pause between two digits."""
    gap = config.ticket_notice.digit_gap_s
    pid = silence_prompt(gap)
    return {} if pid is None else {pid: round(gap * 1000)}


def agent_reason_prompt(digit: str) -> str:
    """The prompt id that says busy reason `digit` of ``agents.busy_reasons`` (played after 已示忙)."""
    return f"agent_reason/{digit}"


def agent_reason_prompts(config: Config) -> dict[str, str]:
    """One prompt per configured busy reason, its word as the text: every reason an agent keys is spoken."""
    return {agent_reason_prompt(d): word for d, word in config.agents.busy_reasons.items()}


def all_prompt_texts(config: Config) -> dict[str, str]:
    """Every prompt to build: the digit prompts and the agents' busy reasons, then ``config.prompts`` (which may
    override them)."""
    return {**DIGIT_PROMPTS, **agent_reason_prompts(config), **config.prompts}


def all_prompt_ids(config: Config) -> list[str]:
    """Every prompt that must be playable: the texts (``all_prompt_texts``) and the generated silences."""
    return [*all_prompt_texts(config), *silence_prompts(config)]


def speakable_text(text: str) -> str:
    """The text espeak-ng gets: digit runs of 3+ become 幺二三四五 so numbers are read as dialed."""
    return _DIGIT_RUN_RE.sub(lambda m: "".join(_DIGIT_CHARS[int(c)] for c in m.group()), text.strip())


def output_path(out_dir: Path, prompt_id: str) -> Path:
    """Where a prompt id is built: ``<out_dir>/<id>.wav`` (ids may hold ``/``, e.g. ``digits/3``)."""
    return out_dir / f"{prompt_id}.wav"


def is_asterisk_wav(path: Path) -> bool:
    """True when ``path`` is a PCM WAV Asterisk's ``wav`` format plays: 8 kHz, mono, 16-bit, some frames."""
    try:
        with wave.open(str(path), "rb") as w:
            return (
                w.getcomptype() == "NONE"
                and w.getframerate() == SAMPLE_RATE
                and w.getnchannels() == CHANNELS
                and w.getsampwidth() == SAMPLE_WIDTH
                and w.getnframes() > 0
            )
    except (OSError, EOFError, wave.Error):
        return False


def missing_prompts(config: Config, out_dir: Path) -> list[str]:
    """Prompt ids (config, digits, silences) without a playable ``<out_dir>/<id>.wav``; for ``hotline check``."""
    return [pid for pid in all_prompt_ids(config) if not is_asterisk_wav(output_path(Path(out_dir), pid))]


def unplayable_prompts(config: Config, installed_dir: Path, recordings_dir: Path = RECORDINGS,
                       espeak: bool | None = None) -> list[str]:
    """Prompt ids Asterisk cannot play from ``installed_dir`` and `hotline apply` could not build either:
    no admin recording and no espeak-ng (`espeak` None: look for it on PATH); a silence is always built."""
    can_speak = shutil.which("espeak-ng") is not None if espeak is None else espeak
    silences = silence_prompts(config)
    return [pid for pid in missing_prompts(config, installed_dir)
            if not can_speak and pid not in silences and _find_recording(recordings_dir, pid) is None]


# --------------------------------------------------------------------------- build


@dataclass(frozen=True)
class _Job:
    prompt_id: str
    text: str
    out: Path
    recording: Path | None
    key: str
    #: the espeak-ng voice (a language path's prompts speak its language: config.access.prompt_voices)
    voice: str = DEFAULT_VOICE
    #: a generated silence of this many milliseconds (no text, no recording, no espeak-ng)
    silence_ms: int | None = None

    @property
    def sidecar(self) -> Path:
        return self.out.with_name(self.out.name + ".json")


def _find_recording(recordings_dir: Path, prompt_id: str) -> Path | None:
    base = recordings_dir / "prompts"
    for ext in AUDIO_EXTENSIONS:
        for e in (ext, ext.upper()):
            p = base / f"{prompt_id}.{e}"
            if p.is_file():
                return p
    return None


def _speakable(text: str, voice: str) -> str:
    """Mandarin reads digit runs 幺二三; other languages read the text as written."""
    return speakable_text(text) if voice == DEFAULT_VOICE else text.strip()


def _cache_key(text: str, recording: Path | None, voice: str, speed: int, silence_ms: int | None = None) -> str:
    fmt = f"{SAMPLE_RATE}/{CHANNELS}/{SAMPLE_WIDTH * 8}"
    src: dict[str, object]
    if silence_ms is not None:
        src = {"kind": "silence", "ms": silence_ms}
    elif recording is not None:
        st = recording.stat()
        src = {"kind": "recording", "file": recording.name, "mtime_ns": st.st_mtime_ns, "size": st.st_size}
    else:
        src = {"kind": "tts", "text": _speakable(text, voice), "voice": voice, "speed": speed}
    blob = json.dumps({"v": _CACHE_VERSION, "format": fmt, **src}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _is_fresh(job: _Job) -> bool:
    try:
        meta = json.loads(job.sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("key") == job.key and is_asterisk_wav(job.out)


def _espeak(espeak: str, text: str, voice: str, speed: int, wav: Path) -> None:
    """Synthesize ``text`` to ``wav``. Text goes on stdin so nothing in it is taken for an option."""
    cmd = [espeak, "-v", voice, "-s", str(speed), "-b", "1", "-w", str(wav), "--stdin"]
    try:
        proc = subprocess.run(
            cmd, input=text.encode("utf-8"), capture_output=True, timeout=ESPEAK_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"espeak-ng timed out after {ESPEAK_TIMEOUT_S:g} s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}"
        raise RuntimeError(f"espeak-ng failed (voice {voice!r}): {err}")


def _to_8k(seg: AudioSegment) -> AudioSegment:
    """Resample mono 16-bit audio to 8 kHz with a two-pole low-pass first.

    pydub's ``set_frame_rate`` interpolates without filtering, so espeak's 4-11 kHz
    fricatives would fold back into the band as hiss; pydub's ``low_pass_filter``
    is a per-sample Python loop (~0.2 s per 10 s of audio, holding the GIL). The
    one-pole filter built into ``audioop.ratecv`` does the same in C.
    """
    from pydub import AudioSegment
    from pydub.utils import audioop

    rate = seg.frame_rate
    if rate == SAMPLE_RATE:
        return seg
    data = seg.raw_data
    if rate > SAMPLE_RATE:
        # y += a (x - y), a = A / (A + B): a one-pole RC low-pass at _LOWPASS_HZ for this rate
        a, b = 1000, max(1, round(1000 * rate / (2 * math.pi * _LOWPASS_HZ)))
        data, _ = audioop.ratecv(data, SAMPLE_WIDTH, CHANNELS, rate, rate, None, a, b)
        data, _ = audioop.ratecv(data, SAMPLE_WIDTH, CHANNELS, rate, SAMPLE_RATE, None, a, b)
    else:
        data, _ = audioop.ratecv(data, SAMPLE_WIDTH, CHANNELS, rate, SAMPLE_RATE, None)
    return AudioSegment(data=data, sample_width=SAMPLE_WIDTH, frame_rate=SAMPLE_RATE, channels=CHANNELS)


def _write_wav(dst: Path, frames: bytes) -> None:
    """Write Asterisk's wav (8 kHz mono 16-bit PCM) to ``dst`` atomically, readable by Asterisk."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh, wave.open(fh, "wb") as w:
            w.setnchannels(CHANNELS)
            w.setsampwidth(SAMPLE_WIDTH)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(frames)
        tmp.chmod(0o644)  # mkstemp makes 0600; Asterisk runs as its own user and must read it
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _silence(dst: Path, ms: int) -> None:
    """``ms`` milliseconds of digital silence as Asterisk's wav at ``dst``."""
    _write_wav(dst, bytes(SAMPLE_RATE * ms // 1000 * CHANNELS * SAMPLE_WIDTH))


def _convert(src: Path, dst: Path) -> float:
    """Convert any audio pydub reads to Asterisk's wav at ``dst`` (atomically); return seconds of audio."""
    from pydub import AudioSegment, effects  # imported here: pydub warns at import when ffmpeg is absent

    try:
        seg = AudioSegment.from_file(str(src))
    except FileNotFoundError:
        raise RuntimeError(
            f"cannot decode {src.name}: ffmpeg is not installed (Debian package 'ffmpeg'); "
            "or provide the recording as .wav"
        ) from None
    seg = _to_8k(seg.set_channels(CHANNELS).set_sample_width(SAMPLE_WIDTH))
    if len(seg) == 0 or seg.rms == 0:
        raise RuntimeError(f"{src.name} holds no audible audio")
    seg = effects.normalize(seg, headroom=_PEAK_HEADROOM_DB)
    _write_wav(dst, seg.raw_data)
    return len(seg) / 1000.0


def _write_sidecar(job: _Job, source: str) -> None:
    meta = {"key": job.key, "source": source, "text": job.text}
    if job.recording is not None:
        meta["recording"] = job.recording.name
    # a temporary name of its own: another process (a second instance's install, `hotline apply`) may be
    # writing the same prompt's sidecar into the same build directory at this moment
    fd, tmp_name = tempfile.mkstemp(dir=job.sidecar.parent, prefix=f".{job.sidecar.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(meta, ensure_ascii=False, indent=1))
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, job.sidecar)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _run(job: _Job, espeak: str | None, voice: str, speed: int) -> tuple[Outcome, str]:
    """Build one prompt (in a worker thread). Returns (outcome, reason-if-failed)."""
    try:
        if job.silence_ms is not None:
            _silence(job.out, job.silence_ms)
            _write_sidecar(job, "silence")
            return "built", ""
        if job.recording is not None:
            _convert(job.recording, job.out)
            _write_sidecar(job, "recording")
            return "recorded", ""
        text = _speakable(job.text, voice)
        if not text:
            return "failed", "empty text"
        assert espeak is not None  # build_prompts checked before starting
        with tempfile.TemporaryDirectory(prefix="hotline-tts-") as tmpdir:
            raw = Path(tmpdir) / "tts.wav"
            _espeak(espeak, text, voice, speed, raw)
            _convert(raw, job.out)
        _write_sidecar(job, "tts")
        return "built", ""
    except Exception as e:  # one bad prompt must not stop the others
        return "failed", str(e) or type(e).__name__


def build_prompts(
    config: Config,
    recordings_dir: Path,
    out_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    force: bool = False,
    voice: str = DEFAULT_VOICE,
    speed: int = DEFAULT_SPEED,
    workers: int | None = None,
) -> BuildReport:
    """Build ``<out_dir>/<id>.wav`` for every prompt id, digit prompt and silence; see the module docstring.

    Raises :class:`EspeakMissingError` before doing anything when a prompt needs
    synthesis and espeak-ng is not on PATH (prompts that are recorded or already
    built need no espeak-ng). Per-prompt problems land in ``report.failed``.
    ``workers``: parallel syntheses (default: CPU count, at most 4).
    """
    started = time.monotonic()
    recordings_dir, out_dir = Path(recordings_dir), Path(out_dir)
    texts = all_prompt_texts(config)
    silences = silence_prompts(config)
    voices = config.access.prompt_voices() if voice == DEFAULT_VOICE else {}
    report = BuildReport()
    jobs: list[_Job] = []
    for pid, text in texts.items():
        if pid in silences:  # generated below, whatever text the config gives the id
            continue
        if not _ID_RE.fullmatch(pid) or ".." in pid.split("/"):
            report.failed[pid] = "prompt id must be ASCII letters, digits, '_', '-', '.' (it becomes a file name)"
            continue
        rec = _find_recording(recordings_dir, pid)
        v = voices.get(pid, voice)
        jobs.append(_Job(pid, text, output_path(out_dir, pid), rec, _cache_key(text, rec, v, speed), v))
    for pid, ms in silences.items():
        jobs.append(_Job(pid, "", output_path(out_dir, pid), None, _cache_key("", None, voice, speed, ms),
                         silence_ms=ms))

    todo: list[_Job] = []
    done = 0
    total = len(report.failed) + len(jobs)
    for pid in report.failed:
        done += 1
        if progress:
            progress(done, total, pid, "failed")
    for job in jobs:
        if not force and _is_fresh(job):
            report.reused.append(job.prompt_id)
            done += 1
            if progress:
                progress(done, total, job.prompt_id, "reused")
        else:
            todo.append(job)

    espeak: str | None = None
    need_tts = [j.prompt_id for j in todo if j.recording is None and j.silence_ms is None]
    if need_tts:
        espeak = shutil.which("espeak-ng")
        if espeak is None:
            raise EspeakMissingError(
                f"espeak-ng is not installed or not on PATH, and {len(need_tts)} prompt(s) need synthesis "
                f"({', '.join(need_tts[:5])}{', …' if len(need_tts) > 5 else ''}). "
                "Install the Debian package 'espeak-ng' (apt-get install espeak-ng), "
                f"or record them as {recordings_dir / 'prompts'}/<id>.wav"
            )

    if todo:
        n = workers or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="prompt-build") as pool:
            futures = {pool.submit(_run, job, espeak, job.voice, speed): job for job in todo}
            for fut in as_completed(futures):
                job = futures[fut]
                outcome, reason = fut.result()
                if outcome == "failed":
                    report.failed[job.prompt_id] = reason
                    log.warning("prompt_build_failed", prompt=job.prompt_id, reason=reason)
                else:
                    getattr(report, outcome).append(job.prompt_id)
                done += 1
                if progress:
                    progress(done, total, job.prompt_id, outcome)

    report.seconds = time.monotonic() - started
    log.info(
        "prompts_built",
        built=len(report.built),
        reused=len(report.reused),
        recorded=len(report.recorded),
        failed=len(report.failed),
        seconds=round(report.seconds, 2),
        out_dir=str(out_dir),
    )
    return report

