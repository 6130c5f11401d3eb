"""RFC 2920 §3.1 on a real server: EHLO and DATA end a command group, and nothing comes
before the greeting. A client that does not wait is answered as sendmail 8.17 answers it
(EHLO: 554, then its nullserver mode) or as Postfix ≥ 3.9 does (smtpd_forbid_unauth_pipelining:
DATA, and bytes before the greeting); legitimate pipelining (MAIL, RCPT..., DATA) still works."""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import tls_settings
from tests.receive.test_attacks_and_bad_input import read_reply
from tests.spool_view import partial_files, queued


def read_lines(s, n: int, timeout: float = 5) -> bytes:
    s.settimeout(timeout)
    data = b""
    while data.count(b"\r\n") < n:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def plain_mta(make_mta, pki, **server):
    return make_mta({"tls": tls_settings(pki), "server": {"reverse_lookup": False, **server},
                     "local": {"domains": ["localhost", "mx.test"]}})


def test_ehlo_and_starttls_in_one_write_are_refused_as_sendmail_does(make_mta, pki):
    mta = plain_mta(make_mta, pki)
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    s.sendall(b"EHLO client.test\r\nSTARTTLS\r\n")
    assert read_lines(s, 2) == b"554 5.5.0 SMTP protocol error\r\n550 5.0.0 Command rejected\r\n"
    mta.wait_log("rejecting server EHLO from [127.0.0.1] due to traffic before response")
    # from now on sendmail's nullserver: EHLO offers nothing, MAIL is refused, QUIT is served
    s.sendall(b"EHLO client.test\r\n")
    assert read_reply(s) == b"250-mx.test Hello [127.0.0.1], pleased to meet you\r\n250 ENHANCEDSTATUSCODES\r\n"
    s.sendall(b"MAIL FROM:<a@client.test>\r\n")
    assert read_reply(s) == b"550 5.0.0 Command rejected\r\n"
    s.sendall(b"QUIT\r\n")
    assert read_reply(s) == b"221 2.0.0 mx.test closing connection\r\n"
    s.close()


def test_ehlo_on_its_own_then_a_pipelined_transaction_is_served(make_mta, pki):
    mta = plain_mta(make_mta, pki)
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    s.sendall(b"EHLO client.test\r\n")
    assert b"250-PIPELINING\r\n" in read_reply(s)
    s.sendall(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<pipe@localhost>\r\nRCPT TO:<pipe2@localhost>\r\nDATA\r\n")
    assert read_lines(s, 4).splitlines()[-1].startswith(b"354 ")
    s.sendall(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n")
    assert read_reply(s).startswith(b"250 2.0.0")
    s.sendall(b"QUIT\r\n")
    read_reply(s)
    s.close()
    assert len(mta.wait_mail("pipe")) == 1


def test_message_text_before_the_354_is_refused_as_postfix_does(make_mta, pki):
    mta = plain_mta(make_mta, pki)
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    s.sendall(b"EHLO client.test\r\n")
    read_reply(s)
    s.sendall(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<early@localhost>\r\nDATA\r\n"
              b"Subject: early\r\n\r\nsent before the 354\r\n.\r\n")
    data = b""
    s.settimeout(5)
    while chunk := s.recv(4096):  # the server closes after its answer
        data += chunk
    s.close()
    assert data.splitlines()[-1] == b"554 5.5.0 Error: SMTP protocol synchronization"
    assert b"354" not in data
    mta.wait_log("improper command pipelining after DATA from [127.0.0.1]: Subject: early\\r\\n\\r\\n"
                 "sent before the 354\\r\\n.\\r\\n")
    time.sleep(0.3)
    assert mta.maildir_files("early") == []
    assert partial_files(mta) == [] and queued(mta) == []


def test_bytes_before_the_greeting_are_refused_as_postfix_does(make_mta, pki):
    # A name lookup (for an address not yet cached) delays the greeting; the client talks
    # at once. Postfix answers 554 instead of the greeting and closes.
    mta = make_mta({"tls": tls_settings(pki), "server": {"reverse_lookup": True}})
    s = socket.socket()
    s.bind(("127.0.0.77", 0))
    s.settimeout(10)
    s.connect((mta.host, mta.port))
    s.sendall(b"EHLO impatient.test\r\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    assert data == b"554 5.5.0 Error: SMTP protocol synchronization\r\n"
    log = mta.wait_log("improper command pipelining after CONNECT from ")
    assert "[127.0.0.77]: EHLO impatient.test\\r\\n" in log


def test_the_checks_can_be_turned_off(make_mta, pki):
    from mailward.config import SCHEMA

    if "forbid_unauth_pipelining" not in {k.name for k in SCHEMA["server"]}:
        pytest.skip("server.forbid_unauth_pipelining is not in the configuration schema yet")
    mta = plain_mta(make_mta, pki, forbid_unauth_pipelining=False)
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    s.sendall(b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<lax@localhost>\r\nDATA\r\n"
              b"Subject: lax\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    assert [line[:3] for line in data.splitlines() if line[3:4] == b" "] == [
        b"250", b"250", b"250", b"354", b"250", b"221"]
    assert len(mta.wait_mail("lax")) == 1
