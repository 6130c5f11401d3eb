"""SMTP dialogues as test fixtures: each ``tests/transcripts/*.txt`` is played against the
server core driven by plain calls (:class:`CorePeer`, through ``tests/smtp/driver.py``) and
against a live ``mailward serve`` over a socket (:class:`LivePeer`) — the same file, two
drivers, one :func:`play`. The format (chasquid's chat scripts, with h11's C/S letters):

    # text                 a comment; blank lines are ignored
    @ section.key = value  a setting for this dialogue, before its first line (value in TOML);
                           ``server.*`` keys that are ServerLimits fields apply to the core too
    @ tls                  the server has a certificate: it offers STARTTLS
    C: text                the client sends text and CRLF
    C= text                the client sends text exactly, no CRLF added; escapes: \\r \\n \\t
                           \\0 \\xNN \\\\  (for bare LF, NUL, a line cut in two)
    S: text                the next reply line is exactly text
    S~ regex               the next reply line matches regex, whole line (dates, queue ids)
    -- starttls            the client runs the TLS handshake now (after the 220)
    -- closed              the server has closed the connection; nothing more arrives

Consecutive ``C`` lines leave in one write (a pipelined group); the ``S`` lines after them are
all the replies to it, in order. A reply line nobody expected is a failure too (on the live
server it shows at the next ``S`` line, or at ``-- closed``).

Both servers are named ``mx.test``, see the client as ``[127.0.0.1]`` (no reverse lookup),
deliver ``localhost`` and ``mx.test`` locally (any other domain is relaying, refused), greet
with ``220 mx.test ESMTP mailward; <date>`` and accept a message with ``250 2.0.0 <queue id>
Message accepted for delivery``. The core's decisions are the receive policy's
(:class:`mailward.policy.receive.ReceivePolicy`, no access map) and a fresh queue id.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
import tomllib
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path

from mailward.policy.receive import ReceivePolicy
from mailward.smtp import events as ev
from mailward.smtp.replies import Reply
from mailward.smtp.server import ServerLimits
from mailward.smtp.server_state import ServerState
from mailward.spool.store import new_queue_id
from mailward.tls.facts import NO_TLS, ConnectionFacts
from tests.smtp.driver import ServerDriver

DIRECTORY = Path(__file__).resolve().parent
HOSTNAME = "mx.test"
LOCAL_DOMAINS = ["localhost", "mx.test"]
CLIENT_ADDR = "127.0.0.1"


# ---- the format -------------------------------------------------------------------------------
@dataclass
class Send:
    data: bytes
    lines: list[tuple[int, str]]          # (line number, as written) for messages


@dataclass
class Expect:
    lines: list[tuple[int, str, str]]     # (line number, ":" or "~", text)


@dataclass
class Action:
    lineno: int
    name: str                             # "starttls" or "closed"


@dataclass
class Transcript:
    path: Path
    settings: dict = field(default_factory=dict)
    tls: bool = False
    steps: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem


_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[rnt0\\])")
_ESCAPES = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"0": b"\x00", b"\\": b"\\"}


def unescape(text: str) -> bytes:
    def one(m: re.Match) -> bytes:
        code = m.group(1)
        return bytes([int(code[1:], 16)]) if code[:1] == b"x" else _ESCAPES[code]
    return _ESCAPE.sub(one, text.encode("utf-8"))


class TranscriptError(ValueError):
    pass


def parse(path: Path) -> Transcript:
    t = Transcript(path)
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path.name}:{lineno}"
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("@ "):
            if t.steps:
                raise TranscriptError(f"{where}: settings ('@') come before the dialogue")
            directive = line[2:].strip()
            if directive == "tls":
                t.tls = True
                continue
            key, eq, value = directive.partition("=")
            section, dot, name = key.strip().partition(".")
            if not eq or not dot:
                raise TranscriptError(f"{where}: expected '@ section.key = value' or '@ tls'")
            try:
                parsed = tomllib.loads(f"v = {value.strip()}")["v"]
            except tomllib.TOMLDecodeError as err:
                raise TranscriptError(f"{where}: the value is not TOML ({err})") from None
            t.settings.setdefault(section, {})[name.strip()] = parsed
            continue
        kind, text = line[:3], line[3:]
        last = t.steps[-1] if t.steps else None
        if kind in ("C: ", "C= "):
            data = text.encode("utf-8") + b"\r\n" if kind == "C: " else unescape(text)
            if isinstance(last, Send):
                last.data += data
                last.lines.append((lineno, line))
            else:
                t.steps.append(Send(data, [(lineno, line)]))
        elif kind in ("S: ", "S~ "):
            if kind == "S~ ":
                try:
                    re.compile(text)
                except re.error as err:
                    raise TranscriptError(f"{where}: not a regular expression ({err})") from None
            entry = (lineno, kind[1], text)
            if isinstance(last, Expect):
                last.lines.append(entry)
            else:
                t.steps.append(Expect([entry]))
        elif line.strip() in ("-- starttls", "-- closed"):
            t.steps.append(Action(lineno, line.strip()[3:]))
        else:
            raise TranscriptError(f"{where}: a line starts with 'C: ', 'C= ', 'S: ', 'S~ ', '@ ', '#' "
                                  f"or is '-- starttls' / '-- closed': {line!r}")
    return t


def all_transcripts() -> list[Path]:
    return sorted(DIRECTORY.glob("*.txt"))


# ---- playing one --------------------------------------------------------------------------------
def play(transcript: Transcript, peer) -> None:
    """Play ``transcript`` against ``peer`` (a CorePeer or a LivePeer); AssertionError names
    the transcript line that was not met and shows the dialogue up to there."""
    seen: list[str] = []

    def fail(lineno: int, why: str) -> None:
        dialogue = "\n".join(f"    {line}" for line in seen[-30:])
        raise AssertionError(f"{transcript.path.name}:{lineno} ({peer.name}): {why}\n  dialogue so far:\n"
                             f"{dialogue}")

    for step in transcript.steps:
        if isinstance(step, Send):
            seen.extend(line for _, line in step.lines)
            peer.send(step.data)
        elif isinstance(step, Expect):
            got = peer.read_lines(len(step.lines))
            for i, (lineno, kind, text) in enumerate(step.lines):
                if i >= len(got):
                    fail(lineno, f"expected {'S' + kind} {text!r}, the server sent nothing more"
                                 + (" and closed" if peer.eof else ""))
                line = got[i]
                seen.append(f"S: {line}")
                ok = line == text if kind == ":" else re.fullmatch(text, line) is not None
                if not ok:
                    fail(lineno, f"expected {'S' + kind} {text!r}\n  got         S: {line!r}")
        elif step.name == "starttls":
            seen.append("-- starttls")
            peer.starttls()
        elif step.name == "closed":
            extra = peer.read_to_close()
            if extra is None:
                fail(step.lineno, "the server did not close the connection")
            if extra:
                fail(step.lineno, f"the server sent more before closing: {extra!r}")
    leftover = peer.leftover()
    if leftover:
        fail(len(transcript.path.read_text().splitlines()), f"replies nobody expected: {leftover!r}")


# ---- the two drivers ------------------------------------------------------------------------------
def core_limits(settings: dict) -> ServerLimits:
    """The transcript's ``server.*`` settings that the core knows (ServerLimits fields)."""
    server = settings.get("server", {})
    known = {f.name for f in fields(ServerLimits)}
    given = {k: v for k, v in server.items() if k in known}
    if server.get("bare_line_endings") == "normalise":
        given["normalise_bare_line_endings"] = True
    return ServerLimits(**given)


