"""Privileges: started by root, the server binds (here a port below 1024) and then runs as
server.user; what it writes belongs to that account, what root left behind is handed over
without following links; root without server.user on a privileged port is refused in one
line; a key only root can read is refused at start, since reloads read it as server.user.

These tests need root (CI runs as root) and create the system account ``mwtest``. The server
runs on an interpreter that account can execute (this one, or the system's Python of the same
version with this environment's packages), from a folder it can reach.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import MTA, ROOT
from tests.spool_view import message_files, queue_message, queued, spool_format, spool_of

USER = "mwtest"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the server drops root's privileges")

def account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    if not shutil.which("useradd"):
        pytest.skip("useradd is not installed")
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                   check=True, capture_output=True)
    return pwd.getpwnam(USER)


def proc_ids(pid: int) -> dict[str, list[int]]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            out[key] = [int(v) for v in value.split()]
    return out


def owner(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


def free_privileged_port() -> int:
    for port in range(1000, 600, -1):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """(python, env) with which the account can run mailward; skips when there is none."""
    pw = account()
    import cryptography
    site_packages = Path(cryptography.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(site_packages)]),
               PYTHONDONTWRITEBYTECODE="1")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        try:
            probe = subprocess.run([python, "-c", "import mailward.cli, OpenSSL, dns, cryptography"], env=env,
                                   user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd="/",
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            yield python, env
            return
    pytest.skip(f"no Python {version} that {USER} can run with mailward's packages")


class DroppingMTA(MTA):
    """An MTA whose config names server.user, started by root with an interpreter the account
    can run, in a folder the account can reach."""

    def __init__(self, base: Path, settings: dict, runtime, extra: dict[str, str | bool]):
        super().__init__(base, settings)
        self.python, self.env = runtime
        listen = settings.get("server", {}).get("listen")
        if listen:
            self.port = int(listen[0].rpartition(":")[2])
        lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())   # JSON strings and bools are TOML
        self.config.write_text(self.config.read_text().replace("[server]\n", "[server]\n" + lines, 1))

    def start(self, timeout: float = 15) -> "DroppingMTA":
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen([self.python, "-m", "mailward", "serve", "-c", str(self.config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.base, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailward exited {self.proc.returncode}: {self.proc.stdout.read().decode()}")
            text = self.log.read_text()[offset:] if self.log.exists() else ""
            if "daemon=started" in text:
                return self
            time.sleep(0.05)
        raise RuntimeError("mailward did not start: " + self.log_text())

    def serve_once(self) -> subprocess.CompletedProcess:
        """A start that is expected to fail: its exit status and output."""
        return subprocess.run([self.python, "-m", "mailward", "serve", "-c", str(self.config)], capture_output=True,
                              text=True, cwd=self.base, env=self.env, timeout=20)


@pytest.fixture
def reachable(pki):
    """A folder the account can reach, holding the test PKI the way an admin would: the key
    owned by the account, mode 0600, in a 0700 folder of its own."""
    pw = pwd.getpwnam(USER)
    base = Path(tempfile.mkdtemp(prefix="mailward-drop-"))
    os.chmod(base, 0o755)
    certs = base / "certs"
    certs.mkdir(mode=0o700)
    for src in (pki.server_cert, pki.server_key, pki.ca):
        shutil.copy(src, certs / src.name)
    os.chmod(certs / pki.server_key.name, 0o600)
    for path in (certs, *certs.iterdir()):
        os.chown(path, pw.pw_uid, pw.pw_gid)
    files = {"cert_file": str(certs / pki.server_cert.name), "key_file": str(certs / pki.server_key.name),
             "ca_file": str(certs / pki.ca.name)}
    started: list[MTA] = []
    counter = iter(range(100))

    def make(settings: dict, runtime, extra: dict, start: bool = True) -> DroppingMTA:
        where = base / f"mta{next(counter)}"
        where.mkdir()
        settings = {k: dict(v) for k, v in settings.items()}
        settings.setdefault("tls", files)
        mta = DroppingMTA(where, settings, runtime, extra)
        started.append(mta)
        return mta.start() if start else mta

    yield make
    for mta in started:
        mta.stop()
    shutil.rmtree(base)


def send_over_tls(mta, ca: Path, user: str, subject: str) -> str:
    ctx = ssl.create_default_context(cafile=str(ca))
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.starttls(context=ctx)
        s.ehlo("client.test")
        s.mail("a@client.test")
        s.rcpt(f"{user}@localhost")
        code, text = s.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
        assert code == 250, (code, text)
    return text.decode().split()[1]


def test_binds_port_below_1024_then_runs_as_server_user(reachable, runtime, pki):
    pw = pwd.getpwnam(USER)
    ids = (pw.pw_uid, pw.pw_gid)
    port = free_privileged_port()
    mta = reachable({"server": {"listen": [f"127.0.0.1:{port}"], "reverse_lookup": False}}, runtime,
                    {"user": USER}, start=False)
    # what an earlier run as root left: a deferred message, a Maildir, and two traps
    from mailward.spool.store import Envelope, Recipient, new_queue_id
    old = Envelope(new_queue_id(), "old@client.test", {}, [Recipient("old@localhost")], time.time())
    # in the format this config writes: a queue file, or a log segment root made
    queue_message(mta, old, b"Subject: left by root\r\n\r\nold\r\n", spool_format(mta))
    spool_of(mta).record(old.queue_id, 0, "deferred", "451 4.3.0 try later", 1)
    old_files = message_files(mta, old.queue_id)
    queue = mta.spool / "queue"
    (mta.maildir / "old" / "new").mkdir(parents=True)
    secret = mta.base / "secret"
    secret.write_text("root's")
    os.link(secret, mta.spool / "trap.hardlink")             # a hard link to a file elsewhere
    os.symlink(secret, mta.spool / "trap.symlink")           # a symbolic link to it
    mta.start()

    status = proc_ids(mta.proc.pid)
    assert status["Uid"] == [pw.pw_uid] * 4 and status["Gid"] == [pw.pw_gid] * 4
    assert status["Groups"] == [pw.pw_gid]
    assert f"privileges=dropped, user={USER}, uid={pw.pw_uid}" in mta.log_text()
    assert "running as root" not in mta.log_text()

    qid = send_over_tls(mta, pki.ca, "u", "dropped")
    text = mta.wait_message("u", qid)
    assert "Subject: dropped" in text
    delivered = mta.maildir_files("u")[0]
    for path in (delivered, delivered.parent, mta.maildir / "u", mta.maildir, mta.maildir / "old",
                 mta.maildir / "old" / "new", mta.spool, queue, mta.spool / "incoming",
                 mta.spool / "mailward.pid", mta.log, old_files[0].parent, *old_files[0].parent.glob("*")):
        assert owner(path) == ids, path
    assert (mta.spool / "mailward.pid").read_text() == f"{mta.proc.pid}\n"
    assert owner(secret) == (0, 0) and owner(mta.spool / "trap.symlink") == (0, 0)

    mta.proc.send_signal(signal.SIGHUP)              # the key is read again, as mwtest
    mta.wait_log("reload=ok")
    assert old.queue_id in queued(mta)               # deferred: not due for retry_first
    flushed = subprocess.run([mta.python, "-m", "mailward", "queue", "-c", str(mta.config), "flush"],
                             capture_output=True, text=True, env=mta.env, timeout=20)
    assert flushed.returncode == 0, flushed.stderr
    assert "Subject: left by root" in mta.wait_mail("old", 1)[0].read_text()
    assert old.queue_id not in queued(mta)           # removed by mwtest from a folder root made
    mta.stop()
    assert mta.proc.returncode == 0


def test_workers_run_as_server_user(reachable, runtime, pki):
    pw = pwd.getpwnam(USER)
    group = grp.getgrgid(pw.pw_gid).gr_name
    mta = reachable({"server": {"workers": 2, "reverse_lookup": False}}, runtime, {"user": USER, "group": group})
    deadline = time.time() + 10
    pattern = r"mailward\[(\d+)\]: daemon=started, listen=[^,]+, starttls="
    while len(re.findall(pattern, mta.log_text())) < 2 and time.time() < deadline:
        time.sleep(0.05)
    workers = [int(p) for p in re.findall(pattern, mta.log_text())]
    assert len(workers) == 2
    for pid in [mta.proc.pid, *workers]:
        assert proc_ids(pid)["Uid"] == [pw.pw_uid] * 4, pid
    qid = send_over_tls(mta, pki.ca, "w", "via a worker")
    mta.wait_message("w", qid)
    received_by = re.search(rf"mailward\[(\d+)\]: {qid}: from=", mta.log_text()).group(1)
    assert int(received_by) in workers
    assert owner(mta.maildir_files("w")[0]) == (pw.pw_uid, pw.pw_gid)


def test_root_without_server_user_on_a_privileged_port_is_refused(reachable, runtime):
    port = free_privileged_port()
    mta = reachable({"server": {"listen": [f"127.0.0.1:{port}"]}}, runtime, {}, start=False)
    out = mta.serve_once()
    assert out.returncode == 2
    assert out.stderr == (f"mailward: {mta.config}: server.user: mailward would serve 127.0.0.1:{port} as root; "
                          "fix: set server.user to an unprivileged account (e.g. useradd --system "
                          "--no-create-home mailward), or server.allow_root = true to run as root on purpose\n")
    assert not mta.spool.exists()

    allowed = reachable({"server": {"listen": [f"127.0.0.1:{port}"]}}, runtime, {"allow_root": True})
    assert proc_ids(allowed.proc.pid)["Uid"][0] == 0 and "running as root" not in allowed.log_text()
    allowed.stop()

    high = reachable({}, runtime, {})       # above 1024 root is not needed: it runs, with a warning
    assert proc_ids(high.proc.pid)["Uid"][0] == 0
    assert "check=warning" in high.log_text() and "running as root (server.user is not set)" in high.log_text()


def test_a_key_only_root_can_read_is_refused_at_start(reachable, runtime, pki):
    mta = reachable({}, runtime, {"user": USER}, start=False)
    key = Path(mta.settings["tls"]["key_file"])
    os.chown(key, 0, 0)
    try:
        out = mta.serve_once()
    finally:
        os.chown(key, pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
    assert out.returncode == 2
    assert out.stderr == (f"mailward: {key}: tls.key_file is not readable by server.user {USER} after the "
                          f"privilege drop; fix: chown {USER} {key} (keep mode 0600)\n")


def test_an_unknown_account_is_one_line(reachable, runtime):
    mta = reachable({}, runtime, {"user": "no-such-account-here"}, start=False)
    out = mta.serve_once()
    assert out.returncode == 2
    assert out.stderr == (f"mailward: {mta.config}: server.user: no account named 'no-such-account-here'; fix: "
                          "create it (useradd --system --no-create-home no-such-account-here) or name an "
                          "existing one\n")
    assert not mta.spool.exists()


def test_a_spool_out_of_the_accounts_reach_is_one_line(reachable, runtime):
    mta = reachable({"spool": {"directory": "private/spool"}}, runtime, {"user": USER}, start=False)
    private = mta.base / "private"
    private.mkdir(mode=0o700)
    out = mta.serve_once()
    assert out.returncode == 2
    assert out.stderr == (f"mailward: {private}/spool: spool.directory is out of reach of server.user {USER}: its "
                          f"folder {private} cannot be searched after the privilege drop; fix: chown {USER} "
                          f"{private} (or chmod o+x {private})\n")


def test_a_removal_by_root_leaves_a_journal_the_server_can_append_to(reachable, runtime, pki):
    """`mailward queue delete` run by root while the server runs as server.user journals the
    removal in a file the server must append to when it removes the next message of the same
    segment: the journal is handed to the log folder's owner, and that delivery goes through."""
    pw = pwd.getpwnam(USER)
    mta = reachable({"server": {"reverse_lookup": False}, "spool": {"format": "log"}}, runtime,
                    {"user": USER}, start=False)
    from mailward.spool.store import Envelope, Recipient, Spool, new_queue_id
    spool = Spool(mta.spool, fsync=False, format="log")      # one segment, written by root
    ids = []
    for user in ("gone", "kept"):
        env = Envelope(new_queue_id(), "old@client.test", {}, [Recipient(f"{user}@localhost")], time.time())
        incoming = spool.begin(env)
        incoming.write(f"Subject: {user}\r\n\r\nbody\r\n".encode())
        spool.commit(incoming)
        spool.hold(env.queue_id)
        ids.append(env.queue_id)
    with spool.log.writer.lock:
        spool.log.writer.seal()
    (segment,) = [n for n in os.listdir(mta.spool / "log") if not n.startswith(".")]
    mta.start()

    def queue_cmd(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "mailward", "queue", "-c", str(mta.config), *args],
                              capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert done.returncode == 0, done.stderr

    queue_cmd("delete", ids[0])                              # as root
    journal = mta.spool / "log" / f".removed-{segment}"
    assert owner(journal) == (pw.pw_uid, pw.pw_gid)
    queue_cmd("release", ids[1])
    queue_cmd("flush")
    assert "Subject: kept" in mta.wait_mail("kept", 1)[0].read_text()
    deadline = time.time() + 10
    while queued(mta) and time.time() < deadline:
        time.sleep(0.05)
    assert queued(mta) == [] and not (mta.spool / "log" / segment).exists()
    assert "Permission denied" not in mta.log_text() and "Traceback" not in mta.log_text()
    assert not (mta.maildir / "gone").exists()
