"""Render the hotline configuration into the Asterisk .conf files it runs on.

Rendering is pure (config in, {filename: text} out) so `apply` can diff, check and
roll back before anything touches a live Asterisk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from model.config import Carrier, Config, Queue
from model.contract import (AMI_CONTROLLER_EVENT_PREFIXES, AMI_CONTROLLER_EVENTS, AMI_CONTROLLER_EXCLUDED_USER_EVENTS,
                            AMI_CONTROLLER_WRITETIMEOUT_MS, AMI_EXCLUDED_EVENTS, ASTERISK_QUEUE_PREFIX, AmiRights,
                            Context, RECORDING_SIDE_SUFFIX, TRUNK_HEADER, agi_global, queue_context,
                            template_names)
from model.destinations import Destination, DialDest, HangupDest, QueueDest, TransferDest
from routing.access import language_of_queue, video_queue
from routing.outbound import allowed_patterns, carrier_match, did_map, outbound_dial
from routing.supervise import SWITCH_KEYS, spy_modes

TEMPLATES = Path(__file__).resolve().parent.parent / "dialplans" / "templates"
SIM_DIR = Path(__file__).resolve().parent.parent / "dialplans" / "sim"
CUSTOM_DIR = Path(__file__).resolve().parent.parent / "dialplans" / "custom"

#: Modules that open ports, talk to outside systems or need hardware: never wanted here.
NOLOAD = [
    "chan_iax2.so", "chan_unistim.so", "chan_mgcp.so", "chan_skinny.so", "chan_motif.so", "chan_console.so",
    "chan_alsa.so", "chan_oss.so", "chan_mobile.so", "chan_ooh323.so", "chan_dahdi.so", "chan_websocket.so",
    "chan_audiosocket.so", "chan_rtp.so",
    "res_hep.so", "res_hep_pjsip.so", "res_hep_rtcp.so", "res_xmpp.so", "res_calendar.so",
    "res_calendar_caldav.so", "res_calendar_ews.so", "res_calendar_exchange.so", "res_calendar_icalendar.so",
    "res_config_ldap.so", "res_config_mysql.so", "res_config_odbc.so", "res_config_pgsql.so", "res_config_sqlite3.so",
    "res_odbc.so", "res_odbc_transaction.so", "res_snmp.so", "res_smdi.so", "res_corosync.so", "res_statsd.so",
    "res_prometheus.so", "res_phoneprov.so", "res_pjsip_phoneprov_provider.so", "res_aeap.so", "res_speech_aeap.so",
    "cdr_adaptive_odbc.so", "cdr_odbc.so", "cdr_pgsql.so", "cdr_radius.so", "cdr_tds.so", "cdr_sqlite3_custom.so",
    "cdr_csv.so", "cdr_beanstalkd.so", "cel_odbc.so", "cel_pgsql.so", "cel_radius.so", "cel_tds.so",
    "cel_sqlite3_custom.so", "cel_custom.so", "cel_beanstalkd.so",
    "pbx_dundi.so", "pbx_ael.so", "pbx_lua.so", "pbx_realtime.so", "app_voicemail.so", "app_voicemail_imap.so",
    "app_voicemail_odbc.so", "app_minivm.so", "app_festival.so", "app_jack.so", "res_pjsip_outbound_publish.so",
    "res_ari_model.so", "res_stir_shaken.so", "res_geolocation.so", "res_pjsip_geolocation.so",
    "res_pjsip_stir_shaken.so", "res_http_media_cache.so", "res_mwi_external.so", "res_mwi_external_ami.so",
    "res_pjsip_config_wizard.so", "res_pktccops.so", "app_alarmreceiver.so",
]




def asterisk_queue(name: str) -> str:
    return ASTERISK_QUEUE_PREFIX + name


def config_queue(asterisk_name: str) -> str:
    """The config name of a queue from the name Asterisk reports in its events."""
    return asterisk_name.removeprefix(ASTERISK_QUEUE_PREFIX)


MAIN_INSTANCE = "main"


@dataclass(frozen=True)
class Layout:
    """Where Asterisk finds things, as seen from inside its (possibly chrooted) root."""

    etc: str = "/etc/hotline12345/asterisk"
    run: str = "/run/asterisk"
    log: str = "/var/log/asterisk"
    moddir: str = "/usr/lib/x86_64-linux-gnu/asterisk/modules"
    db: str = "/var/lib/asterisk"
    spool: str = "/var/spool/asterisk"
    #: which Asterisk this is: "main" (production, the demo) or a test run's own (tags its CDR rows)
    instance: str = MAIN_INSTANCE

    def for_instance(self, name: str) -> "Layout":
        """A second Asterisk beside the first (parallel test runs): its own etc, run, log, db, spool."""
        if name in ("", MAIN_INSTANCE):
            return self
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
            raise ValueError(f"instance name {name!r}: letters, digits, - and _ only (it names folders and CDR rows)")
        return Layout(etc=f"{self.etc}-{name}", run=f"{self.run}-{name}", log=f"{self.log}-{name}",
                      moddir=self.moddir, db=f"{self.db}-{name}", spool=f"{self.spool}-{name}", instance=name)


@dataclass
class RenderInputs:
    #: the controller's AMI secret; apply's and the test world's below ("": that account is not rendered)
    ami_secret: str
    seat_secrets: dict[str, str]
    with_sim: bool = False
    #: where SIP listens; None: config.asterisk.sip.bind (never AMI's host)
    sip_bind: str | None = None
    #: passwords of the carriers that register (model.secrets.carrier_secrets)
    carrier_secrets: dict[str, str] = field(default_factory=dict)
    rtp_range: tuple[int, int] = (10000, 10999)
    layout: Layout = field(default_factory=Layout)
    ami_apply_secret: str = ""
    #: rendered only together with `with_sim`
    ami_sim_secret: str = ""
    #: with a `cluster:` section: the node (cluster.nodes key) these files are for; required then
    node: str | None = None


def dialplan_text(text: str) -> str:
    """Free text as an argument inside a dialplan application: ';' would start a comment and cut the
    line, ',' would split the arguments, unbalanced parentheses would end them early."""
    return (str(text).replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("(", "[").replace(")", "]"))


def dial_string(number: str) -> str:
    """A configured number as Asterisk dials it: a dial string as is, digits via the admin's outbound context."""
    return number if "/" in number else f"Local/{number}@{Context.OUTBOUND}"


