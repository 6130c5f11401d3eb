"""One server per spool: a second `mailward serve` on a spool that a running server uses —
the same config, or another port — exits 75 with one line and changes nothing; the running
server's message in flight is accepted and delivered, its PID file still names it and
`queue flush` still reaches it. A PID file that no server holds locked names nobody."""

from __future__ import annotations

import os
import re
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

from mailward.config import default_config_text
from tests.conftest import free_port
from tests.spool_view import partial_body, partial_files


def mailward(*args: str, cwd: Path, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailward", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def spool_state(spool: Path) -> dict[str, tuple]:
    """Every file and folder in the spool with what a change would alter."""
    out = {}
    for path in sorted(spool.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(spool))] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_uid)
    return out


def assert_refused(result: subprocess.CompletedProcess, spool: Path, pid: int) -> None:
    assert result.returncode == 75, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == (f"mailward: {spool}: this spool is in use by the mailward server with pid {pid} "
                        f"(its lock is {spool}/mailward.pid); fix: stop that server first, or give this one "
                        "its own spool.directory")


def start_data(mta) -> smtplib.SMTP:
    """A client that has sent the first part of a message, more than the log spool keeps in
    memory: whatever the spool's format, its partial file is in spool/incoming (the file a
    start's recovery would delete), and the spool is quiet when this returns."""
    s = smtplib.SMTP(mta.host, mta.port, timeout=10)
    s.ehlo("client.test")
    s.mail("a@client.test")
    s.rcpt("u@localhost")
    code, _ = s.docmd("DATA")
    assert code == 354
    s.send(partial_body())
    deadline = time.time() + 5
    last = None
    while time.time() < deadline:
        state = spool_state(mta.spool)
        if partial_files(mta) and state == last:
            break   # the server has written all it got: nothing changed for 0.1 s
        last = state
        time.sleep(0.1)
    assert len(partial_files(mta)) == 1, partial_files(mta)
    return s


def finish_data(s: smtplib.SMTP) -> str:
    s.send(b"second half\r\n.\r\n")
    code, text = s.getreply()
    assert code == 250, (code, text)
    s.quit()
    return text.decode().split()[1]


def test_second_start_with_the_same_config_changes_nothing(make_mta):
    mta = make_mta({"server": {"reverse_lookup": False}})
    pid_file = mta.spool / "mailward.pid"
    assert pid_file.read_text() == f"{mta.proc.pid}\n"
    client = start_data(mta)
    before = spool_state(mta.spool)

    second = mailward("serve", "-c", str(mta.config), cwd=mta.base)

    assert_refused(second, mta.spool, mta.proc.pid)
    assert spool_state(mta.spool) == before
    assert mta.proc.poll() is None
    qid = finish_data(client)
    assert "Subject: in flight" in mta.wait_message("u", qid)
    assert "451" not in mta.log_text() and "discarded_partial" not in mta.log_text()
    assert pid_file.read_text() == f"{mta.proc.pid}\n"
    listed = mailward("queue", "-c", str(mta.config), "list", cwd=mta.base)
    assert listed.returncode == 0 and "in the queue" in listed.stdout
    flushed = mailward("queue", "-c", str(mta.config), "flush", cwd=mta.base)
    assert (flushed.returncode, flushed.stdout, flushed.stderr) == (0, "queue run requested\n", "")
    time.sleep(0.2)
    assert mta.proc.poll() is None   # SIGUSR1 went to the server, which handles it


def test_another_port_on_the_same_spool_is_refused(make_mta):
    mta = make_mta({"server": {"reverse_lookup": False, "workers": 2}})
    client = start_data(mta)
    before = spool_state(mta.spool)
    other = mta.base / "other"
    other.mkdir()
    port = free_port()
    (other / "mailward.toml").write_text(default_config_text({
        "server": {"listen": [f"127.0.0.1:{port}"], "hostname": "mx2.test"},
        "spool": {"directory": str(mta.spool)}, "local": {"maildir_root": "maildir"},
        "log": {"file": "mailward.log"}}))

    second = mailward("serve", "-c", str(other / "mailward.toml"), cwd=other)

    assert_refused(second, mta.spool, mta.proc.pid)   # the master holds the lock
    assert spool_state(mta.spool) == before
    with socket.socket() as s:   # the second one never listened
        assert s.connect_ex(("127.0.0.1", port)) != 0
    qid = finish_data(client)
    mta.wait_message("u", qid)
    assert (mta.spool / "mailward.pid").read_text() == f"{mta.proc.pid}\n"


def test_workers_keep_the_spool_locked_until_the_last_one_is_gone(make_mta):
    """The master is killed: its workers hold the lock until they have stopped by themselves."""
    from mailward.spool.store import running_server

    mta = make_mta({"server": {"reverse_lookup": False, "workers": 2, "shutdown_grace": 3}})
    deadline = time.time() + 10
    while len(re.findall(r"daemon=started, listen=[^,]+, starttls=", mta.log_text())) < 2 \
            and time.time() < deadline:
        time.sleep(0.05)
    workers = [int(p) for p in re.findall(r"mailward\[(\d+)\]: daemon=started, listen=[^,]+, starttls=",
                                          mta.log_text())]
    assert len(workers) == 2
    master = mta.proc.pid
    client = start_data(mta)         # keeps its worker busy for shutdown_grace after it notices
    mta.kill9()
    assert running_server(mta.spool) == master     # still locked, by the workers
    mta.wait_log("is gone; stopping", timeout=5)
    assert running_server(mta.spool) == master
    client.close()
    deadline = time.time() + 10
    while any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"
              for p in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"
                   for p in workers)
    mta.start()     # the lock went with the last worker
    assert (mta.spool / "mailward.pid").read_text() == f"{mta.proc.pid}\n"


def test_a_pid_file_nobody_locks_names_no_server(make_mta):
    mta = make_mta({"server": {"reverse_lookup": False}})
    mta.stop()
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (mta.spool / "mailward.pid").write_text(f"{bystander.pid}\n")   # a reused pid
        flushed = mailward("queue", "-c", str(mta.config), "flush", cwd=mta.base)
        assert flushed.returncode == 2
        assert flushed.stderr == (f"mailward: {mta.spool}/mailward.pid: no running mailward server to flush "
                                  f"the queue (none holds the spool's lock); fix: start it: mailward serve "
                                  f"-c {mta.config}\n")
        time.sleep(0.1)
        assert bystander.poll() is None   # SIGUSR1 would have killed it
    finally:
        bystander.kill()
        bystander.wait()
    mta.start()
    assert (mta.spool / "mailward.pid").read_text() == f"{mta.proc.pid}\n"
