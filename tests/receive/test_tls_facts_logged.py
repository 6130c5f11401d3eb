"""Every completed TLS handshake logs its two STARTTLS=server lines, as sendmail 8.17 does
(as observed with openssl s_client), even when the client sends close_notify right behind
its Finished message — which is what ``openssl s_client`` does on EOF of its standard input."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time

from tests.conftest import need, tls_settings
from tests.receive.test_attacks_and_bad_input import read_reply

FACTS = "STARTTLS=server, relay=[127.0.0.1], version=TLSv1.3, verify=NO, cipher="
CERT = "STARTTLS=server, cert-subject=, cert-issuer=, verifymsg=ok"


def count_until(mta, text: str, n: int, timeout: float = 10) -> int:
    deadline = time.time() + timeout
    while True:
        found = mta.log_text().count(text)
        if found >= n or time.time() > deadline:
            return found
        time.sleep(0.05)


def test_s_client_closed_right_after_the_handshake_is_always_logged(make_mta, pki):
    openssl = need("openssl")
    mta = make_mta({"tls": tls_settings(pki), "server": {"reverse_lookup": False}})
    sessions = 20
    for _ in range(sessions):
        # stdin at EOF: s_client finishes the handshake, then sends close_notify at once
        subprocess.run([openssl, "s_client", "-starttls", "smtp", "-connect", f"{mta.host}:{mta.port}",
                        "-CAfile", str(pki.ca)],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
    assert count_until(mta, FACTS, sessions) == sessions, mta.log_text()
    assert count_until(mta, CERT, sessions) == sessions, mta.log_text()


def test_finished_and_close_notify_in_one_segment_are_logged(make_mta, pki):
    """The race made certain: the client's last handshake flight and its close_notify reach
    the server in one write."""
    mta = make_mta({"tls": tls_settings(pki), "server": {"reverse_lookup": False}})
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    s.sendall(b"EHLO c\r\n")
    read_reply(s)
    s.sendall(b"STARTTLS\r\n")
    assert read_reply(s).startswith(b"220")
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                s.sendall(outgoing.read())
            incoming.write(s.recv(65536))
    try:
        tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    s.sendall(outgoing.read())  # client Finished + close_notify together
    s.settimeout(5)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()
    assert count_until(mta, FACTS, 1) == 1, mta.log_text()
    assert count_until(mta, CERT, 1) == 1, mta.log_text()
