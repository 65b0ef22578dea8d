"""`hotline check`: every problem of a configuration at once, each located to file, line and field.

What it adds to the whole-graph validation (routing/graph.py): seat secrets that the
environment cannot supply, prompts without audio, the admin-owned dialplan files in
`dialplans/custom/` (parsed by wire/conf.py), feature codes against what the rendered
features.conf sets, and whether the Asterisk files render at all. Pure apart from
reading those files; prints nothing (the CLI does).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from admin.render_shape import shape_problems
from ivr.prompts import RECORDINGS, missing_prompts, unplayable_prompts
from model.config import Config
from model.contract import CONTEXT_PREFIX
from model.loading import Lines, Problem, line_of, load_located, priority_numbers_path, read_priority_numbers
from model.secrets import SecretMissing, carrier_secret, carrier_secrets, seat_secret, weak_secret
from routing.dialplan import CUSTOM_DIR, Layout, RenderInputs, custom_files, render
from routing.kamailio import render_kamailio
from routing.outbound import carrier_match
from routing.graph import BUILTIN_FEATURES, PICKUP_EXTEN, validate
from ticketbridge.categorize import load_classifier
from ticketbridge.sms import Sealer, SmsRefused
from wire.conf import dialplan_steps, load_tree, parse

#: Contexts under our prefix that the admin owns (README of dialplans/custom). hotline-outbound was one;
#: it is rendered from `outbound:` now (the allow-list), so a custom one is refused like any rendered context.
ADMIN_CONTEXTS: frozenset[str] = frozenset()
OUR_PREFIX = CONTEXT_PREFIX


def secret_problems(config: Config, file: str, lines: Lines, environ: Mapping[str, str] | None = None,
                    installed: Mapping[str, str] | None = None) -> list[Problem]:
    """Per seat: a secret must be configured and readable; an endpoint without one could be registered by anyone.

    `installed`: the seat passwords the running Asterisk already has (admin.apply.installed_seat_secrets);
    apply keeps those when this environment lacks one, so check accepts them too (check and apply agree).
    """
    out: list[Problem] = []
    for ext, seat in config.seats.items():
        if not seat.secret_env and not seat.secret_file:
            continue  # routing.graph reports it (a config problem, not an environment one)
        try:
            value = seat_secret(ext, seat, environ)
        except SecretMissing as e:
            if installed and installed.get(ext):
                continue
            why = str(e).removeprefix(f"seats.{ext}: ")
            if installed is not None:
                why += "; the running Asterisk has no password for this seat either"
            out.append(Problem(file, line_of(lines, "seats", ext), f"seats.{ext}", why))
        else:
            out += weak_secret_problems(config, {ext: value}, file, lines)
    out += shared_secret_problems(config, file, lines)
    for name, c in config.carriers.items():
        if c.auth != "register" or not (c.secret_env or c.secret_file):
            continue  # routing.graph reports a registering carrier without one
        try:
            carrier_secret(name, c, environ)
        except SecretMissing as e:
            out.append(Problem(file, line_of(lines, "carriers", name), f"carriers.{name}",
                               str(e).removeprefix(f"carriers.{name}: ")))
    out += sms_problems(config, file, lines, environ)
    return out


def sms_problems(config: Config, file: str, lines: Lines, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """With `sms.url`: the gateway's token and the key sealing passwords in the outbox must be in the
    environment (`hotline run` refuses to start otherwise; check says so first)."""
    sms = config.sms
    if not sms.enabled:
        return []
    env = os.environ if environ is None else environ
    out: list[Problem] = []
    if sms.token_env and not str(env.get(sms.token_env, "")).strip():
        out.append(Problem(file, line_of(lines, "sms", "token_env"), "sms.token_env",
                           f"${sms.token_env} is not set: the SMS gateway's bearer token"))
    try:
        Sealer.from_env(sms, env)
    except SmsRefused as e:
        out.append(Problem(file, line_of(lines, "sms", "key_env"), "sms.key_env", str(e)))
    return out


def classifier_problems(config: Config, file: str, lines: Lines) -> list[Problem]:
    """`transcripts.classifier` loads (the built-in one always does; a plugin is imported to find out)."""
    t = config.transcripts
    if not t.enabled and t.classifier == "keywords":
        return []
    try:
        load_classifier(t)
    except (LookupError, TypeError) as e:
        return [Problem(file, line_of(lines, "transcripts", "classifier"), "transcripts.classifier", str(e))]
    except Exception as e:  # noqa: BLE001 - the plugin's own factory failed: a finding, not a crash
        return [Problem(file, line_of(lines, "transcripts", "classifier"), "transcripts.classifier",
                        f"factory(settings) failed: {type(e).__name__}: {e}")]
    return []


def weak_secret_problems(config: Config, secrets: Mapping[str, str], file: str, lines: Lines) -> list[Problem]:
    """Seat secrets anyone on the LAN could guess: short, digits only, few distinct characters."""
    out: list[Problem] = []
    for ext, value in secrets.items():
        why = weak_secret(value)
        if why:
            out.append(Problem(file, line_of(lines, "seats", ext), f"seats.{ext}", f"weak SIP secret: {why}"))
    return out


def shared_secret_problems(config: Config, file: str, lines: Lines) -> list[Problem]:
    """Seats naming one secret variable share one password: one leaked phone opens every seat."""
    envs: dict[str, list[str]] = {}
    for ext, seat in config.seats.items():
        if seat.secret_env and not seat.secret_file:
            envs.setdefault(seat.secret_env, []).append(ext)
    out: list[Problem] = []
    for env, exts in envs.items():
        if len(exts) > 1:
            for ext in exts:
                out.append(Problem(file, line_of(lines, "seats", ext), f"seats.{ext}",
                                   f"seats {', '.join(exts)} share ${env}: give each seat its own secret "
                                   f"(e.g. $HOTLINE_SEAT_{ext}_SECRET)"))
    return out


#: Asterisk's DTMF features as our features.conf sets them, by the key that names them there.
BUILTIN_FEATURE_KEYS = {
    "featuremap": ("blindxfer", "atxfer", "disconnect", "automon", "automixmon", "parkcall"),
    "general": ("atxferabort", "atxfercomplete", "atxferthreeway", "atxferswap", "pickupexten"),
}
#: Asterisk's own defaults when features.conf does not set them (features_config.c).
BUILTIN_FEATURE_DEFAULTS = {"blindxfer": "#", "disconnect": "*", "pickupexten": "*8"}


def builtin_features(features_conf: str) -> dict[str, str]:
    """name -> DTMF code of Asterisk's built-in features, read from our rendered features.conf."""
    conf = parse(features_conf, "features.conf")
    out = dict(BUILTIN_FEATURE_DEFAULTS)
    for section, keys in BUILTIN_FEATURE_KEYS.items():
        for sec in conf.sections_named(section):
            for key in keys:
                v = sec.get(key)
                if v is not None:
                    if v:
                        out[key] = v
                    else:
                        out.pop(key, None)
    return out


