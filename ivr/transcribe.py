"""Decoding a recording into timed utterances with vosk (for transcripts and `hotline speech check`).

`decode_utterances` is the blocking core: one vosk result per utterance (vosk ends one at a pause),
each with its words' times (SetWords), so an utterance starts at its first word and ends at its last.
`transcribe_pair` runs in a worker process (hotline/transcriber.py's pool; `init_worker` loads the model
once per process and lowers its CPU priority): calls never share a core's time with it unless it is idle.
Nothing here logs what was said.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivr.speech import normalise_text, read_wav_pcm

if TYPE_CHECKING:
    import vosk

_CHUNK_BYTES = 8000
#: the model a worker process loaded (init_worker)
_MODEL: Any = None


def load_model(path: str | os.PathLike[str]) -> vosk.Model:
    import vosk

    vosk.SetLogLevel(-1)
    return vosk.Model(str(path))


def _utterance(seg: dict[str, Any]) -> dict[str, Any] | None:
    words = seg.get("result") or []
    text = normalise_text(seg.get("text", ""))
    if not text or not words:
        return None
    confs = [float(w.get("conf", 0.0)) for w in words]
    return {"start": round(float(words[0]["start"]), 2), "end": round(float(words[-1]["end"]), 2),
            "text": text, "conf": round(sum(confs) / len(confs), 3),
            "words": [{"w": w.get("word", ""), "start": round(float(w["start"]), 2),
                       "end": round(float(w["end"]), 2)} for w in words]}


def decode_utterances(model: vosk.Model, pcm: bytes, rate: int, grammar: list[str] | None = None
                      ) -> list[dict[str, Any]]:
    """Utterances of 16-bit mono PCM: dicts of start, end (s from the audio's start), text, conf, words.
    `grammar`: only these phrases (and "[unk]") are recognised — vosk's runtime grammar."""
    import vosk

    rec = (vosk.KaldiRecognizer(model, float(rate), json.dumps(grammar, ensure_ascii=False))
           if grammar else vosk.KaldiRecognizer(model, float(rate)))
    rec.SetWords(True)
    pcm = pcm[: len(pcm) // 2 * 2]
    out: list[dict[str, Any]] = []
    for i in range(0, len(pcm), _CHUNK_BYTES):
        if rec.AcceptWaveform(pcm[i: i + _CHUNK_BYTES]):
            u = _utterance(json.loads(rec.Result()))
            if u:
                out.append(u)
    u = _utterance(json.loads(rec.FinalResult()))
    if u:
        out.append(u)
    return out


def decode_file(model: vosk.Model, path: str | os.PathLike[str], grammar: list[str] | None = None
                ) -> tuple[list[dict[str, Any]], float]:
    """Utterances of a recording and its length in seconds."""
    pcm, rate = read_wav_pcm(path)
    return decode_utterances(model, pcm, rate, grammar), len(pcm) / 2 / rate if rate else 0.0


def init_worker(model_path: str, nice: int) -> None:
    """A transcription worker process starts: lower priority, then load the model once."""
    global _MODEL
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    _MODEL = load_model(model_path)


def transcribe_pair(caller_file: str, agent_file: str) -> dict[str, Any]:
    """Both directions of a call (in a worker process): {"caller": [...], "agent": [...], "duration_s"}.
    A missing side (the file was never written) is an empty list."""
    out: dict[str, Any] = {"duration_s": 0.0}
    for side, f in (("caller", caller_file), ("agent", agent_file)):
        if Path(f).is_file() and Path(f).stat().st_size > 44:
            utts, dur = decode_file(_MODEL, f)
            out[side] = utts
            out["duration_s"] = max(out["duration_s"], round(dur, 2))
        else:
            out[side] = []
    return out
