"""Fixtures for the AUTH backends: a users file made with cheap argon2id parameters (the
checks stay real but take a millisecond), and a real Dovecot auth service in a tmp folder."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import argon2
import pytest

from mailward.auth.users import make_entry

CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
DOVECOT = "/usr/sbin/dovecot"


def users_file(folder: Path, users: dict[str, str], mode: int = 0o640) -> Path:
    """A users file holding ``users`` (name -> password), hashed cheaply."""
    path = folder / "users"
    lines = ["# test users"] + [str(make_entry(name, pw, hasher=CHEAP)) for name, pw in users.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(mode)
    return path


@dataclass
class Dovecot:
    dir: Path
    socket: Path
    conf: Path
    log: Path
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> None:
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited {self.proc.returncode}: {self.proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("dovecot did not create its auth socket in time")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM to the whole process group (master, auth, anvil, log...), as a service stop does."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:   # the children outlive the master a little
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.stderr.close()
        self.proc = None


DOVECOT_CONF = """\
# A Dovecot with nothing but its auth service: no protocols, so no network listener at all.
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = mailward-test-{name}
log_path = {dir}/dovecot.log
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = yes
auth_debug = yes
passdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={dir}/home
}}
service auth {{
  unix_listener {dir}/auth-client {{
    mode = 0600
  }}
}}
# The auth process (default_internal_user, "dovecot") must reach anvil's penalty socket, or
# Dovecot drops an auth client after the first failure.
service anvil {{
  unix_listener anvil-auth-penalty {{
    user = $default_internal_user
    mode = 0600
  }}
}}
"""


@pytest.fixture(scope="module")
def dovecot():
    """A running Dovecot auth service: alice has {PLAIN}, carol {SHA512-CRYPT}."""
    if not os.path.exists(DOVECOT):
        pytest.skip("dovecot is not installed (scripts/install-test-deps)")
    if os.geteuid() != 0:
        pytest.skip("dovecot -F needs root here (its services change user)")
    folder = Path(tempfile.mkdtemp(prefix="mwdc", dir="/tmp"))   # short: a UNIX socket path has 108 octets
    folder.chmod(0o755)   # Dovecot's auth process runs as its own account and reads the passwd file
    crypt = subprocess.run(["openssl", "passwd", "-6", "carol pw"], capture_output=True, text=True,
                           check=True).stdout.strip()
    (folder / "passwd").write_text(f"alice:{{PLAIN}}alice pw\ncarol:{{SHA512-CRYPT}}{crypt}\n")
    conf = folder / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(dir=folder, name=folder.name))
    dc = Dovecot(folder, folder / "auth-client", conf, folder / "dovecot.log")
    dc.start()
    try:
        yield dc
    finally:
        dc.stop()
        shutil.rmtree(folder, ignore_errors=True)
