"""`hotline qa` (质检 over transcribed calls) and `hotline speech check FILE.wav` (what a model hears).

Thin: the scoring is ticketbridge/quality.py, the decoding ivr/transcribe.py. `transcript_lines` is what
`hotline tickets show` prints under "transcript:" (ticketbridge.transcript.transcript_lines). Transcripts are printed to the person who asked (the
store's reader), never logged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from hotline.cli_base import json_option, load
from hotline.cli_tickets import _echo_json, _plain, _setup_logs, parse_when, store_options, with_store
from ticketbridge.quality import by_agent, score_call
from ticketbridge.transcript import from_json


def register(main: click.Group) -> None:
    main.add_command(qa_cmd)
    main.add_command(speech)


@click.command("qa")
@click.option("--since", default=None, help="from (YYYY-MM-DD[THH:MM], Beijing time; default: everything)")
@click.option("--until", default=None, help="to (exclusive; a bare date includes that day)")
@click.option("--agent", default=None, help="only this agent's calls")
@click.option("--by", "by", type=click.Choice(["call", "agent"]), default="agent",
              help="one line per agent (default) or per call with what failed")
@json_option
@store_options
def qa_cmd(config_path: str | None, store_url: str | None, since: str | None, until: str | None,
           agent: str | None, by: str, as_json: bool) -> None:
    """质检: transcribed calls scored by the rules of transcripts.qa, per agent or per call."""
    _setup_logs()
    lo, hi = parse_when(since), parse_when(until, end=True)

    @with_store
    async def run(store: Any, cfg: Any) -> tuple[list[Any], Any]:
        return await store.transcripts(since=lo, until=hi, agent=agent), cfg

    rows, cfg = run(config_path=config_path, store_url=store_url)
    rules = cfg.transcripts.qa
    scores = []
    for r in rows:
        t = from_json(r.transcript)
        if t is not None:
            scores.append(score_call(t, rules, ticket_no=r.ticket_no, agent=r.agent))
    agents = by_agent(scores)
    if as_json:
        _echo_json({"since": _plain(lo), "until": _plain(hi),
                    "calls": [{"ticket_no": s.ticket_no, "agent": s.agent, "score": s.score,
                               "findings": [{"check": f.check, "detail": f.detail, "points": f.points}
                                            for f in s.findings]} for s in scores],
                    "agents": [{"agent": a.agent, "calls": a.calls, "mean": round(a.mean, 1), "failed": a.failed}
                               for a in agents]})
        return
    if not scores:
        click.echo("no transcribed calls")
        return
    if by == "call":
        for s in scores:
            what = "; ".join(f"{f.check}: {f.detail}" for f in s.findings) or "all checks passed"
            click.echo(f"{s.ticket_no:<13} {s.agent or '-':<8} {s.score:>5.0f}  {what}")
        return
    click.echo(f"{'agent':<10}{'calls':>6}{'mean':>7}  failed checks")
    for a in agents:
        failed = ", ".join(f"{k} ×{v}" for k, v in sorted(a.failed.items())) or "-"
        click.echo(f"{a.agent:<10}{a.calls:>6}{a.mean:>7.1f}  {failed}")


@click.group()
def speech() -> None:
    """Speech recognition (vosk): check a model on a recording."""


@speech.command("check")
@click.argument("wav", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="the vosk model directory (default: transcripts.model, else speech.model of the config)")
@click.option("--grammar", default=None, help="only these comma-separated phrases (vosk's runtime grammar)")
@click.option("--config", "config_path", default=None, help="the hotline YAML")
@json_option
def speech_check(wav: Path, model_dir: Path | None, grammar: str | None, config_path: str | None,
                 as_json: bool) -> None:
    """Print what the model hears in WAV: each utterance with its start and end (s) and confidence."""
    from ivr.speech import grammar_phrases
    from ivr.transcribe import decode_file, load_model

    if model_dir is None:
        cfg = load(config_path)
        m = cfg.transcripts.model or cfg.speech.model
        if not m:
            raise click.UsageError("no model: give --model DIR or set speech.model in the config")
        model_dir = Path(m).expanduser()
    if not (model_dir / "am" / "final.mdl").is_file() and not (model_dir / "final.mdl").is_file():
        raise click.UsageError(f"{model_dir}: not a vosk model (no am/final.mdl)")
    t0 = time.monotonic()
    model = load_model(model_dir)
    t1 = time.monotonic()
    phrases = grammar_phrases(grammar.split(",")) if grammar else None
    utts, duration = decode_file(model, wav, phrases)
    t2 = time.monotonic()
    if as_json:
        _echo_json({"file": str(wav), "duration_s": round(duration, 2), "load_s": round(t1 - t0, 2),
                    "decode_s": round(t2 - t1, 2), "utterances": utts})
        return
    click.echo(f"{wav}: {duration:.2f} s of audio, model loaded in {t1 - t0:.2f} s, decoded in {t2 - t1:.2f} s "
               f"({(t2 - t1) / duration if duration else 0:.2f}× real time)")
    if not utts:
        click.echo("  (nothing recognised)")
    for u in utts:
        click.echo(f"  {u['start']:7.2f}-{u['end']:7.2f}  conf {u['conf']:.2f}  {u['text']}")
