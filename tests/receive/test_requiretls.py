"""REQUIRETLS (RFC 8689) on the receiving side, over real sockets with Python's smtplib
against a real ``mailward serve``: not offered in clear and refused there; offered after
STARTTLS, accepted, and kept in the spooled envelope (``mailward queue show``)."""

from __future__ import annotations

import smtplib
import ssl
import subprocess
import sys

import pytest

from tests.conftest import tls_settings
from tests.spool_view import stored_envelope


@pytest.fixture
def relay_mta(make_mta, pki):
    """A server whose local mailbox "stuck" cannot be written (its Maildir path is a file):
    delivery defers it, so a message for it stays in the queue for the test to read (a
    REQUIRETLS message relayed to a host without DANE or MTA-STS would be bounced at once by
    the sending side, docs/outbound-tls.md)."""
    def make(**server):
        mta = make_mta({"tls": tls_settings(pki), "server": {"reverse_lookup": False, **server},
                        "delivery": {"retry_first": 3600}}, start=False)
        mta.maildir.mkdir(parents=True, exist_ok=True)
        (mta.maildir / "stuck").write_text("not a Maildir\n")
        return mta.start()
    return make


def queue_show(mta, qid: str) -> str:
    out = subprocess.run([sys.executable, "-m", "mailward", "queue", "-c", str(mta.config), "show", qid],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def spooled_envelope(mta, qid: str) -> dict:
    """The envelope as the spool holds it (its JSON object), whatever the spool's format."""
    return stored_envelope(mta, qid)


def test_requiretls_offered_only_after_starttls_and_kept_in_the_envelope(relay_mta, pki):
    mta = relay_mta()
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with smtplib.SMTP(mta.host, mta.port, local_hostname="client.test", timeout=10) as s:
        s.ehlo()
        assert s.has_extn("starttls") and not s.has_extn("requiretls")
        code, reply = s.mail("a@client.test", ["REQUIRETLS"])
        assert (code, reply.decode()) == (530, "5.7.10 REQUIRETLS needed: the option is accepted only over TLS "
                                                "(RFC 8689 §2)")
        s.starttls(context=ctx)
        s.ehlo()
        assert s.has_extn("requiretls")
        assert s.mail("a@client.test", ["REQUIRETLS"])[0] == 250
        assert s.rcpt("stuck@localhost")[0] == 250
        code, reply = s.data(b"Subject: secret\r\n\r\nonly over TLS\r\n")
        assert code == 250, reply
    qid = reply.decode().split()[1]
    shown = queue_show(mta, qid)
    assert "sender:    <a@client.test> REQUIRETLS" in shown, shown
    assert spooled_envelope(mta, qid)["sender_params"] == {"REQUIRETLS": None}


def test_plain_message_has_no_requiretls(relay_mta, pki):
    mta = relay_mta()
    with smtplib.SMTP(mta.host, mta.port, local_hostname="client.test", timeout=10) as s:
        s.starttls(context=ssl.create_default_context(cafile=str(pki.ca)))
        s.ehlo()
        s.mail("a@client.test")
        s.rcpt("stuck@localhost")
        code, reply = s.data(b"Subject: plain\r\n\r\nx\r\n")
    qid = reply.decode().split()[1]
    assert "REQUIRETLS" not in spooled_envelope(mta, qid)["sender_params"]


def test_requiretls_turned_off(relay_mta, pki):
    mta = relay_mta(requiretls=False)
    with smtplib.SMTP(mta.host, mta.port, local_hostname="client.test", timeout=10) as s:
        s.starttls(context=ssl.create_default_context(cafile=str(pki.ca)))
        s.ehlo()
        assert not s.has_extn("requiretls")
        code, reply = s.mail("a@client.test", ["REQUIRETLS"])
        assert (code, reply.decode()) == (555, "5.5.4 REQUIRETLS parameter unrecognized")