def feature_code_problems(config: Config, file: str, lines: Lines, features_conf: str | None) -> list[Problem]:
    """One-key codes against the built-ins our rendered features.conf actually sets.

    routing.graph checks codes against each other and Asterisk's defaults; this adds
    what only the rendered file knows (e.g. the attended-transfer keys *1..*4 that
    are live while an agent transfers). Asterisk matches in-call features digit by
    digit, so a code that is a prefix of another (or equal) shadows it.
    """
    known = set(BUILTIN_FEATURES) | {PICKUP_EXTEN}
    builtins = builtin_features(features_conf) if features_conf is not None else {}
    builtins.pop("pickupexten", None)  # dialed, not keyed in a call
    out: list[Problem] = []
    for group in ("transfer_targets", "branch_centers"):
        targets = config.transfer_targets if group == "transfer_targets" else config.branch_centers
        for key, t in targets.items():
            code = t.feature_code
            if not code or not re.fullmatch(r"[0-9*#]+", code):
                continue  # routing.graph reports malformed codes
            fieldpath = f"{group}.{key}.feature_code"
            for name, b in sorted(builtins.items()):
                if b in known or not (code == b or code.startswith(b) or b.startswith(code)):
                    continue
                how = "is" if code == b else ("starts with" if code.startswith(b) else "is the start of")
                out.append(Problem(file, line_of(lines, group, key, "feature_code"), fieldpath,
                                   f"feature code {code} {how} {b}, set as {name} in the rendered features.conf; "
                                   "the shorter code fires first"))
    return out


