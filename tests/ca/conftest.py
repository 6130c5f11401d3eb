"""Fixtures for the certificate tool's tests: a CA folder in tmp_path, the CLI as a
subprocess, the real ``openssl`` binary, and a snapshot of a folder to prove it unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailward.ca.authority import init_ca

from ca_testlib import CA_CN, CA_SUBJECT, PASSPHRASE


@pytest.fixture(scope="session")
def openssl_bin() -> str:
    found = shutil.which("openssl")
    if not found:
        pytest.skip("the openssl binary is not installed")
    return found


@pytest.fixture
def openssl(openssl_bin):
    def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([openssl_bin, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    return run


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    """A CA with an encrypted ECDSA key (the seed's "-newca" with a passphrase)."""
    path = tmp_path / "ca"
    init_ca(path, CA_CN, CA_SUBJECT, passphrase=PASSPHRASE)
    return path


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """The server's certificate folder, 0700 as the seed's chmod -R go-rwx leaves it."""
    path = tmp_path / "certs"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def cli(tmp_path: Path):
    """Run ``python -m mailward ARGS`` in tmp_path with MAILWARD_TEST_PW set to the passphrase."""
    def run(*args: str | Path, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "MAILWARD_TEST_PW": PASSPHRASE.decode(), **(env or {})}
        return subprocess.run([sys.executable, "-m", "mailward", *map(str, args)], capture_output=True,
                              text=True, cwd=tmp_path, env=full_env, input=stdin or "", timeout=60)
    return run
