"""Interop with a real Postfix (Debian's package) over STARTTLS: mailward delivers to Postfix
by MX, and Postfix delivers to mailward; client certificates both ways."""

from __future__ import annotations

import shutil
import smtplib
import tempfile
from pathlib import Path

import pytest

from harness import Harness, message, run
from postfix import ADDRESS, Postfix

pytestmark = pytest.mark.peer


@pytest.fixture
def postfix(pki, mx_port):
    # Postfix's daemons run as the postfix user: pytest's tmp folders (0700 root) are closed to it
    base = Path(tempfile.mkdtemp(prefix="mailward-postfix-"))
    base.chmod(0o755)
    pf = Postfix(base, mx_port, pki, relayhost=f"[127.0.0.61]:{mx_port}")
    try:
        pf.start()
        yield pf
    finally:
        pf.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_mailward_delivers_to_postfix_over_starttls(postfix, tmp_path, dns_server, mx_port, pki):
    h = Harness(tmp_path / "h", dns_server, mx_port,
                {"tls": {"ca_file": str(pki.ca)},
                 "delivery": {"client_cert_file": str(pki.client_cert), "client_key_file": str(pki.client_key)}})
    body = b".first dot\r\n..second\r\nlast\r\n"

    async def main():
        h.send("a@localhost", ["u@postfix.test"], message("to postfix", body))
        await h.start()
        await h.settle()
        await h.stop()
    run(main)
    text = h.log.text()
    assert "STARTTLS=client, relay=mx.postfix.test, version=TLSv1.3, verify=OK" in text
    assert "relay=mx.postfix.test. [127.0.0.81], dsn=2.0.0, stat=Sent (2.0.0 Ok: queued as" in text
    log = postfix.wait_log(r"status=sent \(delivered to maildir\)")
    assert "Trusted TLS connection established from" in log   # our client certificate verified
    (stored,) = postfix.mailbox()
    assert stored.endswith(body.replace(b"\r\n", b"\n"))


def test_postfix_delivers_to_mailward_over_starttls(postfix, make_mta, pki, mx_port):
    mw = make_mta({"server": {"hostname": "mx.tls.test", "listen": [f"127.0.0.61:{mx_port}"]},
                   "local": {"domains": ["tls.test"]},
                   "tls": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
                           "ca_file": str(pki.ca)}}, host="127.0.0.61")
    with smtplib.SMTP(ADDRESS, mx_port, timeout=10) as s:
        s.sendmail("someone@postfix.test", ["u@tls.test"], message("from postfix"))
    (path,) = mw.wait_mail("u", 1, timeout=20)
    log = mw.log_text()
    assert "STARTTLS=server, relay=" in log and "verify=OK" in log
    assert "cert-subject=/C=XX/O=Mailward+20Test/CN=client.test" in log
    assert b"verify=OK)" in path.read_bytes()
    assert "Trusted TLS connection established to 127.0.0.61" in postfix.wait_log(r"status=sent")
