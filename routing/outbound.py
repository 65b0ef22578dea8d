"""The outbound policy and the carriers' DIDs: which numbers may leave through the carrier, and
which dialed numbers arrive as which hotline number. Pure: config in, answers out.

The allow-list is written once, as Asterisk extension patterns (`_1[3-9]XXXXXXXXX`) in
`outbound.allow`. Asterisk matches them natively in the rendered hotline-outbound context;
`outbound_refusal` matches the same patterns here for `check` (forward targets, dial
destinations) and for callbacks (ticketbridge/callbacks.py), so the rule cannot drift.
"""

from __future__ import annotations

import re
from functools import lru_cache

from model.config import Carrier, Config
from model.contract import Context

#: what a carrier number may look like after we strip formatting: digits, an optional leading +
DID_RE = re.compile(r"^\+?[0-9]{3,20}$")
OUTBOUND_KINDS = ("emergency", "utility")


@lru_cache(maxsize=512)
def pattern_regex(pattern: str) -> re.Pattern[str]:
    """An Asterisk extension pattern as a regex: `_` starts a pattern (X, Z, N, [..], '.', '!')."""
    if not pattern.startswith("_"):
        return re.compile(re.escape(pattern) + r"\Z")
    out, i, p = [], 1, pattern
    while i < len(p):
        ch = p[i]
        up = ch.upper()
        if up == "X":
            out.append("[0-9]")
        elif up == "Z":
            out.append("[1-9]")
        elif up == "N":
            out.append("[2-9]")
        elif ch == ".":
            out.append(".+")
        elif ch == "!":
            out.append(".*")
        elif ch == "[":
            end = p.find("]", i)
            if end < 0:
                raise ValueError(f"pattern {pattern!r}: '[' without ']'")
            body = p[i + 1:end]
            out.append("[" + "".join("\\" + c if c in "\\^]" else c for c in body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def pattern_problem(pattern: str) -> str | None:
    """Why an allow-list entry is not a usable pattern, or None."""
    if not pattern or pattern == "_":
        return "empty pattern"
    try:
        pattern_regex(pattern)
    except ValueError as e:
        return str(e)
    if not re.fullmatch(r"_?[0-9A-Za-z+*#\[\]\-.!]+", pattern):
        return f"pattern {pattern!r} has characters an extension pattern cannot hold"
    if pattern.startswith("_") and any(pattern_regex(pattern).match(n) for n in ("00861234567890", "0044123456789")):
        return f"pattern {pattern!r} lets international numbers (00…) out"
    return None


def target_numbers(config: Config) -> list[str]:
    """Digits of the configured emergency and utility targets (110, 119, 95598…): always dialable."""
    out: list[str] = []
    for key, t in config.transfer_targets.items():
        if t.kind not in OUTBOUND_KINDS:
            continue
        for n in (key, t.exten):
            if n and n.isdigit() and n not in out:
                out.append(n)
    return out


def allowed_patterns(config: Config) -> list[str]:
    """Everything hotline-outbound lets out: the configured patterns, then the targets' numbers."""
    pol = config.outbound
    extra = target_numbers(config) if pol.allow_transfer_targets else []
    return list(dict.fromkeys([*pol.allow, *extra]))


def outbound_refusal(config: Config, number: str) -> str | None:
    """Why `number` may not be dialed out (None: it may). The one rule, used by check and callbacks."""
    if not number or not re.fullmatch(r"\+?[0-9]{2,20}", number):
        return f"{number!r} is not a phone number"
    for p in allowed_patterns(config):
        try:
            if pattern_regex(p).match(number):
                return None
        except ValueError:
            continue
    return (f"{number} is not on the outbound allow-list (outbound.allow: domestic numbers only; "
            "international and premium/short codes are refused unless listed)")


def outbound_carrier(config: Config) -> str | None:
    """The carrier outbound calls leave by: outbound.carrier, else the first carrier."""
    if config.outbound.carrier:
        return config.outbound.carrier
    return next(iter(config.carriers), None)


def outbound_dial(config: Config) -> str | None:
    """The Asterisk dial string for an allowed number (`${EXTEN}`), or None when there is no route."""
    if config.outbound.dial:
        return config.outbound.dial.replace("{number}", "${EXTEN}")
    carrier = outbound_carrier(config)
    if carrier and carrier in config.carriers:
        return f"PJSIP/${{EXTEN}}@{carrier}"
    return None


def normalize_did(number: str) -> str:
    """A DID as the dialplan compares it: digits only (the dialplan applies FILTER(0-9))."""
    return re.sub(r"[^0-9]", "", number)


def did_map(config: Config, carrier: Carrier) -> dict[str, str]:
    """Digits the carrier may deliver -> the hotline number (center or legacy line) they reach."""
    out = {n: n for n in [config.center.number, *config.legacy_lines]}
    for did, target in carrier.dids.items():
        out[normalize_did(did)] = target
    return out


def carrier_match(carrier: Carrier) -> list[str]:
    """The addresses an IP-identified (or registered) carrier's INVITEs come from."""
    return carrier.match or [carrier.host]


# ---------------------------------------------------------------------- config problems (for routing.graph)

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
_CODECS = {"alaw", "ulaw", "g722", "g729", "gsm", "opus", "ilbc", "g726", "speex", "slin"}
_RESERVED = {"transport-udp", "transport-tls", "seat-endpoint", "global", "system"}


def _outbound_number(config: Config, number: str) -> str | None:
    """The digits a configured number leaves by through hotline-outbound, or None (not outbound)."""
    number = number.strip()
    if "/" in number:  # a dial string: only Local/N@hotline-outbound goes through the policy
        m = re.fullmatch(rf"Local/([^@]+)@{re.escape(Context.OUTBOUND)}(?:/n)?", number)
        return m.group(1) if m else None
    if number == config.center.number or number in config.legacy_lines or not number:
        return None
    return number


def _dial_sites(config: Config) -> list[tuple[tuple, str]]:
    """(field path, number or dial string) of everything the hotline may dial on a caller's behalf."""
    from model.destinations import AnnounceDest, DialDest  # noqa: PLC0415 - local: only here

    out: list[tuple[tuple, str]] = []

    def dest(path: tuple, d: object) -> None:
        while isinstance(d, AnnounceDest):
            d = d.then
        if isinstance(d, DialDest):
            out.append((path, d.number))

    dest(("center", "entry"), config.center.entry)
    for name, m in config.menus.items():
        for k, d in m.options.items():
            dest(("menus", name, "options", k), d)
        dest(("menus", name, "agent"), m.agent)
        dest(("menus", name, "closed"), m.closed)
    for name, q in config.queues.items():
        dest(("queues", name, "overflow"), q.overflow)
        dest(("queues", name, "closed"), q.closed)
    for number, line in config.legacy_lines.items():
        if line.mode in ("forward", "parallel") and line.forward_to:
            out.append((("legacy_lines", number, "forward_to"), line.forward_to))
    for group in ("transfer_targets", "branch_centers"):
        for key, t in getattr(config, group).items():
            out.append(((group, key, "dial"), t.dial))
    return out


def carrier_problems(config: Config) -> list[tuple[tuple, str]]:
    """Carriers and the outbound policy: (field path, message) for each problem."""
    out: list[tuple[tuple, str]] = []
    for name, c in config.carriers.items():
        p = ("carriers", name)
        if not _NAME_RE.match(name) or name in _RESERVED:
            out.append((p, f"carrier name {name!r} must be a letter then letters, digits, - or _ "
                           "(it names the PJSIP endpoint and the carrier's context)"))
        if name in config.seats:
            out.append((p, f"carrier {name!r} has the name of a seat"))
        if c.auth == "register":
            if not c.username:
                out.append((p + ("username",), "a registering carrier needs username"))
            if not c.secret_env and not c.secret_file:
                out.append((p, "a registering carrier needs secret_env or secret_file (never a secret in the YAML)"))
        if not c.codecs:
            out.append((p + ("codecs",), "at least one codec"))
        for i, codec in enumerate(c.codecs):
            if codec not in _CODECS:
                out.append((p + ("codecs", i), f"unknown codec {codec!r} (one of {', '.join(sorted(_CODECS))})"))
        if not c.number_from:
            out.append((p + ("number_from",), "say where the dialed number is read (diversion, to, request_uri)"))
        for m in c.match:
            if not re.fullmatch(r"[0-9A-Za-z.:/_-]+", m):
                out.append((p + ("match",), f"{m!r} is not an address, network or host name"))
        for did, target in c.dids.items():
            if not DID_RE.match(did.replace(" ", "").replace("-", "")):
                out.append((p + ("dids", did), f"DID {did!r} is not a phone number"))
            if target != config.center.number and target not in config.legacy_lines:
                out.append((p + ("dids", did), f"DID {did} goes to {target}, which is neither the center number "
                                               f"{config.center.number} nor a legacy line"))
    pol = config.outbound
    if pol.carrier and pol.carrier not in config.carriers:
        out.append((("outbound", "carrier"), f"carrier {pol.carrier!r} is not defined under carriers"))
    for i, pattern in enumerate(pol.allow):
        why = pattern_problem(pattern)
        if why:
            out.append((("outbound", "allow", i), why))
    route = outbound_dial(config)
    for path, number in _dial_sites(config):
        m = re.fullmatch(r"PJSIP/[^@]*@([^/]+)", number.strip())
        if m and m.group(1) in config.carriers:
            out.append((path, f"{number} dials the carrier directly and bypasses the outbound policy: "
                              f"use the number (or Local/NUMBER@hotline-outbound)"))
            continue
        digits = _outbound_number(config, number)
        if digits is None:
            continue
        why = outbound_refusal(config, digits)
        if why:
            out.append((path, f"refused by the outbound policy: {why}"))
        elif route is None:
            out.append((path, f"{digits} leaves through hotline-outbound, but there is no outbound route "
                              "(define carriers: or outbound.dial)"))
    # automatic callbacks / 回访 dial citizens through their dial string: through hotline-outbound, never
    # around it, and only when it leads somewhere
    for section, settings in (("callbacks", config.callbacks), ("followups", config.followups)):
        if not settings.auto.enabled:
            continue
        dial = settings.dial
        if "{number}" not in dial:
            out.append(((section, "dial"), f"{dial!r} must contain {{number}} (the citizen's number)"))
        m = re.fullmatch(r"PJSIP/[^@]*@([^/]+)", dial.strip())
        if m and m.group(1) in config.carriers:
            out.append(((section, "dial"), f"{dial} dials the carrier directly and bypasses the outbound policy: "
                                           "use Local/{number}@hotline-outbound"))
        elif f"@{Context.OUTBOUND.value}" in dial and route is None:
            out.append(((section, "auto", "enabled"), "automatic calls leave through hotline-outbound, but there is "
                                                      "no outbound route (define carriers: or outbound.dial)"))
    return out
