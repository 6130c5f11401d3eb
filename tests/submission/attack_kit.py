"""What the attack tests on submission and AUTH share (tests/submission/test_attacks*.py): a raw
client over a socket (ssl for TLS) so that the bytes and their timing are the test's, not a
library's; base64 and PLAIN helpers; a users file made by the real ``mailward user add`` and a
real ``mailward serve`` with mx, submission and submissions listeners."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
from pathlib import Path

import pytest

from tests.conftest import MTA
from tests.submission.conftest import (
    USERS,
    Submission,
    submission_settings,
    user_add,
    write_routes,
)

ALICE = USERS["alice"]
CAROL_STORED = "I\u00adX carol"          # RFC 4013 §3: SOFT HYPHEN maps to nothing
MSG = b"From: alice@example.org\r\nSubject: x\r\n\r\nhello\r\n"


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def plain(user: str, password: str, authzid: str = "") -> str:
    return b64(f"{authzid}\0{user}\0{password}".encode())


class Raw:
    """One SMTP client connection over a raw socket; ``implicit``: TLS from the first octet."""

    def __init__(self, port: int, ctx: ssl.SSLContext | None = None, *, host: str = "127.0.0.1",
                 source: str | None = None, greet: bool = True, timeout: float = 20):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if ctx is not None:
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.greeting = self.reply() if greet else None

    def line(self) -> str:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode()

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line[3:4] != "-":
                return int(line[:3]), "\n".join(x[4:] for x in lines)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, text: str) -> tuple[int, str]:
        self.send(text.encode() + b"\r\n")
        return self.reply()

    def ehlo(self) -> str:
        code, text = self.cmd("EHLO client.test")
        assert code == 250, text
        return text

    def starttls(self, ctx: ssl.SSLContext) -> None:
        assert self.cmd("STARTTLS")[0] == 220
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def gone(self) -> bool:
        """The server closed the connection (after whatever it still had to say)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, ssl.SSLError, OSError):
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Raw":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tls(pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def implicit(s: Submission, pki, **kw) -> Raw:
    """A client on the submissions port, greeted and past EHLO."""
    c = Raw(s.submissions, tls(pki), **kw)
    c.ehlo()
    return c


def auth_plain(c: Raw, user: str, password: str) -> tuple[int, str]:
    return c.cmd(f"AUTH PLAIN {plain(user, password)}")


def log_since(s: Submission, offset: int) -> str:
    return s.mta.log_text()[offset:]


@pytest.fixture(scope="module")
def users(tmp_path_factory, users_file) -> Path:
    """alice and bob, plus carol (a password SASLprep changes) and client.test (the CN of the
    test CA's client certificate)."""
    path = tmp_path_factory.mktemp("attack-users") / "users"
    shutil.copyfile(users_file, path)
    os.chmod(path, 0o600)
    user_add(path, "carol", CAROL_STORED)
    user_add(path, "client.test", "cert user pw")
    return path


@pytest.fixture(scope="module")
def srv(tmp_path_factory, pki, users) -> Submission:
    """No failure delay, no practical failure limit, everything logged (level debug)."""
    settings, ports = submission_settings(pki, users, submission={"auth_failure_delay": 0.0,
                                                                  "max_auth_failures": 10000},
                                          log={"level": "debug"})
    mta = MTA(tmp_path_factory.mktemp("attacks"), settings)
    write_routes(mta)
    mta.start()
    yield Submission(mta, *ports)
    mta.kill9()    # messages wait for a next hop that never answers: a clean stop would wait for them
