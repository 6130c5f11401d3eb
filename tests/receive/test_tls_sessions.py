"""STARTTLS over real sockets with Python's smtplib: the TLS facts, the log lines, the
Received header and the Maildir file; verify = NO, OK, FAIL, NOT as sendmail defines them."""

from __future__ import annotations

import re
import smtplib
import ssl

import pytest

from tests.conftest import tls_settings


def client_context(pki, cert=None, key=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def send_tls(mta, ctx, rcpt="user@localhost", body="Subject: t\r\n\r\nhello\r\n"):
    with smtplib.SMTP(mta.host, mta.port, local_hostname="client.test", timeout=10) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        s.starttls(context=ctx)
        s.ehlo()
        assert not s.has_extn("starttls")
        s.mail("sender@client.test")
        s.rcpt(rcpt)
        code, reply = s.data(body)
        assert code == 250, reply
        return reply.decode()


def queue_id(reply: str) -> str:
    return reply.split()[1]


def test_smtplib_starttls_no_client_cert(mta, pki):
    qid = queue_id(send_tls(mta, client_context(pki)))
    text = mta.wait_message("user", qid)
    assert re.search(
        rf"Received: from client.test \(localhost \[127.0.0.1\]\)\n"
        rf"\tby mx.test \(mailward [\d.]+\) with ESMTPS id {qid}\n"
        rf"\t\(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256 verify=NO\)\n"
        rf"\tfor <user@localhost>; \w{{3}}, \d+ \w{{3}} \d{{4}} [\d:]+ GMT\n", text), text
    assert text.endswith("hello\n")
    log = mta.wait_log(f"{qid}: to=<user@localhost>")
    assert ("STARTTLS=server, relay=localhost [127.0.0.1], version=TLSv1.3, verify=NO, "
            "cipher=TLS_AES_256_GCM_SHA384, bits=256/256") in log
    assert "STARTTLS=server, cert-subject=, cert-issuer=, verifymsg=ok" in log
    assert f"{qid}: to=<user@localhost>, delay=" in log and "mailer=local, dsn=2.0.0, stat=Sent" in log


def test_ca_signed_client_cert_gives_verify_ok(mta, pki):
    qid = queue_id(send_tls(mta, client_context(pki, pki.client_cert, pki.client_key)))
    text = mta.wait_message("user", qid)
    assert "verify=OK)" in text
    log = mta.wait_log("cert-subject=/C=XX/O=Mailward+20Test/CN=client.test")
    assert ("STARTTLS=server, cert-subject=/C=XX/O=Mailward+20Test/CN=client.test, "
            "cert-issuer=/C=XX/O=Mailward+20Test/CN=Test+20CA, verifymsg=ok") in log


def test_self_signed_client_cert_gives_fail_and_session_goes_on(mta, pki):
    qid = queue_id(send_tls(mta, client_context(pki, pki.selfsigned_cert, pki.selfsigned_key)))
    text = mta.wait_message("user", qid)
    assert "verify=FAIL)" in text
    log = mta.wait_log("verifymsg=self-signed certificate")
    assert "cert-subject=/C=XX/O=Self+20Signed/CN=selfsigned.test" in log


def test_cert_from_another_ca_gives_fail(mta, pki):
    qid = queue_id(send_tls(mta, client_context(pki, pki.other_cert, pki.other_key)))
    text = mta.wait_message("user", qid)
    assert "verify=FAIL)" in text
    mta.wait_log("verifymsg=unable to get local issuer certificate")


def test_not_requested_gives_verify_not(make_mta, pki):
    mta = make_mta({"tls": tls_settings(pki, request_client_cert=False)})
    qid = queue_id(send_tls(mta, client_context(pki, pki.client_cert, pki.client_key)))
    text = mta.wait_mail("user")[0].read_text()
    assert qid in text and "verify=NOT)" in text
    assert "verify=NOT, cipher=" in mta.wait_log("verify=NOT")


def test_tls12_client_and_min_version(make_mta, pki):
    mta = make_mta({"tls": tls_settings(pki, min_version="TLSv1.2")})
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    send_tls(mta, ctx)
    log = mta.wait_log("version=TLSv1.2")
    assert re.search(r"version=TLSv1.2, verify=NO, cipher=ECDHE-\S+-GCM-SHA\d+, bits=\d+/\d+", log), log
    old = client_context(pki)
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.ehlo()
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionResetError)):
            s.starttls(context=old)
    mta.wait_log("verify=SOFTWARE")


def test_plain_session_has_esmtp_received_without_tls_line(mta):
    with smtplib.SMTP(mta.host, mta.port, local_hostname="client.test", timeout=10) as s:
        code, reply = s.sendmail("a@client.test", ["plain@localhost"], "Subject: p\r\n\r\nplain\r\n") or (250, b"")
    text = mta.wait_mail("plain")[0].read_text()
    assert " with ESMTP id " in text and "version=" not in text
