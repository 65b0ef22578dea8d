"""Asterisk channel names, read in one place.

    PJSIP/1001-0000002a                 a SIP device's call leg: tech PJSIP, endpoint 1001, sequence 0000002a
    Local/110@hotline-transfer-00000003;2   one half of a Local channel pair: exten 110, context hotline-transfer

Pure string functions; everything that needs to know who a channel belongs to (the
assembler's agent, the transfer correlator's seat legs) asks here.
"""

from __future__ import annotations

_HEX = frozenset("0123456789abcdef")


def device(channel: str) -> str:
    """`PJSIP/1001-0000002a` → `PJSIP/1001`: the device, not this call's channel (others unchanged)."""
    base, sep, tail = channel.rpartition("-")
    if sep and base and tail and all(c in _HEX for c in tail.lower()):
        return base
    return channel


def endpoint(channel: str) -> str:
    """`PJSIP/1001-0000000a` → `1001`: the endpoint (a seat's extension); a bare name is returned as is."""
    if "/" not in channel:
        return channel
    rest = channel.split("/", 1)[1]
    return rest.rsplit("-", 1)[0] if "-" in rest else rest


def is_local(channel: str) -> bool:
    """A Local channel (a dialplan leg: a robot caller, a trunk reached through the dialplan)."""
    return channel.startswith("Local/")


def local_exten(channel: str) -> str:
    """`Local/110@hotline-transfer-00000003;2` → `110`."""
    return channel.split("/", 1)[-1].split("@", 1)[0]


def other_half(channel: str) -> str:
    """The other end of a Local channel pair: `…;1` ↔ `…;2` ("" for anything else)."""
    if channel.endswith(";1"):
        return channel[:-1] + "2"
    if channel.endswith(";2"):
        return channel[:-1] + "1"
    return ""
