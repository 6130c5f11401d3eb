"""A minimal SMTP receiver with STARTTLS (stdlib ``ssl``) for the DANE tests, and a client
that fetches the certificate chain a server presents after STARTTLS.

:class:`StartTLSServer` answers 220, EHLO (offering STARTTLS), STARTTLS, EHLO again, QUIT; any
other command gets 502. It serves the chain of its certificate file (leaf first, then the
issuers written after it) on ``addr:port`` until :meth:`stop`.
"""

from __future__ import annotations

import _ssl
import socket
import socketserver
import ssl
import threading


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: "StartTLSServer" = self.server.owner  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        sock.settimeout(20)
        reader = sock.makefile("rb")
        try:
            sock.sendall(f"220 {server.name} ESMTP dane-test\r\n".encode())
            while True:
                line = reader.readline(1000).strip().upper()
                if not line:
                    return
                if line.startswith((b"EHLO", b"HELO")):
                    sock.sendall(f"250-{server.name}\r\n250 STARTTLS\r\n".encode())
                elif line == b"STARTTLS":
                    sock.sendall(b"220 2.0.0 ready\r\n")
                    sock = server.context.wrap_socket(sock, server_side=True)
                    reader = sock.makefile("rb")
                elif line == b"QUIT":
                    sock.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    sock.sendall(b"502 5.5.2 not here\r\n")
        except (OSError, ssl.SSLError):
            return


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class StartTLSServer:
    def __init__(self, addr: str, port: int, name: str, cert_file, key_file):
        self.addr, self.port, self.name = addr, port, name
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert_file), str(key_file))
        self._server = _Server((addr, port), _Handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "StartTLSServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def peer_chain(addr: str, port: int, timeout: float = 10.0) -> list[bytes]:
    """EHLO, STARTTLS, handshake without verification; the chain the server sent (DER, leaf
    first)."""
    with socket.create_connection((addr, port), timeout=timeout) as raw:
        reader = raw.makefile("rb")

        def reply() -> bytes:
            while True:
                line = reader.readline(1000)
                if not line or line[3:4] != b"-":
                    return line

        reply()
        raw.sendall(b"EHLO client.test\r\n")
        reply()
        raw.sendall(b"STARTTLS\r\n")
        if not reply().startswith(b"220"):
            raise RuntimeError("STARTTLS refused")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(raw, server_hostname=None) as tls:
            # Python 3.13 has SSLSocket.get_unverified_chain(); before, the same call is on _sslobj
            getter = getattr(tls, "get_unverified_chain", None) or tls._sslobj.get_unverified_chain
            chain = [c.public_bytes(_ssl.ENCODING_DER) if not isinstance(c, bytes) else c
                     for c in (getter() or [])]
            tls.sendall(b"QUIT\r\n")
            return chain
