"""Where the lines go: syslog (a unix datagram socket the test binds stands in for /dev/log),
the journal's stderr format under systemd, and a log file (0640, a missing folder is one line)."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest

from mailward import log
from mailward.config import ConfigError, default_config_text


@pytest.fixture
def restore_logging():
    handlers, level = list(log.logger.handlers), log.logger.level
    yield
    for h in log.logger.handlers:
        h.close()
    log.logger.handlers[:] = handlers
    log.logger.setLevel(level)


def test_syslog_lines_carry_facility_mail_and_the_tag(tmp_path, restore_logging):
    path = str(tmp_path / "dev-log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        log.setup("info", syslog=True, syslog_address=path)
        log.info("KHRHCNKCJ34JNP", to="<user@localhost>", stat="Sent")
        log.notice(None, relay="[192.0.2.1]", reject="550 5.7.1 no")
        log.event(logging.ERROR, None, reload="failed")
        lines = [sock.recv(4096).decode() for _ in range(3)]
    pid = os.getpid()
    # facility mail (2): info 2*8+6 = 22, notice 21, err 19; syslog(3)'s own form on the local socket
    assert re.fullmatch(rf"<22>[A-Z][a-z]{{2}} [ 1-3]\d \d\d:\d\d:\d\d mailward\[{pid}\]: "
                        r"KHRHCNKCJ34JNP: to=<user@localhost>, stat=Sent", lines[0]), lines[0]
    assert lines[1].startswith("<21>") and lines[1].endswith(f"mailward[{pid}]: relay=[192.0.2.1], reject=550 5.7.1 no")
    assert lines[2].startswith("<19>")


def test_syslog_to_a_remote_host_names_this_host(restore_logging):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        log.setup("info", syslog=True, syslog_address=f"127.0.0.1:{sock.getsockname()[1]}", facility="local3")
        log.info(None, daemon="started")
        line = sock.recv(4096).decode()
    host = socket.gethostname().split(".")[0]
    assert line.startswith(f"<{19 * 8 + 6}>") and f" {host} mailward[{os.getpid()}]: daemon=started" in line


def test_an_unknown_facility_is_one_line(restore_logging):
    with pytest.raises(ConfigError, match="log.facility: unknown syslog facility 'email'"):
        log.setup(syslog=True, facility="email")


def test_stderr_under_systemd_has_priorities_and_no_prefix(tmp_path):
    out = tmp_path / "stderr"
    code = textwrap.dedent("""
        import os, sys
        st = os.fstat(2)
        os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        from mailward import log
        log.setup("info")
        log.info("QID1", stat="Sent")
        log.event(40, None, reload="failed")
    """)
    with open(out, "w") as err:
        subprocess.run([sys.executable, "-c", code], stderr=err, check=True, timeout=30)
    assert out.read_text().splitlines() == ["<6>QID1: stat=Sent", "<3>reload=failed"]


def test_stderr_elsewhere_keeps_the_sendmail_form(tmp_path):
    out = tmp_path / "stderr"
    code = "from mailward import log; log.setup('info'); log.info(None, stat='Sent')"
    with open(out, "w") as err:   # JOURNAL_STREAM inherited from a unit, but stderr is elsewhere
        subprocess.run([sys.executable, "-c", code], stderr=err, check=True, timeout=30,
                       env={**os.environ, "JOURNAL_STREAM": "1:2"})
    assert re.fullmatch(r"\w{3} \d\d \d\d:\d\d:\d\d mail.info mailward\[\d+\]: stat=Sent\n", out.read_text())


def test_log_file_is_created_0640(tmp_path, restore_logging):
    old = os.umask(0o022)
    try:
        log.setup("info", tmp_path / "mail.log")
    finally:
        os.umask(old)
    log.info(None, stat="Sent")
    assert oct((tmp_path / "mail.log").stat().st_mode & 0o777) == oct(0o640)
    assert "stat=Sent" in (tmp_path / "mail.log").read_text()


def test_a_missing_log_folder_is_one_line(tmp_path):
    config = tmp_path / "mailward.toml"
    config.write_text(default_config_text({"log": {"file": "no/such/folder/mailward.log"},
                                           "server": {"listen": ["127.0.0.1:1"]}}))
    run = subprocess.run([sys.executable, "-m", "mailward", "serve", "-c", str(config)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert f"log.file: the folder {tmp_path}/no/such/folder does not exist; fix: mkdir -p" in run.stderr


def test_a_real_server_logs_to_syslog(make_mta, tmp_path):
    from mailward.config import LogSettings

    if "syslog" not in LogSettings.__dataclass_fields__:
        pytest.skip("log.syslog / log.syslog_address are not declared in mailward/config/settings.py yet")
    path = str(tmp_path / "dev-log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(15)
        mta = make_mta({"log": {"file": "", "syslog": True, "syslog_address": path}}, start=False)
        proc = subprocess.Popen([sys.executable, "-m", "mailward", "serve", "-c", str(mta.config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            lines = []
            while not any("daemon=started" in x for x in lines):
                lines.append(sock.recv(4096).decode())
        finally:
            proc.terminate()
            proc.wait(20)
    started = next(x for x in lines if "daemon=started" in x)
    assert started.startswith("<22>") and f" mailward[{proc.pid}]: daemon=started" in started
