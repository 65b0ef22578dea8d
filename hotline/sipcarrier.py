"""A carrier trunk played by SIPp (Debian's sip-tester): calls into the hotline that talk and hang up.

Used by `hotline cluster up --demo` and tests/e2e/test_cluster.py: each call INVITEs 12345 from the
carrier's address, answers Asterisk's re-INVITEs while talking, and hangs up after a quiet spell
(or takes the BYE of Asterisk, or of Kamailio for a node that died).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path


#: the audio payload types a scenario may offer (telephone-event, 101, is always offered too)
CODECS = {8: "PCMA/8000", 0: "PCMU/8000"}


@dataclass(frozen=True)
class UacDialog:
    """One SIPp UAC call's dialog, as SIPp's XML writes it (`[call_number]` and the other keywords allowed in
    `caller`): the INVITE and its ACK, our BYE, and `reply_ok` for what the far end sends. `routed`: in-dialog
    requests follow the Record-Route set to the far end's Contact (through a proxy such as Kamailio), else
    they go to the INVITE's Request-URI."""

    caller: str
    ruri: str = "12345"
    to: str = "12345"
    routed: bool = False
    #: extra INVITE headers, each a line of its own ending in a newline
    headers: str = ""

    @property
    def from_(self) -> str:
        return f'"{self.caller}" <sip:{self.caller}@[local_ip]:[local_port]>;tag=[call_number]'

    @property
    def to_(self) -> str:
        return f"<sip:{self.to}@[remote_ip]:[remote_port]>"

    def _in_dialog(self, method: str, cseq: int) -> str:
        target = "[next_url]" if self.routed else f"sip:{self.ruri}@[remote_ip]:[remote_port]"
        routes = "      [routes]\n" if self.routed else ""
        return f"""    <![CDATA[
      {method} {target} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{routes}      From: {self.from_}
      To: {self.to_}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:{self.caller}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
"""

    def invite(self, codecs: tuple[int, ...] = (8, 0)) -> str:
        """The INVITE offering `codecs`, its provisional responses and the 200, then the ACK."""
        return f"""  <send retrans="500">
    <![CDATA[
      INVITE sip:{self.ruri}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {self.from_}
      To: {self.to_}
{self.headers}      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{self.caller}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

{sdp(1, codecs)}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
{self._in_dialog("ACK", 1)}  </send>
"""

    def bye(self) -> str:
        """Our BYE, retransmitted until answered (the 200 is for the caller to `recv`)."""
        return f"""  <send retrans="500">
{self._in_dialog("BYE", 2)}  </send>
"""


def sdp(version: int, codecs: tuple[int, ...]) -> str:
    """The carrier's SDP body (session version `version`): `codecs`, then telephone-event."""
    pts = " ".join(str(c) for c in (*codecs, 101))
    maps = "".join(f"      a=rtpmap:{c} {CODECS[c]}\n" for c in codecs)
    return f"""      v=0
      o=carrier 1 {version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP {pts}
{maps}      a=rtpmap:101 telephone-event/8000
"""


def reply_ok(contact: str = "", body: str = "", *, attrs: str = "") -> str:
    """A 200 OK to the request just received (its BYE, or a re-INVITE: then with `contact` and an SDP `body`)."""
    head = (f"      Contact: <sip:{contact}@[local_ip]:[local_port]>\n" if contact else "")
    if body:
        head += "      Content-Type: application/sdp\n      Content-Length: [len]\n\n" + body
    else:
        head += "      Content-Length: 0\n"
    return f"""  <send{attrs}>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
{head}
    ]]>
  </send>
"""


def uac_scenario(name: str, body: str) -> str:
    """A whole SIPp scenario file named `name` around `body` (UacDialog's parts and the caller's own)."""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="{name}">
{body}</scenario>
"""


def carrier_scenario(talk_ms: int, prefix: str) -> str:
    """The carrier calls 12345 (caller `prefix` + SIPp's call number), talks until `talk_ms` pass without a
    re-INVITE from Asterisk (it sends one when an agent answers), then hangs up."""
    d = UacDialog(f"{prefix}[call_number]", routed=True)
    return uac_scenario("carrier calls through Kamailio", d.invite() + f"""\
  <!-- while talking: answer Asterisk's re-INVITEs (connected-line updates once an agent answers); a BYE
       (Asterisk's, or Kamailio's for a node that died) ends the call -->
  <label id="1"/>
  <recv request="INVITE" optional="true" timeout="{talk_ms}" ontimeout="2" next="5"/>
  <recv request="ACK" optional="true" next="1"/>
  <recv request="BYE" next="3"/>
  <label id="5"/>
""" + reply_ok(d.caller, sdp(2, (8,))) + """\
  <!-- a second re-INVITE may overtake the first's ACK (Kamailio's workers): answer it, take the ACKs as
       they come -->
  <recv request="INVITE" optional="true" next="5"/>
  <recv request="ACK" next="1"/>
  <label id="2"/>
""" + d.bye() + """\
  <recv response="200" crlf="true" next="4"/>
  <label id="3"/>
""" + reply_ok() + """\
  <label id="4"/>
""")


async def carrier_calls(tmp_path: Path, proxy_port: int, *, calls: int, rate_per_s: float, talk_ms: int,
                        carrier_host: str, carrier_port: int, media_port: int,
                        prefix: str = "1390000", tag: str = "load", run: int = 0) -> tuple[int, str]:
    """`calls` calls from the carrier (SIPp on 127.0.0.2) into Kamailio; SIPp's exit code and errors.
    SIPp runs at once need different `run`s (their own SIP and media ports)."""
    xml = tmp_path / f"carrier-{tag}.xml"
    xml.write_text(carrier_scenario(talk_ms, prefix), encoding="ascii")
    err = tmp_path / f"carrier-{tag}-errors.log"
    period_ms = int(1000 / rate_per_s)
    proc = await asyncio.create_subprocess_exec(
        "sipp", f"127.0.0.1:{proxy_port}", "-sf", str(xml), "-i", carrier_host, "-p", str(carrier_port + run),
        "-mi", carrier_host, "-mp", str(media_port + 100 * run), "-m", str(calls), "-l", str(calls),
        "-r", "1", "-rp", str(period_ms), "-base_cseq", "1", "-nostdin",
        "-timeout", "120s", "-timeout_error", "-trace_err", "-error_file", str(err),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    _, stderr = await asyncio.wait_for(proc.communicate(), 150)
    log = (err.read_text(errors="replace") if err.exists() else "") + stderr.decode(errors="replace")
    return proc.returncode or 0, log
