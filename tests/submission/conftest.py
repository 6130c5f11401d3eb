"""A real ``mailward serve`` with three listeners — mx, ``submission`` (587-style, STARTTLS)
and ``submissions`` (465-style, implicit TLS) — on free loopback ports, a users file made by
the real ``mailward user add`` command, and helpers for Python's smtplib."""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import MTA, free_port, tls_settings
from tests.spool_view import stored_envelope

USERS = {"alice": "alice secret pw", "bob": "bob pw 2"}


def user_add(users_file: Path, name: str, password: str) -> None:
    """``mailward user add NAME --file FILE`` with the password in MAILWARD_PASSWORD."""
    env = dict(os.environ, MAILWARD_PASSWORD=password)
    out = subprocess.run([sys.executable, "-m", "mailward", "user", "--file", str(users_file), "add", name],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout


@pytest.fixture(scope="session")
def users_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users"
    for name, password in USERS.items():
        user_add(path, name, password)
    return path


@dataclass
class Submission:
    mta: MTA
    mx: int
    submission: int
    submissions: int

    @property
    def host(self) -> str:
        return self.mta.host


def submission_settings(pki, users_file: Path, **sections) -> tuple[dict, list[int]]:
    ports = [free_port() for _ in range(3)]
    settings = {
        "server": {"listen": [f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]} submission",
                              f"127.0.0.1:{ports[2]} submissions"], "reverse_lookup": False},
        "tls": tls_settings(pki),
        "auth": {"backend": "file", "users_file": str(users_file)},
        "submission": {"auth_failure_delay": 0.0},
        "local": {"domains": ["localhost", "mx.test", "example.org"]},
        "spool": {"fsync": False},
        # remote.test goes to a next hop that never answers: relayed mail stays queued, readable
        "delivery": {"route_file": "routes", "retry_first": 3600, "connect_timeout": 120},
    }
    for section, values in sections.items():
        settings.setdefault(section, {}).update(values)
    return settings, ports


def make_submission(make_mta, pki, users_file: Path, **sections) -> Submission:
    settings, ports = submission_settings(pki, users_file, **sections)
    mta = make_mta(settings, start=False)
    write_routes(mta)
    return Submission(mta.start(), *ports)


_SILENT: list[socket.socket] = []


def silent_port() -> int:
    """A port that accepts TCP connections and never answers (kept open for the session): a
    delivery attempt there waits for the greeting, so the message stays in the queue."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    _SILENT.append(sock)
    return sock.getsockname()[1]


def write_routes(mta: MTA) -> None:
    (mta.base / "routes").write_text(f"remote.test  [127.0.0.1]:{silent_port()}\n")


def spooled_envelope(mta: MTA, qid: str) -> dict:
    """The envelope as the spool holds it (its JSON object), whatever the spool's format."""
    return stored_envelope(mta, qid)


@pytest.fixture(scope="module")
def sub(tmp_path_factory, pki, users_file) -> Submission:
    """One server shared by a test module (tests that change settings start their own)."""
    settings, ports = submission_settings(pki, users_file)
    mta = MTA(tmp_path_factory.mktemp("submission"), settings)
    write_routes(mta)
    mta.start()
    yield Submission(mta, *ports)
    mta.stop()


def context(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


def starttls_client(s: Submission, pki, port: int | None = None, **kw) -> smtplib.SMTP:
    client = smtplib.SMTP(s.host, port or s.submission, local_hostname="client.test", timeout=15, **kw)
    client.ehlo()
    client.starttls(context=context(pki))
    client.ehlo()
    return client


def implicit_client(s: Submission, pki) -> smtplib.SMTP_SSL:
    client = smtplib.SMTP_SSL(s.host, s.submissions, local_hostname="client.test", timeout=15,
                              context=context(pki))
    client.ehlo()
    return client


def queue_id(reply: bytes | str) -> str:
    text = reply.decode() if isinstance(reply, bytes) else reply
    return text.split()[1]