def _custom_path(name: str, custom_dir: Path) -> str:
    """Map a tree name (custom/x.conf) back to the admin's file, relative to the repo when possible."""
    if name.startswith("custom/"):
        p = custom_dir / name.removeprefix("custom/")
        try:
            return str(p.relative_to(Path.cwd()))
        except ValueError:
            return str(p)
    return name


def custom_problems(files: Mapping[str, str], custom_dir: Path) -> list[Problem]:
    """Admin-owned custom/*.conf: parse errors, and contexts that would merge into ours."""
    out: list[Problem] = []
    ours = load_tree({k: v for k, v in files.items() if not k.startswith("custom/")}, "extensions.conf")
    our_contexts = set(ours.names())
    for name in sorted(n for n in files if n.startswith("custom/")):
        conf = load_tree(files, name)
        path = _custom_path
        for issue in conf.errors:
            out.append(Problem(path(issue.file, custom_dir), issue.line, "syntax", issue.message))
        for issue in dialplan_steps(conf)[1]:
            out.append(Problem(path(issue.file, custom_dir), issue.line, "dialplan", issue.message))
        for sec in conf.sections:
            if sec.file != name and not sec.file.startswith("custom/"):
                continue
            where = path(sec.file, custom_dir)
            if sec.name == "globals":
                for item in sec.items:
                    if item.key.upper().startswith("HOTLINE_"):
                        out.append(Problem(where, item.line, f"[globals] {item.key}",
                                           "redefines a hotline variable the rendered dialplan relies on"))
                continue
            if sec.name == "general":
                out.append(Problem(where, sec.line, "[general]",
                                   "extensions.conf's [general] is ours (static, writeprotect); remove it here"))
                continue
            if sec.name in ADMIN_CONTEXTS:
                continue
            if sec.name in our_contexts:
                out.append(Problem(where, sec.line, f"[{sec.name}]",
                                   "this context is rendered by hotline; Asterisk would merge both and mix "
                                   "their extensions. Use another name"))
            elif sec.name.startswith(OUR_PREFIX):
                out.append(Problem(where, sec.line, f"[{sec.name}]",
                                   f"the {OUR_PREFIX}* names are reserved for rendered contexts; use another "
                                   "name (hotline-outbound is rendered from `outbound:` in the config)"))
    return out


def render_files(config: Config, seat_secrets: Mapping[str, str], *, ami_secret: str, with_sim: bool = False,
                 layout: Any = None, custom_dir: Path = CUSTOM_DIR,
                 carrier_secrets_: Mapping[str, str] | None = None,
                 ami_secrets: Mapping[str, str] | None = None, node: str | None = None) -> dict[str, str]:
    """Rendered files plus the admin's custom/*.conf, exactly what goes into Asterisk's etc dir.

    With `cluster:`: the files of `node` (default: the config's own node, `$HOTLINE_NODE`).

    Carriers' secrets: `carrier_secrets_`, else read from the environment (SecretMissing when absent).
    `ami_secret` is the controller's; `ami_secrets` the other AMI accounts' ("apply", "sim"): without
    them, manager.conf holds the controller's account only (fine for check, never for an install).
    """
    carriers = dict(carrier_secrets(config) if carrier_secrets_ is None else carrier_secrets_)
    others = ami_secrets or {}
    inputs = RenderInputs(ami_secret=ami_secret, seat_secrets=dict(seat_secrets), with_sim=with_sim,
                          layout=layout or Layout(), carrier_secrets=carriers,
                          ami_apply_secret=others.get("apply", ""), ami_sim_secret=others.get("sim", ""),
                          node=node)
    files = render(config, inputs)
    files.update(custom_files(custom_dir))
    return files


