"""Real servers for the TLS-RPT tests: an HTTPS report collector (stdlib http.server over
stdlib ssl) and an SMTP receiver (aiosmtpd) standing for the report domains' MX host. Both
record what they got; nothing is mocked."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:   # noqa: N802 (http.server's name)
        server: Collector = self.server.collector   # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with server.lock:
            server.posts.append(Post(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            failures = server.fail_first.get(self.path, 0)
            if failures:
                server.fail_first[self.path] = failures - 1
        status = 503 if failures else 200
        time.sleep(server.delay.get(self.path, 0))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class Collector:
    """HTTPS on ``addr:port`` with the given certificate; ``fail_first[path] = n`` answers the
    first n POSTs to that path with 503; ``delay[path]`` answers after that many seconds."""

    def __init__(self, addr: str, port: int, cert, key):
        self.posts: list[Post] = []
        self.fail_first: dict[str, int] = {}
        self.delay: dict[str, float] = {}      # path → seconds before the answer
        self.lock = threading.Lock()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self._server = ThreadingHTTPServer((addr, port), _Handler)
        self._server.daemon_threads = True
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._server.collector = self   # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "Collector":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def to(self, path: str) -> list[Post]:
        with self.lock:
            return [p for p in self.posts if p.path == path]


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    content: bytes


@dataclass
class _Sink:
    messages: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):   # noqa: N802 (aiosmtpd's name)
        self.messages.append(Mail(envelope.mail_from, list(envelope.rcpt_tos),
                                  envelope.original_content or envelope.content))
        return "250 2.0.0 Ok: queued"


class SMTPReceiver:
    """An SMTP server on ``addr:port`` that takes every message (the report domain's MX)."""

    def __init__(self, addr: str, port: int):
        self.sink = _Sink()
        self.controller = Controller(self.sink, hostname=addr, port=port, decode_data=False,
                                     server_hostname="mx.rua.rpt.test")

    def start(self) -> "SMTPReceiver":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[Mail]:
        return self.sink.messages
