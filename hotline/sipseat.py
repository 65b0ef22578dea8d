"""A real SIP seat phone for the demo and the tests: Debian's baresip, driven over ctrl_tcp.

It registers to Asterisk's PJSIP on loopback as a seat endpoint and auto-answers,
so queue calls reach a genuine SIP user agent with RTP, not a mock.

With `video=True` it also has a camera: baresip's `fakevideo` (a synthetic moving picture) sends and its
`vp8` codec encodes it, so a sign-language seat answers with video, and `BaresipSeat.caller()` is a citizen's
video phone (it calls from `bind`, e.g. the simulated carrier's address, without registering). `sip_trace`
writes every SIP message to the log (`sip_messages()` reads them back).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import structlog

log = structlog.get_logger("hotline.sipseat")


class SeatError(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BaresipSeat:
    """One baresip process registered as one seat."""

    def __init__(self, ext: str, secret: str, *, sip_host: str = "127.0.0.1", sip_port: int = 5060,
                 answer: str = "auto", tone_hz: int = 440, record_dir: Path | None = None,
                 video: bool = False, bind: str = "127.0.0.1", register: bool = True, sip_trace: bool = False) -> None:
        if not shutil.which("baresip"):
            raise SeatError("baresip is missing: apt-get install baresip")
        self.ext = ext
        self.secret = secret
        self.sip = f"{sip_host}:{sip_port}"
        self.answer = answer
        #: the phone's "voice": a sine of this frequency (tests tell seats apart by it)
        self.tone_hz = tone_hz
        #: when set, what the phone hears is written there (baresip's sndfile: dump-<time>-dec.wav per call)
        self.record_dir = record_dir
        #: a camera: VP8 video from baresip's synthetic source (fakevideo), shown nowhere
        self.video = video
        #: the address the phone sends SIP and RTP from (127.0.0.2: the simulated carrier)
        self.bind = bind
        #: register as a seat (False: a caller's phone that only dials out)
        self.register = register
        self.sip_trace = sip_trace or video
        self.ctrl_port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"seat{ext}-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._buf = b""
        self.events: list[dict] = []

    def start(self) -> None:
        (self.dir / "config").write_text(
            "poll_method epoll\n"
            f"sip_listen {self.bind}:0\n"
            f"net_interface {self.bind}\n"
            "audio_player aufile,/dev/null\n"
            f"audio_source ausine,{self.tone_hz}\n"
            "ausrc_srate 48000\nausrc_channels 2\n"
            "auplay_srate 48000\n"
            "audio_alert aufile,/dev/null\n"
            "module_path /usr/lib/baresip/modules\n"
            "module g711.so\nmodule ausine.so\nmodule aufile.so\n"
            "module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n"
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}\n"
            + (f"module sndfile.so\nsnd_path {self.record_dir}\n" if self.record_dir else "")
            + ("module vp8.so\nmodule fakevideo.so\n"
               "video_source fakevideo,nil\nvideo_display fakevideo,nil\n"
               # small (the test machine's two cores are shared); 25 fps: libvpx's automatic key frame (every 128
               # frames) comes within about 5 s, so a seat that joins after the caller's first one soon decodes
               "video_size 176x144\nvideo_bitrate 64000\nvideo_fps 25\n" if self.video else "")
        )
        account = (f"<sip:{self.ext}@{self.sip};transport=udp>;auth_pass={self.secret};answermode={self.answer};"
                   "regint=60" if self.register else
                   f"<sip:{self.ext}@{self.bind};transport=udp>;answermode={self.answer};regint=0")
        (self.dir / "accounts").write_text(account + "\n")
        self.log_path = self.dir / "baresip.log"
        self.proc = subprocess.Popen(["baresip", "-f", str(self.dir), *(["-s"] if self.sip_trace else [])],
                                     stdin=subprocess.DEVNULL,
                                     stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SeatError(f"baresip for seat {self.ext} exited: {self.log_path.read_text(errors='replace')[-800:]}")
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=0.5)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SeatError(f"baresip ctrl_tcp for seat {self.ext} did not open")
        log.info("seat_started", ext=self.ext)

    @classmethod
    def caller(cls, number: str, *, bind: str, sip_port: int, video: bool = True) -> "BaresipSeat":
        """A citizen's phone (a video one by default) calling from `bind`, not registered anywhere."""
        return cls(number, "", sip_port=sip_port, answer="manual", video=video, bind=bind, register=False,
                   sip_trace=True)

    def sip_messages(self) -> list[str]:
        """The SIP messages sent and received so far (needs `sip_trace`), each as its text."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        # baresip's trace (-s): "ESC[36;1m#", "UDP <from> -> <to>", the message, "ESC[;m"
        return [m.group(1).strip().replace("\r\n", "\n") for m in
                re.finditer(r"\x1b\[36;1m#\r?\n[^\n]*->[^\n]*\n(.*?)\x1b\[;m", text, re.S)]

    def registered(self) -> bool:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "200 OK" in text

    def wait_registered(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.registered():
                return
            time.sleep(0.1)
        raise SeatError(f"seat {self.ext} did not register within {timeout} s:\n"
                        + self.log_path.read_text(errors="replace")[-800:])

    def command(self, command: str, params: str = "") -> dict:
        """Send one ctrl_tcp command (netstring-framed JSON) and return its response."""
        if self._sock is None:
            raise SeatError("seat not started")
        token = str(time.monotonic_ns())
        data = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(str(len(data)).encode() + b":" + data + b",")
        deadline = time.monotonic() + 5
        self._sock.settimeout(0.5)
        while time.monotonic() < deadline:
            for msg in self._drain():
                if msg.get("response") and msg.get("token") == token:
                    return msg
                self.events.append(msg)
        raise SeatError(f"seat {self.ext}: no answer to {command}")

    def _drain(self) -> list[dict]:
        assert self._sock is not None
        try:
            chunk = self._sock.recv(65536)
        except (TimeoutError, socket.timeout):
            chunk = b""
        self._buf += chunk
        out = []
        while b":" in self._buf:
            length, _, rest = self._buf.partition(b":")
            try:
                n = int(length)
            except ValueError:
                self._buf = b""
                break
            if len(rest) < n + 1:
                break
            payload, self._buf = rest[:n], rest[n + 1:]
            try:
                out.append(json.loads(payload))
            except json.JSONDecodeError:
                pass
        return out

    def hangup(self) -> dict:
        return self.command("hangup")

    def dial(self, target: str) -> dict:
        uri = target if target.startswith("sip:") else f"sip:{target}@{self.sip}"
        return self.command("dial", uri)

    def stop(self) -> None:
        if self._sock:
            try:
                self._sock.close()
            except OSError:
                pass
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def ahangup(self) -> dict:
        return await asyncio.to_thread(self.hangup)
