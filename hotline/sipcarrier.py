"""A carrier trunk played by SIPp (Debian's sip-tester): calls into the hotline that talk and hang up.

Used by `hotline cluster up --demo` and tests/e2e/test_cluster.py: each call INVITEs 12345 from the
carrier's address, answers Asterisk's re-INVITEs while talking, and hangs up after a quiet spell
(or takes the BYE of Asterisk, or of Kamailio for a node that died).
"""

from __future__ import annotations

import asyncio
from pathlib import Path


def carrier_scenario(talk_ms: int, prefix: str) -> str:
    """The carrier calls 12345 (caller `prefix` + SIPp's call number), talks until `talk_ms` pass without a
    re-INVITE from Asterisk (it sends one when an agent answers), then hangs up."""
    frm = f'"{prefix}[call_number]" <sip:{prefix}[call_number]@[local_ip]:[local_port]>;tag=[call_number]'
    to = "<sip:12345@[remote_ip]:[remote_port]>"
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier calls through Kamailio">
  <send retrans="500">
    <![CDATA[
      INVITE sip:12345@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {frm}
      To: {to}
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{prefix}[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 0 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: {frm}
      To: {to}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:{prefix}[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <!-- while talking: answer Asterisk's re-INVITEs (connected-line updates once an agent answers); a BYE
       (Asterisk's, or Kamailio's for a node that died) ends the call -->
  <label id="1"/>
  <recv request="INVITE" optional="true" timeout="{talk_ms}" ontimeout="2" next="5"/>
  <recv request="ACK" optional="true" next="1"/>
  <recv request="BYE" next="3"/>
  <label id="5"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{prefix}[call_number]@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 1 2 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
  <!-- a second re-INVITE may overtake the first's ACK (Kamailio's workers): answer it, take the ACKs as
       they come -->
  <recv request="INVITE" optional="true" next="5"/>
  <recv request="ACK" next="1"/>
  <label id="2"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: {frm}
      To: {to}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:{prefix}[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true" next="4"/>
  <label id="3"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="4"/>
</scenario>
"""


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