def greeting_text() -> str:
    return f"{HOSTNAME} ESMTP mailward; {time.strftime('%a, %d %b %Y %H:%M:%S %z')}"


def _lines(data: bytes) -> list[str]:
    return [line.decode("utf-8", "replace") for line in data.split(b"\r\n")[:-1]] if data else []


class CorePeer:
    """The server core with plain calls, deciding as the receiving session does."""

    name = "server core"

    def __init__(self, transcript: Transcript):
        domains = transcript.settings.get("local", {}).get("domains", LOCAL_DOMAINS)
        policy = ReceivePolicy(local_domains=domains)
        facts = ConnectionFacts(peer_name=f"[{CLIENT_ADDR}]", peer_addr=CLIENT_ADDR, helo="", tls=NO_TLS)

        def decide(event) -> Reply | None:
            if isinstance(event, ev.RcptTo):
                return policy.rcpt(facts, event.path.address).reply
            if isinstance(event, ev.DataComplete):
                return Reply(250, "2.0.0", f"{new_queue_id()} Message accepted for delivery")
            return None

        self.driver = ServerDriver(core_limits(transcript.settings), starttls=transcript.tls, hostname=HOSTNAME,
                                   client_desc=f"[{CLIENT_ADDR}]", greeting=greeting_text(), decide=decide)
        self.pending: deque[str] = deque(_lines(self.driver.settle()))
        self.eof = False

    def send(self, data: bytes) -> None:
        self.pending.extend(_lines(self.driver.feed(data)))

    def read_lines(self, n: int) -> list[str]:
        got = []
        while self.pending and len(got) < n:
            got.append(self.pending.popleft())
        self.eof = self.driver.core.closed and not self.pending
        return got

    def starttls(self) -> None:
        if self.driver.core.state is not ServerState.TLS_HANDSHAKE:
            raise AssertionError(f"-- starttls, but the core is in state {self.driver.core.state}")
        self.driver.core.tls_started()
        self.pending.extend(_lines(self.driver.settle()))

    def read_to_close(self) -> bytes | None:
        if not self.driver.core.closed:
            return None
        extra = "".join(line + "\r\n" for line in self.pending)
        self.pending.clear()
        return extra.encode()

    def leftover(self) -> list[str]:
        return list(self.pending)