def overflow_step(cfg: Config, name: str, q: Queue) -> tuple[str, str]:
    """The dialplan step after a queue gives up on a caller: (application, label). Never a hang-up.

    A queue without overflow has no wait limit (the caller keeps their place); it only
    returns when full, and then the caller goes to the general queue (or, for the
    general queue itself, tries again after a breath).
    """
    dest: Destination | None = q.overflow
    general = cfg.center.general_queue
    if dest is None or isinstance(dest, HangupDest):  # hang-up overflow is refused by check; stay safe anyway
        if name == general:
            return f"Gosub({Context.QUEUE_RETRY},s,1({name}))", f"keeps waiting in {name} (no overflow set)"
        return f"Goto({queue_context(general)},s,1)", f"keeps waiting in {name}; if full, queue:{general}"
    if isinstance(dest, QueueDest):
        return f"Goto({queue_context(dest.queue)},s,1)", dest.label()
    if isinstance(dest, DialDest):
        dial = dial_string(dest.number)
        # through the route context's dial: a dial that fails still ends in the general queue
        return f"Gosub({Context.OVERFLOW_DIAL},s,1({dial}))", dest.label()
    if isinstance(dest, TransferDest):
        return f"Goto({Context.TRANSFER},{dest.target},1)", dest.label()
    return f"Goto({queue_context(general)},s,1)", f"queue:{general}"


