"""What every `hotline` command shares: exit codes, the --config option, loading, logging, failing politely.

Exit codes: 0 ok, 1 the thing checked or asked for is wrong or failed (bad config, no such
ticket, failed call), 2 usage error (click's own), 3 the environment lacks something
(not root, no Asterisk, store or AMI unreachable). Errors are explained, never dumped as
tracebacks.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click
import structlog
import uvloop

from model.config import Config
from model.loading import Problem, default_config_path, load_located
from model.secrets import state_dir

EXIT_OK, EXIT_BAD, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3

#: machine state: prompts, the generated AMI secret, the default SQLite store
STATE = state_dir()

config_option = click.option("--config", "-c", "config_path", metavar="FILE",
                             help="hotline YAML (default: $HOTLINE_CONFIG or config/hotline.yaml)")
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


class EnvironmentMissing(RuntimeError):
    """Something outside the config is missing (a secret, an Asterisk, a store): the command exits 3."""


#: set by `explained` while a command given --json runs: every failure is then printed as JSON too
_json_mode = False


def fail(message: str, code: int = EXIT_BAD, problems: list[Problem] | None = None) -> NoReturn:
    """Explain and exit; under --json the same explanation is also printed as JSON on stdout."""
    if _json_mode:
        dump({"ok": False, "error": message, "exit_code": code,
              "problems": [{"file": p.file, "line": p.line, "field": p.field, "message": p.message, "text": str(p)}
                           for p in problems or []]})
    click.echo(message, err=True)
    sys.exit(code)


def setup_logging(json_logs: bool = True, level: int = logging.INFO, *, cache_loggers: bool = False) -> None:
    """structlog JSON lines on stderr: stable event names, masked personal data.

    `cache_loggers`: each module's logger is built once, at its first line, instead of at every line
    (several per call in the controller). Only for a process of its own that configures logging once,
    first (`hotline run`): a command run inside another program (tests' CliRunner swaps stderr) must not
    keep loggers bound to a stream that goes away."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.format_exc_info,
    ]
    processors.append(structlog.processors.JSONRenderer(ensure_ascii=False) if json_logs
                      else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(processors=processors, wrapper_class=structlog.make_filtering_bound_logger(level),
                        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
                        cache_logger_on_first_use=cache_loggers)


#: the controller's event loop: `uvloop` (the default) or `asyncio` (asyncio's own); bench/RESULTS.md measures
#: what uvloop buys: about 5-10 % of the controller's CPU per real call (within single runs' spread), 22-30 % of
#: the FastAGI server's
EVENT_LOOP_ENV = "HOTLINE_EVENT_LOOP"


def event_loop_factory() -> Callable[[], Any] | None:
    """The loop factory `$HOTLINE_EVENT_LOOP` asks for (None: asyncio's own); exit 2 for an unknown one."""
    choice = os.environ.get(EVENT_LOOP_ENV, "uvloop").strip().lower() or "uvloop"
    if choice == "asyncio":
        return None
    if choice != "uvloop":
        fail(f"${EVENT_LOOP_ENV}={choice!r}: expected 'uvloop' (the default) or 'asyncio'", EXIT_USAGE)
    return uvloop.new_event_loop


def config_path(path: str | None) -> Path:
    return Path(path) if path else default_config_path()


def print_problems(problems: list[Problem], head: str) -> None:
    click.echo(f"{head}: {len(problems)} problem(s):", err=True)
    for p in problems:
        click.echo(f"  {p}", err=True)


def load(path: str | None) -> Config:
    """The configuration a command needs: a missing file exits 3, every problem of a bad one is listed, exit 1."""
    return load_with_lines(path)[0]


def load_with_lines(path: str | None) -> tuple[Config, str, dict[tuple[Any, ...], int]]:
    """`load`, plus the file name and its YAML line map (for commands that locate problems)."""
    p = config_path(path)
    if not p.exists():
        fail(f"The configuration file {p} does not exist (give one with -c FILE or $HOTLINE_CONFIG)", EXIT_ENV)
    loaded = load_located(p)
    if loaded.config is None:
        print_problems(loaded.problems, f"The configuration {p} cannot be used")
        if _json_mode:
            fail(f"The configuration {p} cannot be used: {len(loaded.problems)} problem(s)", EXIT_BAD,
                 loaded.problems)
        sys.exit(EXIT_BAD)
    cfg = loaded.config
    node = os.environ.get("HOTLINE_NODE")
    if cfg.cluster is not None and node:
        # one node of the cluster: its SIP address, AMI port and systemname (docs/cluster.md)
        try:
            cfg = cfg.for_node(node)
        except KeyError as e:
            fail(f"$HOTLINE_NODE: {e.args[0]}", EXIT_BAD)
    return cfg, loaded.file, loaded.lines


def explained(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any unexpected error into one explained line and exit 1 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _json_mode
        _json_mode = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except (SystemExit, click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except KeyboardInterrupt:
            fail("interrupted", EXIT_BAD)
        except EnvironmentMissing as e:
            fail(str(e), EXIT_ENV)
        except Exception as e:  # noqa: BLE001 - the user gets an explanation, not a traceback
            fail(f"{fn.__name__.removesuffix('_cmd')} failed: {type(e).__name__}: {e}", EXIT_BAD)
        finally:
            _json_mode = False

    return wrapper


def jsonable(v: Any) -> Any:
    """Plain JSON values from what our commands print: dataclass rows, dates, enums, paths."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, Path):
        return str(v)
    return v


def dump(data: Any) -> None:
    click.echo(json.dumps(jsonable(data), ensure_ascii=False, indent=2))