class LivePeer:
    """A socket to a running ``mailward serve`` (tests/conftest.py's ``make_mta``)."""

    name = "live server"

    def __init__(self, host: str, port: int, ca_file: str | None = None, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.ca_file = ca_file
        self.buf = b""
        self.eof = False

    @staticmethod
    def settings(transcript: Transcript, tls: dict | None) -> dict:
        """The live server's configuration for ``transcript`` (make_mta's settings)."""
        settings = {section: dict(values) for section, values in transcript.settings.items()}
        settings.setdefault("server", {}).setdefault("reverse_lookup", False)
        settings["server"].setdefault("hostname", HOSTNAME)
        settings.setdefault("local", {}).setdefault("domains", LOCAL_DOMAINS)
        if transcript.tls:
            settings["tls"] = tls
        return settings

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self) -> bytes:
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return b""
        except (ConnectionResetError, ssl.SSLError, OSError):
            chunk = b""
        if not chunk:
            self.eof = True
        return chunk

    def read_lines(self, n: int) -> list[str]:
        got: list[str] = []
        while len(got) < n:
            nl = self.buf.find(b"\r\n")
            if nl >= 0:
                got.append(self.buf[:nl].decode("utf-8", "replace"))
                self.buf = self.buf[nl + 2:]
                continue
            if self.eof:
                break
            chunk = self._recv()
            if not chunk:
                break
            self.buf += chunk
        return got

    def starttls(self) -> None:
        if self.buf:
            raise AssertionError(f"the server sent more in clear after its 220: {self.buf!r}")
        ctx = ssl.create_default_context(cafile=self.ca_file)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def read_to_close(self) -> bytes | None:
        while not self.eof:
            chunk = self._recv()
            if not chunk and not self.eof:
                return None  # timed out: still open
            self.buf += chunk
        extra, self.buf = self.buf, b""
        return extra

    def leftover(self) -> list[str]:
        return _lines(self.buf)

    def close(self) -> None:
        self.sock.close()