def render(config: Config, inputs: RenderInputs) -> dict[str, str]:
    """All files Asterisk needs, keyed by name relative to its etc directory.

    With `cluster:`, the files of node `inputs.node`: SIP on the node's address, its systemname, seats
    reached through Kamailio's registrations and carriers recognised by the header Kamailio adds.
    """
    cluster = config.cluster
    node = inputs.node or config.node
    if cluster is not None:
        if node is None:
            raise ValueError("the config has a cluster: section; render for one node of it "
                             f"($HOTLINE_NODE: one of {', '.join(cluster.nodes)})")
        config = config.for_node(node)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["dialplan_text"] = dialplan_text
    queues = []
    for name, q in config.queues.items():
        app, label = overflow_step(config, name, q)
        queues.append((name, _QueueView(q, app, label, language_of_queue(config, name))))
    trunks = list(config.transfer_targets.items()) + list(config.branch_centers.items())
    aliases = [
        (number, line.branch)
        for number, line in config.legacy_lines.items()
        if line.mode == "branch_center" and line.branch and line.branch in config.branch_centers
    ]
    feature_keys = [k for k, t in trunks if t.feature_code]
    ctx = {
        **template_names(),
        "config": config,
        "layout": inputs.layout,
        "noload": NOLOAD,
        "queue_prefix": ASTERISK_QUEUE_PREFIX,
        "ami_secret": inputs.ami_secret,
        "ami_secrets": {"controller": inputs.ami_secret, "apply": inputs.ami_apply_secret,
                        "sim": inputs.ami_sim_secret if inputs.with_sim else ""},
        "ami_classes": AmiRights.classes(),
        "ami_excluded_events": AMI_EXCLUDED_EVENTS,
        "ami_controller_events": AMI_CONTROLLER_EVENTS,
        "ami_controller_event_prefixes": AMI_CONTROLLER_EVENT_PREFIXES,
        "ami_controller_excluded_user_events": AMI_CONTROLLER_EXCLUDED_USER_EVENTS,
        "ami_controller_writetimeout_ms": AMI_CONTROLLER_WRITETIMEOUT_MS,
        "secrets": inputs.seat_secrets,
        "seats": list(config.seats.items()),
        "queues": queues,
        "trunks": trunks,
        "targets": trunks,
        "trunk_aliases": aliases,
        "dynamic_features": "#".join(f"hotline_xfer_{k}" for k in feature_keys),
        "with_sim": inputs.with_sim,
        "sip_bind": inputs.sip_bind or config.asterisk.sip.bind,
        "sip": config.asterisk.sip,
        "carriers": [_CarrierView(name, c, config, inputs.carrier_secrets.get(name, ""))
                     for name, c in config.carriers.items()],
        "outbound_patterns": allowed_patterns(config),
        "outbound_dial": outbound_dial(config),
        "spy_modes": spy_modes(),
        "spy_keys": [(key, mode.value) for key, mode in SWITCH_KEYS.items()],
        "rtp_start": inputs.rtp_range[0],
        "rtp_end": inputs.rtp_range[1],
        "side_suffix": RECORDING_SIDE_SUFFIX,
        "video_queue": video_queue(config),
        # the FastAGI controllers in the order the dialplan tries them (asterisk.fastagi.controllers)
        "agi_targets": [(agi_global(i), t) for i, t in enumerate(config.asterisk.fastagi.agi_targets(), 1)],
        "agi_globals": [agi_global(i) for i in range(1, len(config.asterisk.fastagi.agi_targets()) + 1)],
        "systemname": cluster.systemname_of(node) if cluster is not None and node else None,
        "proxy": cluster.proxy if cluster is not None else None,
        "trunk_header": TRUNK_HEADER,
    }
    out: dict[str, str] = {}
    for tpl in sorted(TEMPLATES.glob("*.conf.j2")):
        out[tpl.name.removesuffix(".j2")] = env.get_template(tpl.name).render(**ctx)
    if inputs.with_sim:
        for f in sorted(SIM_DIR.glob("*.conf")):
            out[f"sim/{f.name}"] = f.read_text(encoding="utf-8")
    return out


class _CarrierView:
    """A carrier trunk plus what the templates need: addresses, DIDs (digits -> hotline number), secret."""

    def __init__(self, name: str, c: Carrier, config: Config, secret: str) -> None:
        self.name = name
        self.c = c
        self.match = carrier_match(c)
        self.dids = sorted(did_map(config, c).items())
        self.secret = secret

    def __getattr__(self, name: str):  # noqa: ANN204 - template access
        return getattr(self.c, name)


class _QueueView:
    """A queue plus what the template needs to say about its overflow."""

    def __init__(self, q: Queue, overflow_app: str, overflow_label: str, language: str | None = None) -> None:
        self._q = q
        #: the access.languages code whose seats this queue is (None: the center's own)
        self.language = language
        self.overflow_app = overflow_app
        self.overflow_label = overflow_label

    def __getattr__(self, name: str):  # noqa: ANN204 - template access
        return getattr(self._q, name)


def custom_files(custom_dir: Path = CUSTOM_DIR) -> dict[str, str]:
    """Admin-owned dialplan files, copied verbatim: rendering never overwrites them."""
    if not custom_dir.is_dir():
        return {}
    return {f"custom/{f.name}": f.read_text(encoding="utf-8") for f in sorted(custom_dir.glob("*.conf"))}
