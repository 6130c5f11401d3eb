"""Durability (kill -9 after 250s), connection limits, timeouts, SIGHUP reload, start-up
checks on configuration and key files."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import tls_settings
from tests.receive.test_attacks_and_bad_input import read_reply
from tests.spool_view import partial_body, partial_files, queued


def send_plain(mta, n, user="dur"):
    ids = []
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.ehlo("client.test")
        for i in range(n):
            s.mail("a@client.test")
            s.rcpt(f"{user}@localhost")
            code, reply = s.data(f"Subject: m{i}\r\n\r\nmessage {i}\r\n")
            assert code == 250
            ids.append(reply.decode().split()[1])
    return ids


def test_kill_9_after_250_loses_nothing(make_mta):
    mta = make_mta()
    ids = send_plain(mta, 40)
    mta.kill9()  # right after the last 250: some are delivered, some only in the spool
    mta.start()
    deadline = time.time() + 20
    while time.time() < deadline:
        delivered = "".join(p.read_text() for p in mta.maildir_files("dur"))
        if all(qid in delivered for qid in ids):
            break
        time.sleep(0.1)
    delivered = "".join(p.read_text() for p in mta.maildir_files("dur"))
    missing = [qid for qid in ids if qid not in delivered]
    assert not missing, missing
    assert partial_files(mta) == []


def test_partial_message_after_crash_is_discarded(make_mta):
    mta = make_mta()
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    s.recv(1000)
    s.sendall(b"EHLO c\r\n")
    read_reply(s)
    s.sendall(b"MAIL FROM:<a@b>\r\nRCPT TO:<dur@localhost>\r\nDATA\r\n")
    data = b""
    while b"354 " not in data:
        data += s.recv(4000)
    # more than the log spool keeps in memory: either format has the partial message on disk
    s.sendall(partial_body() + b"half")
    deadline = time.time() + 5
    while not partial_files(mta) and time.time() < deadline:
        time.sleep(0.05)
    assert len(partial_files(mta)) == 1
    mta.kill9()
    s.close()
    mta.start()
    time.sleep(0.5)
    assert partial_files(mta) == []
    assert queued(mta) == []
    assert mta.maildir_files("dur") == []
    assert "discarded_partial=1" in mta.log_text()


def test_connections_per_client_limit(make_mta):
    mta = make_mta({"server": {"max_connections_per_client": 2, "client_limit_exceptions": []}})
    socks = [socket.create_connection((mta.host, mta.port), timeout=5) for _ in range(2)]
    for s in socks:
        assert s.recv(1000).startswith(b"220")
    third = socket.create_connection((mta.host, mta.port), timeout=5)
    assert third.recv(1000).startswith(b"421 4.7.0")
    socks[0].close()
    time.sleep(0.2)
    fourth = socket.create_connection((mta.host, mta.port), timeout=5)
    assert fourth.recv(1000).startswith(b"220")


def test_loopback_is_exempt_from_the_per_client_limit_by_default(make_mta):
    # Postfix spares $mynetworks the same way: a local benchmark or submitter is not refused
    mta = make_mta({"server": {"max_connections_per_client": 2}})
    socks = [socket.create_connection((mta.host, mta.port), timeout=5) for _ in range(4)]
    assert all(s.recv(1000).startswith(b"220") for s in socks)
    for s in socks:
        s.close()


def test_the_exceptions_are_networks():
    from mailward.receive.server import in_networks
    assert in_networks("127.0.0.9", ("127.0.0.0/8",)) and in_networks("::ffff:127.0.0.9", ("127.0.0.0/8",))
    assert not in_networks("192.0.2.1", ("127.0.0.0/8", "::1/128"))
    assert in_networks("2001:db8::5", ("2001:db8::/32",)) and not in_networks("not an address", ("0.0.0.0/0",))


def test_total_connections_limit(make_mta):
    mta = make_mta({"server": {"max_connections": 1}})
    a = socket.create_connection((mta.host, mta.port), timeout=5)
    assert a.recv(1000).startswith(b"220")
    b = socket.create_connection((mta.host, mta.port), timeout=5)
    assert b.recv(1000).startswith(b"421 4.3.2")


def test_idle_and_data_timeouts(make_mta):
    mta = make_mta({"server": {"idle_timeout": 0.5, "data_timeout": 0.8}})
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    s.recv(1000)
    time.sleep(0.8)
    assert s.recv(1000).startswith(b"421 4.4.2 mx.test Timeout")
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    s.recv(1000)
    s.sendall(b"EHLO c\r\n")
    read_reply(s)
    s.sendall(b"MAIL FROM:<a@b>\r\nRCPT TO:<dur@localhost>\r\nDATA\r\n")
    time.sleep(0.3)
    s.recv(4000)
    s.sendall(b"Subject: slow\r\n")
    time.sleep(1.2)
    assert b"421 4.4.2" in s.recv(1000)
    assert partial_files(mta) == [] and queued(mta) == []


def test_sighup_reloads_certificates_and_keeps_connections(make_mta, pki, tmp_path):
    from mailward.ca import authority

    cert, key = tmp_path / "s.pem", tmp_path / "s-key.pem"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    os.chmod(key, 0o600)
    mta = make_mta({"tls": tls_settings(pki, cert_file=str(cert), key_file=str(key))})
    open_conn = smtplib.SMTP(mta.host, mta.port, timeout=10)
    open_conn.ehlo()
    authority.issue(pki.dir / "ca", "reloaded.test", ["localhost", "127.0.0.1"], cert, key, force=True)
    mta.proc.send_signal(signal.SIGHUP)
    mta.wait_log("reload=ok")
    import ssl
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.starttls(context=ctx)
        assert s.sock.getpeercert()["subject"][-1][0][1] == "reloaded.test"
    assert open_conn.noop()[0] == 250  # the old connection still works
    open_conn.quit()
    key.write_text("garbage")
    mta.proc.send_signal(signal.SIGHUP)
    mta.wait_log("reload=failed")
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.starttls(context=ctx)  # the previous certificate is kept


def run_serve(config) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailward", "serve", "-c", str(config)],
                          capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("body,expected", [
    ("[server]\nmax_comand_line = 5\n", "server.max_comand_line: unknown key"),
    ("[server]\nmax_command_line = \"big\"\n", "server.max_command_line: expected an integer >= 64, got 'big'"),
    ("[tls]\nmin_version = \"SSLv3\"\n", 'tls.min_version: expected one of "TLSv1"'),
    ("[nonsense]\n", "[nonsense]: unknown section"),
    ("[server\n", "not valid TOML"),
])
def test_config_errors_are_one_line_exit_2(tmp_path, body, expected):
    config = tmp_path / "bad.toml"
    config.write_text(body)
    out = run_serve(config)
    assert out.returncode == 2
    assert expected in out.stderr and str(config) in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_key_readable_by_others_refuses_to_start(tmp_path, pki):
    key = tmp_path / "key.pem"
    shutil.copy(pki.server_key, key)
    os.chmod(key, 0o644)
    config = tmp_path / "c.toml"
    config.write_text(f'[tls]\ncert_file = "{pki.server_cert}"\nkey_file = "{key}"\n'
                      f'[spool]\ndirectory = "{tmp_path}/spool"\n')
    out = run_serve(config)
    assert out.returncode == 2
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith(f"mailward: {key}: ") and "readable by group or others" in error
    assert f"fix: chmod 600 {key}" in error


def test_encrypted_key_refuses_to_start(tmp_path, pki):
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    enc = tmp_path / "enc.pem"
    enc.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"secret")))
    os.chmod(enc, 0o600)
    config = tmp_path / "c.toml"
    config.write_text(f'[tls]\ncert_file = "{pki.server_cert}"\nkey_file = "{enc}"\n'
                      f'[spool]\ndirectory = "{tmp_path}/spool"\n')
    out = run_serve(config)
    assert out.returncode == 2 and "private key is encrypted" in out.stderr.strip().splitlines()[-1]


def test_sigterm_sends_421_to_idle_sessions(make_mta):
    mta = make_mta({"server": {"shutdown_grace": 1}})
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    assert s.recv(1000).startswith(b"220")
    mta.proc.send_signal(signal.SIGTERM)
    assert s.recv(1000).startswith(b"421 4.3.2 mx.test Service shutting down")
    assert mta.proc.wait(10) == 0
    assert "daemon=stopped" in mta.log_text()


def test_json_logs(make_mta):
    import json
    mta = make_mta({"log": {"json": True, "file": "mailward.jsonl"}})
    send_plain(mta, 1, user="json")
    mta.wait_log('"to": "<json@localhost>"')
    records = [json.loads(line) for line in mta.log_text().splitlines()]
    sent = next(r for r in records if r.get("stat") == "Sent")
    assert sent["mailer"] == "local" and sent["dsn"] == "2.0.0" and len(sent["qid"]) == 14


def test_recover_drops_status_files_of_removed_messages(tmp_path):
    from mailward.spool.store import Spool
    spool = Spool(tmp_path)
    (spool.queue / "GONE.status").write_text('{"rcpt": 0, "state": "delivered"}\n')
    (spool.queue / "HERE").write_bytes(b"MAILWARD-SPOOL 1\n")
    (spool.queue / "HERE.status").write_text("")
    spool.recover()
    assert sorted(p.name for p in spool.queue.iterdir()) == ["HERE", "HERE.status"]
