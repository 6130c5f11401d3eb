"""A real HTTPS policy host for the MTA-STS tests: ``http.server`` + ``ssl`` in a thread on
127.0.0.1, choosing its certificate by the SNI name (so one server can present the right
certificate to one domain and a wrong one to another) and answering each ``Host`` as the test
says. It counts the requests per host, so a test can see that a cached policy was not fetched."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Answer:
    """What the host answers for one ``mta-sts.<domain>``."""
    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0            # seconds to wait before answering (the timeout case)
    length: bool = True           # send Content-Length (False: the body ends at the close)


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:   # quiet
        pass

    def do_GET(self) -> None:               # noqa: N802 (http.server's name)
        host: PolicyHost = self.server.host  # type: ignore[attr-defined]
        name = (self.headers.get("Host") or "").split(":")[0].lower()
        with host.lock:
            host.requests[name] += 1
            host.paths.append((name, self.path))
            answer = host.answers.get(name)
        if answer is None or self.path != "/.well-known/mta-sts.txt":
            answer = Answer(b"not found\n", 404)
        if answer.delay:
            time.sleep(answer.delay)
        try:
            self.send_response(answer.status)
            if answer.content_type:
                self.send_header("Content-Type", answer.content_type)
            if answer.length:
                self.send_header("Content-Length", str(len(answer.body)))
            for k, v in answer.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(answer.body)
        except (OSError, ssl.SSLError):
            pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, context: ssl.SSLContext):
        super().__init__(addr, handler)
        self.context = context

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.settimeout(10)
        return sock, addr

    def finish_request(self, request, client_address):
        # the handshake in the handler's thread: a client that rejects the certificate does
        # not stop the server
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class PolicyHost:
    """The HTTPS server; ``certs`` maps an SNI name to (cert, key); ``default`` is used for others."""

    def __init__(self, addr: str, port: int, default: tuple, certs: dict[str, tuple]):
        def context_for(cert, key):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert), str(key))
            return ctx

        self.contexts = {name: context_for(*pair) for name, pair in certs.items()}
        main = context_for(*default)

        def choose(sslobj, name, _ctx):
            if name and name.lower() in self.contexts:
                sslobj.context = self.contexts[name.lower()]

        main.sni_callback = choose
        self.answers: dict[str, Answer] = {}
        self.requests: Counter = Counter()
        self.paths: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._server = _Server((addr, port), _Handler, main)
        self._server.host = self   # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "PolicyHost":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve(self, domain: str, answer: Answer) -> None:
        with self.lock:
            self.answers[f"mta-sts.{domain}"] = answer

    def count(self, domain: str) -> int:
        with self.lock:
            return self.requests[f"mta-sts.{domain}"]