_LOOPBACK = re.compile(r"^(127\.[0-9.]+|localhost|\[::1\])$", re.IGNORECASE)


def controller_problems(config: Config, file: str, lines: Lines) -> list[Problem]:
    """Several FastAGI controllers on other hosts share their tickets, claims and leases through one database:
    a SQLite file on one machine cannot be that (README "Several controllers")."""
    hosts = [c.rsplit(":", 1)[0] for c in config.asterisk.fastagi.controllers]
    if len(hosts) < 2 or not config.store.url.startswith("sqlite") or all(_LOOPBACK.match(h) for h in hosts):
        return []
    return [Problem(file, line_of(lines, "asterisk", "fastagi"), "asterisk.fastagi.controllers",
                    "several controllers on other hosts need one shared PostgreSQL store (store.url "
                    "postgresql+asyncpg://…): each host's SQLite file would hold its own tickets, claims and leases")]


def check_config(config: Config, *, file: str = "<config>", lines: Lines | None = None,
                 prompts_dir: Path | None = None, custom_dir: Path = CUSTOM_DIR,
                 environ: Mapping[str, str] | None = None, seat_secrets: Mapping[str, str] | None = None,
                 files: Mapping[str, str] | None = None, check_secrets: bool = True,
                 installed_secrets: Mapping[str, str] | None = None,
                 sounds_dir: Path | None = None, recordings_dir: Path = RECORDINGS) -> list[Problem]:
    """Every problem at once: the routing graph, secrets, prompts, custom dialplan, feature codes, rendering.

    The one check `hotline check` and `hotline apply [--dry-run]` both run, given the same
    environment: `environ` and `installed_secrets` (what the running Asterisk has) for seat
    secrets. `seat_secrets` given: those are the secrets and neither is consulted.
    `files` given: check that render instead of rendering. `sounds_dir`: where the running
    Asterisk plays our prompts from; a prompt neither there nor buildable by apply is a problem.
    """
    lines = lines or {}
    problems: list[Problem] = []
    problems += validate(config, filename=file, lines=lines)
    problems += classifier_problems(config, file, lines)
    problems += controller_problems(config, file, lines)
    if seat_secrets is None:
        if check_secrets:
            problems += secret_problems(config, file, lines, environ, installed_secrets)
    else:
        for ext in config.seats:
            if not seat_secrets.get(ext):
                problems.append(Problem(file, line_of(lines, "seats", ext), f"seats.{ext}", "no SIP secret available"))
        problems += weak_secret_problems(config, {k: v for k, v in seat_secrets.items() if v}, file, lines)
        problems += shared_secret_problems(config, file, lines)
    if prompts_dir is not None:
        for pid in missing_prompts(config, prompts_dir):
            problems.append(Problem(file, line_of(lines, "prompts", pid) if pid in config.prompts else None,
                                    f"prompts.{pid}", f"no playable {prompts_dir}/{pid}.wav: run `hotline prompts`"))
    if sounds_dir is not None:
        for pid in unplayable_prompts(config, sounds_dir, recordings_dir):
            problems.append(Problem(file, line_of(lines, "prompts", pid) if pid in config.prompts else None,
                                    f"prompts.{pid}", f"cannot be played: not in {sounds_dir} and apply cannot "
                                    f"build it (no recording in {recordings_dir}/prompts, espeak-ng not installed)"))
    problems += cluster_problems(config, file, lines)
    if files is None:
        try:
            files = render_files(config, {k: "check" for k in config.seats}, ami_secret="check",
                                 custom_dir=custom_dir, carrier_secrets_={k: "check" for k in config.carriers},
                                 ami_secrets={"apply": "check", "sim": "check"},
                                 node=config.node or (next(iter(config.cluster.nodes)) if config.cluster else None))
        except Exception as e:  # noqa: BLE001 - a template error is a finding, not a crash
            problems.append(Problem(file, None, "render", f"the Asterisk files do not render: {type(e).__name__}: {e}"))
            files = None
    if files is not None:
        for name in sorted(n for n in files if not n.startswith(("custom/", "sim/"))):
            conf = load_tree(files, name)
            # read the way Asterisk reads them: a ';' in rendered text would cut a dialplan line
            issues = conf.errors + (dialplan_steps(conf)[1] if name == "extensions.conf" else [])
            for issue in issues:
                if not issue.file.startswith("custom/"):
                    problems.append(Problem(f"rendered {issue.file}", issue.line, "render", issue.message))
        problems += shape_problems(config, files)
        problems += custom_problems(files, custom_dir)
        problems += feature_code_problems(config, file, lines, files.get("features.conf"))
    else:
        problems += feature_code_problems(config, file, lines, None)
    return _dedupe(problems)


