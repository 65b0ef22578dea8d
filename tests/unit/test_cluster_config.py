"""Issue 16: the `cluster:` section, each node's Asterisk files and Kamailio's, and what `check` says of them."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from admin.check import check_config
from model.config import Carrier, Config
from model.loading import default_config_path, load_located, parse_config
from routing.dialplan import Layout, RenderInputs, render
from routing.kamailio import KamailioPaths, render_kamailio, seat_ha1
from tests.conftest import require
from wire.conf import parse

SHIPPED = default_config_path()
CLUSTER = """
cluster:
  proxy: {host: 10.0.0.5, port: 5060, realm: hotline}
  nodes:
    a: {host: 10.0.0.11}
    b: {host: 10.0.0.12, systemname: node2}
"""


def with_yaml(extra: str) -> Config:
    return parse_config(SHIPPED.read_text(encoding="utf-8") + "\n" + extra, "t.yaml")


def rendered(cfg: Config, node: str | None) -> dict[str, str]:
    return render(cfg, RenderInputs(ami_secret="a" * 16, seat_secrets={k: "s" * 16 for k in cfg.seats},
                                    layout=Layout(), node=node))


def options(text: str, section: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in parse(text, "x.conf").sections:
        if s.name == section:
            for item in s.items:
                out.setdefault(item.key, []).append(item.value)
    return out


def test_no_cluster_renders_as_one_asterisk_did() -> None:
    files = rendered(with_yaml(""), None)
    assert "systemname" not in files["asterisk.conf"]
    assert "X-Hotline-Trunk" not in files["pjsip.conf"]
    assert "max_contacts = 1" in files["pjsip.conf"]


def test_each_node_has_its_own_systemname_and_address() -> None:
    cfg = with_yaml(CLUSTER)
    a, b = rendered(cfg, "a"), rendered(cfg, "b")
    assert "systemname = a" in a["asterisk.conf"] and "systemname = node2" in b["asterisk.conf"]
    assert "bind = 10.0.0.11:5060" in a["pjsip.conf"] and "bind = 10.0.0.12:5060" in b["pjsip.conf"]


def test_a_cluster_config_is_rendered_for_one_node_only() -> None:
    with pytest.raises(ValueError, match="HOTLINE_NODE"):
        rendered(with_yaml(CLUSTER), None)
    with pytest.raises(KeyError, match="not under cluster.nodes"):
        rendered(with_yaml(CLUSTER), "c")


def test_a_node_rings_seats_through_kamailio_and_knows_carriers_by_its_header() -> None:
    pjsip = rendered(with_yaml(CLUSTER), "a")["pjsip.conf"]
    aor = [o for s in parse(pjsip, "pjsip.conf").sections if s.name == "1001"
           for o in [{i.key: i.value for i in s.items}] if o.get("type") == "aor"][0]
    assert aor["contact"] == "sip:1001@10.0.0.5:5060" and aor["max_contacts"] == "0"
    ident = options(pjsip, "telecom-identify")
    assert ident["match_header"] == ["X-Hotline-Trunk: telecom"] and "match" not in ident
    assert "endpoint_identifier_order = header,ip,username,auth_username" in pjsip
    # nobody but Kamailio may send the node SIP (the carrier header would be forgeable)
    assert options(pjsip, "proxy-only") == {"type": ["acl"], "deny": ["0.0.0.0/0.0.0.0"],
                                            "permit": ["10.0.0.5/255.255.255.255"]}


@pytest.mark.parametrize("yaml_text,message", [
    ("cluster:\n  nodes:\n    a: {host: 10.0.0.1}\n    b: {host: 10.0.0.2, systemname: a}\n", "same systemname"),
    ("cluster:\n  nodes:\n    a: {host: 10.0.0.1}\n    b: {host: 10.0.0.1}\n", "listens on 10.0.0.1:5060"),
    ("cluster:\n  nodes:\n    a-1: {host: 10.0.0.1}\n", "no valid systemname"),
    ("cluster:\n  nodes:\n    a: {host: 10.0.0.1, systemname: x-y}\n", "letters and digits"),
    ("cluster:\n  nodes: {}\n", "empty"),
    ("cluster:\n  nodes:\n    a: {host: 10.0.0.1, roles: []}\n", "inbound"),
    ("cluster:\n  proxy: {call_probe_s: 5}\n  nodes:\n    a: {host: 10.0.0.1}\n", "call_probe_s"),
])
def test_bad_clusters_are_refused_with_file_line_and_field(tmp_path: Path, yaml_text: str, message: str) -> None:
    f = tmp_path / "hotline.yaml"
    f.write_text(SHIPPED.read_text(encoding="utf-8") + "\n" + yaml_text, encoding="utf-8")
    loaded = load_located(f)
    assert loaded.config is None
    text = " ".join(str(p) for p in loaded.problems)
    assert message in text and "cluster" in text


def test_kamailio_dispatches_to_inbound_nodes_and_keeps_only_ha1() -> None:
    cfg = with_yaml(CLUSTER)
    files = render_kamailio(cfg, {"1001": "Seat-1001-secret"}, paths=KamailioPaths("/etc/k/dispatcher.list"))
    assert "1 sip:10.0.0.11:5060 0 0 duid=a" in files["dispatcher.list"]
    assert "1 sip:10.0.0.12:5060 0 0 duid=b" in files["dispatcher.list"]
    k = files["kamailio.cfg"]
    assert "listen=udp:10.0.0.5:5060" in k
    assert "Seat-1001-secret" not in k
    ha1 = hashlib.md5(b"1001:hotline:Seat-1001-secret").hexdigest()
    assert seat_ha1("1001", "hotline", "Seat-1001-secret") == ha1 and f'$sht(seat=>1001) = "{ha1}"' in k
    assert 'is_in_subnet("$si", "192.0.2.10/32,192.0.2.11/32")' in k  # the carrier, by its addresses
    assert "append_hf(\"X-Hotline-Trunk: telecom\\r\\n\")" in k


def test_kamailio_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    require(shutil.which("kamailio") is not None, "kamailio (Debian package kamailio) checks its configuration")
    cfg = with_yaml(CLUSTER.replace("10.0.0.5", "127.0.0.1").replace("port: 5060, realm", "port: 5999, realm"))
    files = render_kamailio(cfg, {k: "s" * 16 for k in cfg.seats},
                            paths=KamailioPaths(str(tmp_path / "dispatcher.list"), str(tmp_path / "k.ctl")))
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    r = subprocess.run(["kamailio", "-c", "-f", str(tmp_path / "kamailio.cfg")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_check_finds_what_kamailio_cannot_do() -> None:
    cfg = with_yaml(CLUSTER)
    cfg.carriers["byname"] = Carrier(host="sip.carrier.example")
    problems = check_config(cfg, check_secrets=False)
    assert any(p.field == "carriers.byname.host" and "not an IP address" in p.message for p in problems)
    assert not [p for p in check_config(with_yaml(CLUSTER), check_secrets=False) if p.field.startswith(("cluster",
                                                                                                      "carriers"))]


def test_the_one_machine_cluster_keeps_its_ports_apart() -> None:
    """hotline/cluster.py: node a at offset + 20, node b at + 70, Kamailio at 5060 + offset + 45; no port of one
    node is another's, none is Kamailio's, and none is the single-node Asterisk's at the same offset."""
    from hotline.cluster import local_cluster_config, node_config

    base = with_yaml("")
    offset = 600
    cfg = local_cluster_config(base, offset=offset + 20)
    ports: dict[int, str] = {}
    single = {base.asterisk.ami.port + offset, base.asterisk.sip.port + offset, base.asterisk.fastagi.port + offset,
              base.api.port + offset, 5090 + offset}
    for name in cfg.cluster.nodes:
        n = node_config(cfg, name, offset=offset + 20)
        for what, port in (("ami", n.asterisk.ami.port), ("sip", n.asterisk.sip.port),
                           ("fastagi", n.asterisk.fastagi.port), ("api", n.api.port)):
            assert port not in ports, f"node {name} {what} {port} is also {ports[port]}"
            assert port not in single, f"node {name} {what} {port} is the single-node Asterisk's"
            ports[port] = f"node {name} {what}"
    assert cfg.cluster.proxy.port == 5060 + offset + 45 and cfg.cluster.proxy.port not in ports
    assert [n.systemname or k for k, n in cfg.cluster.nodes.items()] == ["a", "b"]
