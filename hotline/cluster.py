"""The multi-node deployment on one machine: two (or more) Asterisk nodes, a controller each, Kamailio in
front and one shared ticket store — what `hotline cluster up` starts and tests/e2e/test_cluster.py drives.

Each node is a sandboxed Asterisk instance of its own (hotline/sandbox.py: own etc, run, log, spool) with
its own ports; Kamailio is Debian's `kamailio` started with the configuration rendered by
routing/kamailio.py. On real servers the same config runs one node per machine (docs/cluster.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from hotline.install import install_everything
from hotline.sandbox import Sandbox, SandboxError, port_in_use
from model.config import Carrier, Cluster, ClusterNode, ClusterProxy, Config, Seat
from model.destinations import QueueDest
from model.secrets import seat_secrets
from routing.kamailio import KamailioPaths, render_kamailio

log = structlog.get_logger("hotline.cluster")

#: the second, third … node's ports are the first's plus this many per node
NODE_PORT_STEP = 50
#: Kamailio's SIP port is 5060 + the offset + this (between the first node's ports and the second's)
PROXY_PORT_SHIFT = 25
#: RTP ports per node (node i: 10000 + 10·offset + 400·i, this many)
RTP_PORTS = 399


class ClusterError(Exception):
    """The local cluster cannot start; the message says why."""


def local_cluster_config(base: Config, *, offset: int, nodes: tuple[str, ...] = ("a", "b"),
                         host: str = "127.0.0.1") -> Config:
    """`base` with a `cluster:` of `nodes` on this machine: node i's ports are base's + offset + 50·i,
    Kamailio on 5060 + offset + 25."""
    cfg = base.model_copy(deep=True)
    a = base.asterisk
    members = {}
    for i, name in enumerate(nodes):
        shift = offset + NODE_PORT_STEP * i
        members[name] = ClusterNode(host=host, sip_port=a.sip.port + shift, ami_port=a.ami.port + shift)
    cfg.cluster = Cluster(proxy=ClusterProxy(host=host, port=5060 + offset + PROXY_PORT_SHIFT, probe_interval_s=2),
                          nodes=members)
    return cfg


def straight_to_seats(base: Config, *, seats: tuple[str, ...], carrier: str, carrier_host: str,
                      carrier_port: int) -> Config:
    """The test and benchmark world: callers go straight to the general queue (no menu, no notices), whose
    members are `seats` (made when the config lacks them), and the carrier is SIPp at `carrier_host`."""
    cfg = base.model_copy(deep=True)
    cfg.carriers[carrier] = Carrier(host=carrier_host, port=carrier_port, dids={"057112345": "12345"})
    cfg.center.entry = QueueDest(queue=cfg.center.general_queue)
    cfg.center.emergency_notice = None
    cfg.recording.notice = None
    cfg.survey.enabled = False
    cfg.agents.miss_limit = 0
    cfg.asterisk.sip.seat_qualify_s = 5
    for ext in seats:
        if ext not in cfg.seats:
            cfg.seats[ext] = Seat(name=f"话务员{ext}", skills=["general"], secret_env=f"HOTLINE_SEAT_{ext}_SECRET")
    cfg.queues[cfg.center.general_queue].members = list(seats)
    return cfg


def node_config(cfg: Config, node: str, *, offset: int, controllers: int = 1) -> Config:
    """What node `node`'s Asterisk and (first) controller run with on this machine: the node's SIP and AMI, and
    its own FastAGI and API ports (base + offset + 50·i). `controllers` > 1: the node's dialplan tries that many
    controllers in order (asterisk.fastagi.controllers), the k-th (from 0) on FastAGI port + k (`nth_controller`)."""
    assert cfg.cluster is not None
    i = list(cfg.cluster.nodes).index(node)
    shift = offset + NODE_PORT_STEP * i
    out = cfg.for_node(node)
    fa = out.asterisk.fastagi
    fa.port = cfg.asterisk.fastagi.port + shift
    out.api.port = cfg.api.port + shift
    if controllers > 1:
        host = "127.0.0.1" if fa.host in ("0.0.0.0", "::", "") else fa.host
        fa.controllers = [f"{host}:{fa.port + k}" for k in range(controllers)]
    return out


def nth_controller(node_cfg: Config, k: int) -> Config:
    """The configuration of node's controller number `k` (0: the first the dialplan tries) on this machine:
    FastAGI and API ports + k (node_config leaves room: nodes are 50 ports apart)."""
    out = node_cfg.model_copy(deep=True)
    out.asterisk.fastagi.port += k
    out.api.port += k
    return out


@dataclass
class Kamailio:
    """One Kamailio process with a rendered configuration in `workdir`."""

    workdir: Path
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def paths(self) -> KamailioPaths:
        return KamailioPaths(dispatcher_list=str(self.workdir / "dispatcher.list"),
                             ctl_socket=str(self.workdir / "kamailio.ctl"))

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    def install(self, files: dict[str, str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)  # kamailio.cfg holds the seats' HA1 hashes
        for name, text in files.items():
            target = self.workdir / name
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)

    def start(self, timeout: float = 15.0) -> int:
        exe = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not Path(exe).exists():
            raise ClusterError("kamailio is missing: apt-get install kamailio")
        if port_in_use(self.host, self.port, udp=True):
            raise ClusterError(f"Kamailio's port {self.host}:{self.port}/udp is taken (`ss -lunp`)")
        cfg = self.workdir / "kamailio.cfg"
        check = subprocess.run([exe, "-c", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise ClusterError(f"kamailio refuses {cfg}:\n" + "\n".join(check.stderr.splitlines()[-15:]))
        out = open(self.log_path, "ab")
        # -DD: stay in the foreground (our child, stopped by its process group); -E: log to stderr (the file)
        self.proc = subprocess.Popen([exe, "-f", str(cfg), "-DD", "-E", "-Y", str(self.workdir),
                                      "-P", str(self.workdir / "kamailio.pid")],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ClusterError(f"kamailio exited with {self.proc.returncode}:\n{self.tail()}")
            # (a bind test cannot tell: Kamailio's UDP socket has SO_REUSEADDR) its control socket answers
            if Path(self.paths.ctl_socket).exists() and "kamailio" in self.rpc("core.version").lower():
                log.info("kamailio_started", pid=self.proc.pid, port=self.port)
                return self.proc.pid
            time.sleep(0.1)
        self.stop()
        raise ClusterError(f"kamailio did not listen on {self.host}:{self.port} within {timeout:.0f} s:\n{self.tail()}")

    def rpc(self, *command: str, timeout: float = 5.0) -> str:
        """One kamcmd command on the control socket (e.g. `dispatcher.list`, `ul.dump`)."""
        exe = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
        r = subprocess.run([exe, "-s", f"unix:{self.paths.ctl_socket}", *command], capture_output=True, text=True,
                           timeout=timeout)
        return r.stdout + r.stderr

    def registered(self) -> set[str]:
        """The seats registered with Kamailio now (from usrloc)."""
        out = self.rpc("ul.dump")
        return {line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("AoR:")}

    def node_states(self) -> dict[str, str]:
        """Each dispatcher destination URI → its flags (AP active+probing, IP inactive+probing, …)."""
        states: dict[str, str] = {}
        uri = None
        for line in self.rpc("dispatcher.list").splitlines():
            s = line.strip()
            if s.startswith("URI:"):
                uri = s.split(":", 1)[1].strip()
            elif s.startswith("FLAGS:") and uri:
                states[uri] = s.split(":", 1)[1].strip()
        return states

    def tail(self, n: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait(5)
        log.info("kamailio_stopped", pid=self.proc.pid)


@dataclass
class LocalNode:
    name: str
    cfg: Config
    sandbox: Sandbox
    rtp_range: tuple[int, int]
    controller: Any = None


@dataclass
class LocalCluster:
    """Asterisk nodes + Kamailio on this machine (controllers are started by the caller, asyncio)."""

    cfg: Config
    instance: str
    offset: int
    prompts_dir: Path
    workdir: Path
    with_sim: bool = True
    nodes: dict[str, LocalNode] = field(default_factory=dict)
    kamailio: Kamailio | None = None

    @classmethod
    def create(cls, base: Config, *, instance: str, offset: int, prompts_dir: Path, workdir: Path,
               node_names: tuple[str, ...] = ("a", "b"), with_sim: bool = True,
               controllers_per_node: int = 1) -> "LocalCluster":
        """`controllers_per_node` > 1: each node's dialplan tries that many controllers (node_config); the
        caller starts them (nth_controller)."""
        cfg = local_cluster_config(base, offset=offset, nodes=node_names)
        lc = cls(cfg, instance, offset, prompts_dir, workdir, with_sim)
        for i, name in enumerate(node_names):
            ncfg = node_config(cfg, name, offset=offset, controllers=controllers_per_node)
            sb = Sandbox.discover(ami_host=ncfg.asterisk.ami.host, ami_port=ncfg.asterisk.ami.port,
                                  instance=f"{instance}-{name}")
            rtp = 10000 + offset * 10 + 400 * i
            lc.nodes[name] = LocalNode(name, ncfg, sb, (rtp, rtp + RTP_PORTS))
        proxy = cfg.cluster.proxy  # type: ignore[union-attr]
        lc.kamailio = Kamailio(workdir / "kamailio", proxy.host, proxy.port)
        return lc

    def start(self, *, say: Any = lambda line: None) -> None:
        """Render and start every node, then Kamailio (dispatching to them)."""
        if os.geteuid() != 0:
            raise ClusterError("the local cluster runs Asterisk in a chroot: run as root")
        for node in self.nodes.values():
            if node.sandbox.running():
                node.sandbox.stop()
            say(f"node {node.name}: rendering and starting Asterisk (SIP {node.cfg.asterisk.sip.port}, "
                f"AMI {node.cfg.asterisk.ami.port})")
            install_everything(node.cfg, node.sandbox, with_sim=self.with_sim, demo_secrets=True,
                               prompts_dir=self.prompts_dir, rtp_range=node.rtp_range, node=node.name)
            cdr = node.sandbox.cdr_csv
            if cdr.exists():
                cdr.unlink()  # an earlier run's calls are not this run's
            node.sandbox.start(sip_port=node.cfg.asterisk.sip.port)
        assert self.kamailio is not None
        say(f"kamailio: SIP {self.kamailio.host}:{self.kamailio.port}")
        self.kamailio.install(render_kamailio(self.cfg, seat_secrets(self.cfg), paths=self.kamailio.paths,
                                              log_stderr=True))
        self.kamailio.start()

    def wait_nodes_active(self, timeout: float = 15.0) -> dict[str, str]:
        """Until Kamailio's probes found every node alive; the states."""
        assert self.kamailio is not None
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.kamailio.node_states()
            if len(states) == len(self.nodes) and all(s.startswith("A") for s in states.values()):
                return states
            time.sleep(0.3)
        raise ClusterError(f"not every node is active in Kamailio's dispatcher after {timeout} s: {states}")

    def stop(self) -> None:
        if self.kamailio is not None:
            self.kamailio.stop()
        for node in self.nodes.values():
            try:
                node.sandbox.stop()
            except SandboxError:
                pass
