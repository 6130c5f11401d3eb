"""Raw sockets: STARTTLS command injection, garbage instead of a ClientHello, disconnects at
every stage, overlong lines and junk. The server answers clearly or closes cleanly, keeps
serving, and keeps nothing half-written."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from tests.spool_view import partial_files, queued


def connect(mta) -> socket.socket:
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    return s


def read_reply(s, timeout=5.0) -> bytes:
    """Read until a final reply line (code + space) arrives."""
    s.settimeout(timeout)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and any(len(l) > 3 and l[3:4] == b" " for l in lines[:-1]) and data.endswith(b"\r\n"):
            last = lines[-2]
            if last[3:4] == b" ":
                return data


def nothing_arrives(s, seconds=0.7) -> bool:
    s.settimeout(seconds)
    try:
        return s.recv(1000) == b""
    except (socket.timeout, TimeoutError):
        return True


def tls_wrap(s, pki):
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    return ctx.wrap_socket(s, server_hostname="localhost")


@pytest.mark.parametrize("injected", [b"RSET\r\n", b"NOOP\r\n", b"MAIL FROM:<inject@x>\r\n"])
def test_starttls_injection_is_never_answered(mta, pki, injected):
    s = connect(mta)
    s.sendall(b"EHLO client.test\r\n")
    read_reply(s)
    s.sendall(b"STARTTLS\r\n" + injected)
    assert read_reply(s) == b"220 2.0.0 Ready to start TLS\r\n"
    assert nothing_arrives(s, 0.5)  # not answered before TLS
    t = tls_wrap(s, pki)
    assert nothing_arrives(t, 0.7)  # nor inside TLS
    t.sendall(b"RCPT TO:<user@localhost>\r\n")
    assert read_reply(t).startswith(b"503 5.5.1")  # no HELO and no envelope survived
    t.sendall(b"EHLO client.test\r\n")
    reply = read_reply(t)
    assert reply.startswith(b"250-mx.test Hello") and b"STARTTLS" not in reply
    t.sendall(b"QUIT\r\n")
    assert read_reply(t).startswith(b"221")
    t.close()


def test_garbage_instead_of_client_hello(mta):
    s = connect(mta)
    s.sendall(b"EHLO x\r\n")
    read_reply(s)
    s.sendall(b"STARTTLS\r\n")
    read_reply(s)
    s.sendall(b"this is not a TLS ClientHello\r\n" * 4)
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    s.close()
    log = mta.wait_log("verify=SOFTWARE")
    assert "STARTTLS=server, error: accept failed=" in log
    still_serving(mta)


def still_serving(mta):
    s = connect(mta)
    s.sendall(b"NOOP\r\n")
    assert read_reply(s) == b"250 2.0.0 OK\r\n"
    s.close()


@pytest.mark.parametrize("stage", ["greeting", "ehlo", "mail", "data", "mid-data", "tls-handshake", "after-tls"])
def test_disconnect_at_every_stage_leaves_nothing(mta, pki, stage):
    before = set(queued(mta))
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    steps = ["greeting", "ehlo", "mail", "data", "mid-data"]
    if stage == "greeting":
        s.close()
    elif stage in ("tls-handshake", "after-tls"):
        read_reply(s)
        s.sendall(b"EHLO c\r\n")
        read_reply(s)
        s.sendall(b"STARTTLS\r\n")
        assert read_reply(s).startswith(b"220 2.0.0")
        if stage == "tls-handshake":
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a cut-off ClientHello
        else:
            t = tls_wrap(s, pki)
            t.sendall(b"EHLO c\r\n")
            read_reply(t)
            t.sendall(b"MAIL FROM:<a@b>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n")
            data = b""
            while b"354 " not in data:
                data += t.recv(4096)
            t.sendall(b"half a message")
            time.sleep(0.2)
            s = t
        s.close()
    else:
        read_reply(s)
        script = [b"EHLO c\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<user@localhost>\r\nDATA\r\n",
                  b"Subject: cut\r\n\r\npartial body"]
        for i, line in enumerate(script[: steps.index(stage)]):
            s.sendall(line)
            if i < 3:
                read_reply(s)
        time.sleep(0.1)
        s.close()
    time.sleep(0.3)
    still_serving(mta)
    assert partial_files(mta) == []
    assert set(queued(mta)) <= before


def test_overlong_command_and_binary_junk(mta):
    s = connect(mta)
    s.sendall(b"NOOP " + b"A" * 5000 + b"\r\n")
    assert read_reply(s) == b"500 5.5.2 Line too long\r\n"
    s.sendall(b"\x00\xff\xfe junk\r\n")
    assert read_reply(s).startswith(b"500 5.5.2")
    s.sendall(b"NOOP\r\n")
    assert read_reply(s) == b"250 2.0.0 OK\r\n"
    s.close()


def test_smuggling_over_socket_never_accepts_forged_message(mta):
    s = connect(mta)
    s.sendall(b"EHLO c\r\n")
    read_reply(s)
    s.sendall(b"MAIL FROM:<a@b>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n")
    reply = b""
    while b"354" not in reply:
        reply += s.recv(4096)
    s.sendall(b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<forged@x>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\n"
              b"Subject: forged\r\n\r\n.\r\n")
    assert read_reply(s).startswith(b"554 5.6.0")
    s.sendall(b"QUIT\r\n")
    read_reply(s)
    time.sleep(0.3)
    assert not (mta.maildir / "victim").exists()


def test_pre_greeting_data_is_not_run_before_the_greeting(mta):
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    s.sendall(b"NOOP\r\n")
    data = read_reply(s)
    if not data.count(b"\r\n") >= 2:
        data += read_reply(s)
    # the greeting always comes first — or, if the NOOP beat it, the refusal of a client
    # that did not wait for it (RFC 2920 §3.1, as Postfix answers it)
    assert data.startswith(b"220 mx.test ESMTP") or data == b"554 5.5.0 Error: SMTP protocol synchronization\r\n"
    s.close()