def cluster_problems(config: Config, file: str, lines: Lines) -> list[Problem]:
    """With `cluster:`: what Kamailio cannot do with this config, and whether its files and every node's
    Asterisk files render (docs/cluster.md)."""
    cluster = config.cluster
    if cluster is None:
        return []
    out: list[Problem] = []
    for name, c in config.carriers.items():
        for addr in carrier_match(c):
            try:
                ipaddress.ip_network(addr, strict=False)
            except ValueError:
                field = "match" if c.match else "host"
                out.append(Problem(file, line_of(lines, "carriers", name, field), f"carriers.{name}.{field}",
                                   f"{addr!r} is not an IP address or network: behind Kamailio (cluster:) a "
                                   "carrier is recognised by the source address of its packets"))
    for ext, seat in config.seats.items():
        if seat.transport == "tls":
            out.append(Problem(file, line_of(lines, "seats", ext, "transport"), f"seats.{ext}.transport",
                               "seats register with Kamailio over UDP in a cluster (cluster:); TLS seats are "
                               "not rendered there yet"))
    try:
        render_kamailio(config, {k: "check" for k in config.seats})
    except Exception as e:  # noqa: BLE001 - a template error is a finding, not a crash
        out.append(Problem(file, line_of(lines, "cluster"), "cluster",
                           f"Kamailio's files do not render: {type(e).__name__}: {e}"))
    for name in cluster.nodes:
        try:
            render_files(config, {k: "check" for k in config.seats}, ami_secret="check",
                         carrier_secrets_={k: "check" for k in config.carriers}, node=name)
        except Exception as e:  # noqa: BLE001
            out.append(Problem(file, line_of(lines, "cluster", "nodes", name), f"cluster.nodes.{name}",
                               f"node {name}'s Asterisk files do not render: {type(e).__name__}: {e}"))
    return out


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def check_file(path: str | os.PathLike[str], *, prompts_dir: Path | None = None, custom_dir: Path = CUSTOM_DIR,
               environ: Mapping[str, str] | None = None, check_secrets: bool = True,
               installed_secrets: Mapping[str, str] | None = None,
               sounds_dir: Path | None = None) -> tuple[Config | None, list[Problem]]:
    """check for a file on disk: load problems first, then (when it loads) everything check_config finds."""
    loaded = load_located(path)
    problems = list(loaded.problems)
    if loaded.config is not None:
        listed = priority_numbers_path(loaded.config, loaded.file)
        if listed is not None:
            problems += read_priority_numbers(listed)[1]
        problems += check_config(loaded.config, file=loaded.file, lines=loaded.lines, prompts_dir=prompts_dir,
                                 custom_dir=custom_dir, environ=environ, check_secrets=check_secrets,
                                 installed_secrets=installed_secrets, sounds_dir=sounds_dir)
    else:
        # the model did not load; the admin's dialplan files can still be checked
        try:
            files = {"extensions.conf": "", **custom_files(custom_dir)}
            problems += custom_problems(files, custom_dir)
        except OSError as e:
            problems.append(Problem(str(custom_dir), None, "", f"cannot read: {e}"))
    return loaded.config, _dedupe(problems)


def problem_dict(p: Problem) -> dict[str, Any]:
    return {"file": p.file, "line": p.line, "field": p.field, "message": p.message, "text": str(p)}
