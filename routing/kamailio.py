"""Render Kamailio's configuration (the cluster's SIP front) from the same `config/hotline.yaml`.

Pure: config and seat secrets in, {filename: text} out (`kamailio.cfg`, `dispatcher.list`). The
template is `dialplans/kamailio/kamailio.cfg.j2`; what it does and why is in docs/cluster.md.
Seats' secrets never reach the file: only HA1 = MD5(ext:realm:secret), which Kamailio's digest
check (pv_www_authenticate, flag 1) takes instead of the password.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2

from model.config import Cluster, Config
from model.contract import TRUNK_HEADER
from routing.outbound import carrier_match

TEMPLATES = Path(__file__).resolve().parent.parent / "dialplans" / "kamailio"
#: the dispatcher set of the nodes taking inbound calls
NODE_SET = 1


@dataclass(frozen=True)
class KamailioPaths:
    """Where the rendered Kamailio finds its files and puts its control socket."""

    dispatcher_list: str = "/etc/hotline12345/kamailio/dispatcher.list"
    ctl_socket: str = "/run/hotline12345-kamailio/kamailio.ctl"


def seat_ha1(ext: str, realm: str, secret: str) -> str:
    """The digest HA1 Kamailio checks a seat's REGISTER against."""
    return hashlib.md5(f"{ext}:{realm}:{secret}".encode()).hexdigest()  # noqa: S324 - SIP digest is MD5


def carrier_subnets(addresses: list[str]) -> str:
    """A carrier's source addresses as ipops subnets ("192.0.2.10/32,198.51.100.0/24"); ValueError for a
    name (Kamailio compares the packet's source address, never a resolved name)."""
    out = []
    for a in addresses:
        net = ipaddress.ip_network(a, strict=False)  # ValueError names the bad value
        out.append(str(net))
    return ",".join(out)


def dispatcher_list(cluster: Cluster) -> str:
    lines = ["# Rendered by hotline12345 from config/hotline.yaml `cluster.nodes` — do not edit.",
             "# setid destination flags priority attributes"]
    for name, node in cluster.nodes.items():
        if "inbound" in node.roles:
            lines.append(f"{NODE_SET} sip:{node.host}:{node.sip_port} 0 0 duid={name}")
    return "\n".join(lines) + "\n"


class _CarrierView:
    def __init__(self, name: str, subnets: str) -> None:
        self.name = name
        self.subnets = subnets


def render_kamailio(config: Config, seat_secrets: Mapping[str, str], *, paths: KamailioPaths = KamailioPaths(),
                    debug: int = 2, log_stderr: bool = False) -> dict[str, str]:
    """kamailio.cfg and dispatcher.list for the config's `cluster:` (ValueError without one)."""
    cluster = config.cluster
    if cluster is None:
        raise ValueError("no cluster: section in the config: one Asterisk needs no Kamailio")
    realm = cluster.proxy.realm
    seats = [(ext, seat_ha1(ext, realm, seat_secrets[ext])) for ext in config.seats if seat_secrets.get(ext)]
    carriers = [_CarrierView(name, carrier_subnets(carrier_match(c))) for name, c in config.carriers.items()]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    cfg = env.get_template("kamailio.cfg.j2").render(
        proxy=cluster.proxy, seats=seats, carriers=carriers, node_set=NODE_SET, trunk_header=TRUNK_HEADER,
        dispatcher_list=paths.dispatcher_list, ctl_socket=paths.ctl_socket, debug=debug, log_stderr=log_stderr)
    return {"kamailio.cfg": cfg, "dispatcher.list": dispatcher_list(cluster)}
