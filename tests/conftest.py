"""Shared fixtures: a test PKI made with mailward's own CA tool, and real mailward servers
started as subprocesses on 127.0.0.1 with their own config, spool, Maildir and log."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailward.config import default_config_text

ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class PKI:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    selfsigned_cert: Path
    selfsigned_key: Path
    other_ca: Path
    other_cert: Path
    other_key: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PKI:
    from mailward.ca import authority

    d = tmp_path_factory.mktemp("pki")
    authority.init_ca(d / "ca", "Test CA", subject="/C=XX/O=Mailward Test")
    authority.issue(d / "ca", "localhost", ["localhost", "127.0.0.1"], d / "server.pem", d / "server-key.pem",
                    usage="both")
    authority.issue(d / "ca", "client.test", ["client.test"], d / "client.pem", d / "client-key.pem",
                    usage="client")
    authority.self_signed("selfsigned.test", d / "self.pem", d / "self-key.pem",
                          subject="/C=XX/O=Self Signed")
    authority.init_ca(d / "other", "Other CA", subject="/C=XX/O=Other")
    authority.issue(d / "other", "other.test", ["other.test"], d / "other.pem", d / "other-key.pem",
                    usage="client")
    return PKI(d, d / "ca" / "ca.pem", d / "server.pem", d / "server-key.pem", d / "client.pem",
               d / "client-key.pem", d / "self.pem", d / "self-key.pem", d / "other" / "ca.pem",
               d / "other.pem", d / "other-key.pem")


class MTA:
    """A real mailward server process."""

    def __init__(self, base: Path, settings: dict, host: str = "127.0.0.1"):
        self.base = base
        self.host = host
        self.port = free_port(host)
        settings = {k: dict(v) for k, v in settings.items()}
        settings.setdefault("server", {}).setdefault("listen", [f"{host}:{self.port}"])
        settings["server"].setdefault("hostname", "mx.test")
        settings.setdefault("spool", {}).setdefault("directory", "spool")
        settings.setdefault("local", {}).setdefault("maildir_root", "maildir")
        # most tests mail made-up users: accept them unless the test lists its users
        settings["local"].setdefault("accept_unknown_users", not settings["local"].get("users"))
        settings.setdefault("log", {}).setdefault("file", "mailward.log")
        self.settings = settings
        self.config = base / "mailward.toml"
        self.config.write_text(default_config_text(settings))
        self.log = base / settings["log"]["file"]
        self.maildir = base / settings["local"]["maildir_root"]
        self.spool = base / settings["spool"]["directory"]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15) -> "MTA":
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen([sys.executable, "-m", "mailward", "serve", "-c", str(self.config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.base)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailward exited {self.proc.returncode}: {self.proc.stdout.read().decode()}")
            text = self.log.read_text()[offset:] if self.log.exists() else ""
            if "daemon=started" in text or '"daemon": "started"' in text:
                return self
            time.sleep(0.05)
        raise RuntimeError("mailward did not start: " + (self.log.read_text() if self.log.exists() else ""))

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_log(self, text: str, timeout: float = 10) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            content = self.log_text()
            if text in content:
                return content
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in log:\n{self.log_text()}")

    def maildir_files(self, user: str) -> list[Path]:
        new = self.maildir / user / "new"
        return sorted(new.iterdir()) if new.exists() else []

    def wait_message(self, user: str, queue_id: str, timeout: float = 10) -> str:
        """The text of the Maildir file holding ``queue_id`` (waits for local delivery)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for path in self.maildir_files(user):
                text = path.read_text(errors="replace")
                if queue_id in text:
                    return text
            time.sleep(0.05)
        raise AssertionError(f"{queue_id} not delivered to {user}\n{self.log_text()}")

    def wait_mail(self, user: str, count: int = 1, timeout: float = 10) -> list[Path]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            files = self.maildir_files(user)
            if len(files) >= count:
                return files
            time.sleep(0.05)
        raise AssertionError(f"{user}: {len(self.maildir_files(user))} of {count} messages\n{self.log_text()}")


def tls_settings(pki: PKI, **extra) -> dict:
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key), "ca_file": str(pki.ca)}
    tls.update(extra)
    return tls


@pytest.fixture
def make_mta(tmp_path):
    started: list[MTA] = []
    counter = iter(range(100))

    def make(settings: dict | None = None, start: bool = True, host: str = "127.0.0.1") -> MTA:
        base = tmp_path / f"mta{next(counter)}"
        base.mkdir()
        mta = MTA(base, settings or {}, host)
        started.append(mta)
        return mta.start() if start else mta

    yield make
    for mta in started:
        mta.stop()


@pytest.fixture(scope="module")
def mta(tmp_path_factory, pki):
    """One TLS-enabled server shared by a test module."""
    base = tmp_path_factory.mktemp("mta")
    server = MTA(base, {"tls": tls_settings(pki), "local": {"domains": ["localhost", "mx.test"]}})
    server.start()
    yield server
    server.stop()


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} is not installed (make test installs it)")
    return path
