"""A recording SMTP receiver for the end-to-end TLS policy tests: a real server on a real
socket (stdlib ``ssl`` for STARTTLS) that answers like a plain MTA and writes down, per
connection, every command it saw and whether it came in clear or under TLS, whether the
client presented a certificate, and every message it took. It is what the sending MTA's
peers are in "sendmail 8.17 as the sending MTA" (recording receivers on 127.0.0.x).

Kinds, by what the sender's TLS policy sees (``${verify}``, ``${cn_subject}``):

* ``ca``       certificate from the test CA, CN = the host name mail is routed to → verify=OK
* ``reqcert``  as ``ca``, and asks the client for a certificate
* ``wrongcn``  certificate from the test CA with another CN → verify=OK, a ``+CN`` check fails
* ``self``     self-signed certificate → verify=FAIL
* ``plain``    no STARTTLS at all → verify=NONE
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field

KINDS = ("ca", "reqcert", "wrongcn", "self", "plain")


@dataclass
class Connection:
    helo: str = ""
    commands: list[tuple[str, bool]] = field(default_factory=list)   # (command line, under TLS)
    client_cert: bool | None = None                                     # None: no TLS
    messages: list[bytes] = field(default_factory=list)

    def verbs(self) -> list[str]:
        """``EHLO``, ``STARTTLS``, ``~EHLO`` (a ``~`` marks a command under TLS), ..."""
        return [("~" if tls else "") + line.split(" ", 1)[0].upper() for line, tls in self.commands]


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        receiver: Receiver = self.server.receiver   # type: ignore[attr-defined]
        conn = Connection()
        with receiver.lock:
            receiver.connections.append(conn)
        sock: socket.socket = self.request
        sock.settimeout(15)
        tls = False
        reader = sock.makefile("rb")

        def send(text: str) -> None:
            sock.sendall(text.encode() + b"\r\n")

        try:
            send(f"220 {receiver.name} ESMTP recorder")
            while True:
                raw = reader.readline(2000)
                if not raw:
                    return
                line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                conn.commands.append((line, tls))
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    conn.helo = line.partition(" ")[2]
                    ext = ["PIPELINING", "8BITMIME", "SIZE 52428800", "ENHANCEDSTATUSCODES"]
                    if receiver.context is not None and not tls:
                        ext.append("STARTTLS")
                    lines = [f"{receiver.name} hello"] + ext
                    send("\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{x}" for i, x in enumerate(lines)))
                elif verb == "STARTTLS" and receiver.context is not None and not tls:
                    send("220 2.0.0 Ready to start TLS")
                    sock = receiver.context.wrap_socket(sock, server_side=True)
                    reader = sock.makefile("rb")
                    tls = True
                    conn.client_cert = sock.getpeercert(binary_form=True) is not None
                elif verb == "MAIL":
                    send("250 2.1.0 Ok")
                elif verb == "RCPT":
                    send("250 2.1.5 Ok")
                elif verb == "DATA":
                    send("354 End data with <CR><LF>.<CR><LF>")
                    body = bytearray()
                    while True:
                        chunk = reader.readline(1 << 20)
                        if not chunk or chunk == b".\r\n":
                            break
                        body += chunk
                    conn.messages.append(bytes(body))
                    with receiver.lock:
                        receiver.queued += 1
                        number = receiver.queued
                    send(f"250 2.0.0 Ok: queued as R{number}")
                elif verb in ("RSET", "NOOP"):
                    send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("502 5.5.2 Command not recognized")
        except (OSError, ssl.SSLError):
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Receiver:
    """One recording receiver on ``addr:port``; ``context`` None means no STARTTLS."""

    def __init__(self, addr: str, port: int, kind: str, name: str, context: ssl.SSLContext | None):
        self.addr, self.port, self.kind, self.name, self.context = addr, port, kind, name, context
        self.connections: list[Connection] = []
        self.queued = 0
        self.lock = threading.Lock()
        self._server = _Server((addr, port), _Handler)
        self._server.receiver = self   # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "Receiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def clear(self) -> None:
        with self.lock:
            self.connections = []

    @property
    def messages(self) -> list[bytes]:
        return [m for c in self.connections for m in c.messages]

    def saw(self, verb: str) -> bool:
        """Did any connection send this command (in clear or under TLS)?"""
        return any(v.lstrip("~") == verb for c in self.connections for v in c.verbs())


def server_context(cert, key, *, request_cert: bool = False, ca=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    if request_cert:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(str(ca))
    return ctx


# ---- where the receivers are, and how mail is routed to each --------------------------------
FORMS = ("b", "n", "m")   # route form: bracketed address, host name (A record), the domain's MX


@dataclass(frozen=True)
class Place:
    """Where one receiver is and how mail is routed to it."""
    kind: str
    form: str
    addr: str
    host: str          # the host name mail is routed to (n, m); a name no route mentions (b)
    domain: str        # the recipient domain
    route: str         # the route file line for the domain ('' for m: DNS finds it)

    @property
    def server_name(self) -> str:
        return f"[{self.addr}]" if self.form == "b" else self.host


def places() -> list[Place]:
    out = []
    for f, form in enumerate(FORMS):
        for i, kind in enumerate(KINDS):
            addr = f"127.0.1.{11 + 10 * f + i}"
            if form == "b":
                host, domain = f"mx.{kind}-b.sweep.test", f"{kind}-b.route.test"
                route = f"{domain} esmtp:[{addr}]"
            elif form == "n":
                host, domain = f"mx.{kind}-n.sweep.test", f"{kind}-n.route.test"
                route = f"{domain} esmtp:{host}"
            else:
                host, domain, route = f"mx.{kind}-m.sweep.test", f"{kind}-m.sweep.test", ""
            out.append(Place(kind, form, addr, host, domain, route))
    return out
