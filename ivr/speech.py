"""Speech navigation with vosk: what the caller said, and which menu option it names.

Installing the Chinese model (the operator's step; nothing is downloaded by the code):

1. Get the archive ``vosk-model-small-cn-0.22.zip`` from the vosk project's model
   list (alphacephei's "Models" page) on a machine with internet access, and check
   its checksum against that page.
2. Unpack it on the controller host, e.g. to ``/var/lib/hotline12345/vosk-model-small-cn-0.22``;
   the directory must contain ``am/final.mdl``, ``conf/model.conf`` and ``graph/``.
3. Set ``speech: {model: /var/lib/hotline12345/vosk-model-small-cn-0.22}`` in the
   hotline YAML and restart the controller. ``load_recognizer`` returns None (speech
   navigation off, DTMF only) and logs ``speech_model_missing`` while the path is wrong.

The small model (~40 MB, ~0.5 GB RAM once loaded) is the one meant for telephony
servers; the large ``vosk-model-cn-0.22`` is more accurate but needs several GB.

Why an executor: loading a model takes seconds and decoding is CPU work of about
real time; both would stall every other call on the event loop. vosk calls into
C through cffi, which releases the GIL, so decoding in threads runs truly in
parallel with the loop. Decoding uses a dedicated pool bounded to the CPU count:
beyond it, callers queue for a core rather than slowing every call down at once.

Why spaces are removed between Han characters: the Chinese model puts a space
between words (``我 想 投诉``), but keywords are written without (``问一下``)
and the menu engine matches substrings; Korean or Latin spacing is kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import wave
from concurrent.futures import Executor, ThreadPoolExecutor
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from model.config import Config
from ivr.menu import SpeechResult

if TYPE_CHECKING:
    import vosk

__all__ = [
    "SpeechRecognizer",
    "SpeechResult",
    "grammar_phrases",
    "load_recognizer",
    "match_keyword",
    "normalise_text",
    "read_wav_pcm",
]

log = structlog.get_logger(__name__)

#: bytes of 16-bit audio fed to the decoder per call (0.25 s at 8 kHz); vosk wants it in pieces.
_CHUNK_BYTES = 4000
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN_SPACE_RE = re.compile(rf"(?<=[{_HAN}])\s+(?=[{_HAN}])")
_INSTALL_HINT = (
    "unpack vosk-model-small-cn-0.22 (from the vosk project's model list) to a directory holding "
    "am/final.mdl and set speech.model to it; speech navigation stays off until then (DTMF works)"
)


def normalise_text(text: str) -> str:
    """Collapse whitespace, and drop it between two Han characters (``我 想 投诉`` → ``我想投诉``)."""
    return _HAN_SPACE_RE.sub("", " ".join(text.split()))


def match_keyword(text: str, speech_map: dict[str, list[str]]) -> str | None:
    """The option key one of whose words appears in ``text``, ignoring all spaces; None if none does.

    When several match, the word said first wins (the longer word on a tie), the
    same rule as the menu engine, so "投诉 不是 咨询" picks 投诉's key.
    """
    flat = "".join(text.split())
    best: tuple[int, int, str] | None = None
    for key, words in speech_map.items():
        for word in words:
            w = "".join(word.split())
            if not w:
                continue
            at = flat.find(w)
            if at >= 0 and (best is None or (at, -len(w)) < best[:2]):
                best = (at, -len(w), key)
    return best[2] if best else None


def grammar_phrases(words: Sequence[str]) -> list[str]:
    """A vosk runtime grammar for these keywords: each as written, a Han word also character by character
    (a word the model's vocabulary lacks is dropped by vosk, its characters usually are not), and "[unk]"
    so that anything else is heard as unknown rather than forced onto a keyword."""
    out: list[str] = []
    for w in words:
        w = " ".join(w.split())
        if not w:
            continue
        out.append(w)
        flat = "".join(w.split())
        if len(flat) > 1 and all(re.fullmatch(f"[{_HAN}]", c) for c in flat):
            out.append(" ".join(flat))
    return [*dict.fromkeys(out), "[unk]"]


def read_wav_pcm(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """Raw 16-bit mono little-endian PCM and its rate from a recording (what ``RECORD FILE`` wrote).

    The common case (Asterisk's ``wav``: 8 kHz 16-bit mono PCM) is read with the
    stdlib; anything else (stereo, 8-bit, ``wav49``, mp3…) goes through pydub.
    Blocking: call it from an executor, or use :meth:`SpeechRecognizer.recognize_file`.
    """
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as w:
            if w.getcomptype() == "NONE" and w.getnchannels() == 1 and w.getsampwidth() == 2:
                return w.readframes(w.getnframes()), w.getframerate()
    except (wave.Error, EOFError):
        pass
    from pydub import AudioSegment

    seg = AudioSegment.from_file(str(p)).set_channels(1).set_sample_width(2)
    return seg.raw_data, seg.frame_rate


class SpeechRecognizer:
    """One vosk model shared by every call; a fresh KaldiRecognizer per utterance.

    ``await load()`` once at startup (``recognize`` loads on first use otherwise).
    """

    def __init__(self, model_path: str | os.PathLike[str], *, executor: Executor | None = None) -> None:
        self.model_path = Path(model_path)
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=os.cpu_count() or 1, thread_name_prefix="vosk"
        )
        self._model: vosk.Model | None = None
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    async def load(self) -> None:
        """Load the model in the executor (seconds of disk and CPU work); later calls return at once."""
        if self._model is not None:
            return
        async with self._lock:
            if self._model is None:
                loop = asyncio.get_running_loop()
                started = loop.time()
                self._model = await loop.run_in_executor(self._executor, _load_model, str(self.model_path))
                log.info("speech_model_loaded", path=str(self.model_path), seconds=round(loop.time() - started, 2))

    @property
    def supports_grammar(self) -> bool:
        """The model has a runtime graph (graph/Gr.fst + HCLr.fst, as vosk's small models do): a grammar
        limits what it recognises. A big model's static HCLG.fst ignores grammars."""
        g = self.model_path / "graph"
        return (g / "Gr.fst").is_file() and (g / "HCLr.fst").is_file()

    async def recognize(self, pcm: bytes, sample_rate: int = 8000, *, grammar: Sequence[str] = ()) -> SpeechResult:
        """Decode 16-bit mono PCM off the event loop; confidence is the mean word confidence (0.0 for no words).
        `grammar`: the only phrases to recognise (see :func:`grammar_phrases`), when the model supports it."""
        if len(pcm) < 2:
            return SpeechResult("", 0.0)
        await self.load()
        phrases = grammar_phrases(grammar) if grammar and self.supports_grammar else None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._decode, pcm, sample_rate, phrases)

    async def recognize_file(self, path: str | os.PathLike[str], *, grammar: Sequence[str] = ()) -> SpeechResult:
        """Read a recording (see :func:`read_wav_pcm`) and decode it, both off the event loop."""
        await self.load()
        loop = asyncio.get_running_loop()
        pcm, rate = await loop.run_in_executor(self._executor, read_wav_pcm, path)
        return await self.recognize(pcm, rate, grammar=grammar)

    def _decode(self, pcm: bytes, sample_rate: int, phrases: list[str] | None = None) -> SpeechResult:
        import vosk

        rec = (vosk.KaldiRecognizer(self._model, float(sample_rate), json.dumps(phrases, ensure_ascii=False))
               if phrases else vosk.KaldiRecognizer(self._model, float(sample_rate)))
        rec.SetWords(True)
        pcm = pcm[: len(pcm) // 2 * 2]
        segments: list[dict[str, Any]] = []
        for i in range(0, len(pcm), _CHUNK_BYTES):
            if rec.AcceptWaveform(pcm[i : i + _CHUNK_BYTES]):
                segments.append(json.loads(rec.Result()))
        segments.append(json.loads(rec.FinalResult()))
        text = normalise_text(" ".join(s.get("text", "") for s in segments))
        confs = [float(w.get("conf", 0.0)) for s in segments for w in s.get("result", [])]
        if not text or not confs:
            return SpeechResult(text, 0.0)
        return SpeechResult(text, min(1.0, max(0.0, sum(confs) / len(confs))))

    def close(self) -> None:
        """Stop the decoding threads this recognizer made (not an executor that was passed in)."""
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _load_model(path: str) -> vosk.Model:
    import vosk

    vosk.SetLogLevel(-1)  # Kaldi's per-load chatter on stderr; our own log line says it loaded
    return vosk.Model(path)


def load_recognizer(config: Config) -> SpeechRecognizer | None:
    """A recognizer for ``config.speech.model``, or None (speech off, DTMF only) when unset or not there.

    Does not load the model: the controller awaits :meth:`SpeechRecognizer.load` at startup.
    A relative path is taken from the controller's working directory.
    """
    if not config.speech.model:
        log.info("speech_disabled", reason="speech.model is not set")
        return None
    path = Path(config.speech.model).expanduser()
    if not path.is_dir():
        log.warning("speech_model_missing", path=str(path), hint=_INSTALL_HINT)
        return None
    if not (path / "am" / "final.mdl").is_file():
        log.warning("speech_model_missing", path=str(path), reason="no am/final.mdl: not a vosk model", hint=_INSTALL_HINT)
        return None
    return SpeechRecognizer(path)
