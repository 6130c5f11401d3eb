"""Submission and SMTP AUTH with Python's smtplib against a real ``mailward serve``: what
each listener offers, AUTH PLAIN and LOGIN over STARTTLS (587-style) and implicit TLS
(465-style), and the refusals a client sees (RFC 4954, RFC 6409, RFC 8314)."""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import ssl
import time

import pytest

from tests.submission.conftest import (
    USERS,
    implicit_client,
    make_submission,
    queue_id,
    spooled_envelope,
    starttls_client,
    user_add,
)

MSG = b"From: alice@example.org\r\nSubject: submitted\r\n\r\nhello\r\n"


def test_ehlo_offers_auth_only_under_tls(sub, pki):
    with smtplib.SMTP(sub.host, sub.submission, local_hostname="client.test", timeout=15) as c:
        c.ehlo()
        assert c.has_extn("starttls") and not c.has_extn("auth")
        c.starttls(context=ssl.create_default_context(cafile=str(pki.ca)))
        c.ehlo()
        assert c.esmtp_features["auth"].split() == ["SCRAM-SHA-256", "PLAIN", "LOGIN"]
        assert c.has_extn("requiretls") and not c.has_extn("starttls")
    with implicit_client(sub, pki) as c:
        assert c.esmtp_features["auth"].split() == ["SCRAM-SHA-256", "PLAIN", "LOGIN"]
        assert not c.has_extn("starttls")


def test_plain_over_starttls_delivers_with_esmtpsa(sub, pki):
    with starttls_client(sub, pki) as c:
        c.user, c.password = "alice", USERS["alice"]
        assert c.auth("PLAIN", c.auth_plain) == (235, b"2.7.0 Authentication successful")
        assert c.mail("alice@example.org")[0] == 250
        assert c.rcpt("user@localhost")[0] == 250
        code, reply = c.data(MSG)
    assert code == 250
    qid = queue_id(reply)
    text = sub.mta.wait_message("user", qid)
    assert re.search(rf"Received: from client.test \(\[127.0.0.1\]\)\n\t\(authenticated bits=0\)\n"
                     rf"\tby mx.test \(mailward [\d.]+\) with ESMTPSA id {qid}\n"
                     rf"\t\(version=TLSv1.3 cipher=\S+ bits=\d+ verify=NO\)\n\tfor <user@localhost>;", text), text
    log = sub.mta.wait_log(f"{qid}: from=<alice@example.org>")
    assert "AUTH=server, relay=[127.0.0.1], authid=alice, mech=PLAIN, bits=0" in log
    assert re.search(rf"{qid}: from=<alice@example.org>, size=\d+, nrcpts=1, proto=ESMTPSA, "
                     rf"relay=\[127.0.0.1\], authid=alice", log), log
    assert USERS["alice"] not in log


def test_login_over_implicit_tls(sub, pki):
    with implicit_client(sub, pki) as c:
        c.user, c.password = "bob", USERS["bob"]
        assert c.auth("LOGIN", c.auth_login, initial_response_ok=False)[0] == 235
        code = c.sendmail("bob@example.org", ["user@localhost"], MSG)
    assert code == {}
    assert "AUTH=server, relay=[127.0.0.1], authid=bob, mech=LOGIN, bits=0" in sub.mta.wait_log("authid=bob")


def test_submission_needs_starttls_then_auth_before_mail(sub, pki):
    with smtplib.SMTP(sub.host, sub.submission, local_hostname="client.test", timeout=15) as c:
        c.ehlo()
        assert c.mail("alice@example.org") == (530, b"5.7.0 Must issue a STARTTLS command first")
        assert c.docmd("AUTH", "PLAIN AGFsaWNlAGFsaWNlIHNlY3JldCBwdw==") == \
            (530, b"5.7.0 Must issue a STARTTLS command first")
    with starttls_client(sub, pki) as c:
        assert c.mail("alice@example.org") == (530, b"5.7.0 Authentication required")
        assert c.rcpt("user@localhost")[0] == 503


def test_auth_in_clear_on_mx_is_refused_and_mx_accepts_mail_without_auth(sub, pki):
    before = len(sub.mta.log_text())
    with smtplib.SMTP(sub.host, sub.mx, local_hostname="client.test", timeout=15) as c:
        c.ehlo()
        assert not c.has_extn("auth")
        plain = base64.b64encode(b"\0alice\0" + USERS["alice"].encode()).decode()
        assert c.docmd("AUTH", f"PLAIN {plain}") == \
            (538, b"5.7.11 Encryption required for requested authentication mechanism")
        assert c.mail("someone@client.test")[0] == 250
    log = sub.mta.log_text()[before:]
    assert "authid=alice" not in log and USERS["alice"] not in sub.mta.log_text()


def test_exchange_refusals(sub, pki):
    with starttls_client(sub, pki) as c:
        assert c.docmd("AUTH", "CRAM-MD5") == (504, b"5.5.4 Unrecognized authentication type")
        assert c.docmd("AUTH", "PLAIN not*base64") == (501, b"5.5.2 Cannot Base64-decode Client responses")
        assert c.docmd("AUTH", "PLAIN") == (334, b"")
        assert c.docmd("*") == (501, b"5.0.0 AUTH aborted")
        assert c.docmd("AUTH", "LOGIN") == (334, base64.b64encode(b"Username:"))
        assert c.docmd("%%%") == (501, b"5.5.2 Cannot Base64-decode Client responses")
        c.user, c.password = "alice", USERS["alice"]
        assert c.auth("PLAIN", c.auth_plain)[0] == 235
        assert c.docmd("AUTH", "PLAIN") == (503, b"5.5.1 Already authenticated")
        assert c.mail("alice@example.org")[0] == 250
        assert c.docmd("NOOP")[0] == 250


def test_wrong_password_delay_grows_and_the_address_is_cut_off(make_mta, pki, users_file):
    s = make_submission(make_mta, pki, users_file,
                        submission={"auth_failure_delay": 1.0, "max_auth_failures": 3})
    with starttls_client(s, pki) as c:
        c.user, c.password = "alice", "wrong password"
        times = []
        for _ in range(2):
            start = time.monotonic()
            with pytest.raises(smtplib.SMTPAuthenticationError) as err:
                c.auth("PLAIN", c.auth_plain)
            times.append(time.monotonic() - start)
            assert err.value.smtp_code == 535 and err.value.smtp_error == b"5.7.8 Authentication credentials invalid"
        # the password check itself takes its time too: the delays are lower bounds, 1 s then 2 s
        assert times[0] >= 1.0 and times[1] >= 2.0, times
    with starttls_client(s, pki) as c:     # the third failure, from a new connection
        c.user, c.password = "nobody", "x"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.auth("PLAIN", c.auth_plain)
    with starttls_client(s, pki) as c:     # limit reached: even the right password gets 421
        c.user, c.password = "alice", USERS["alice"]
        with pytest.raises((smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected)) as err:
            c.auth("PLAIN", c.auth_plain)
        assert "421" in str(err.value) or getattr(err.value, "smtp_code", 421) == 421
    log = s.mta.wait_log("too many failures")
    lines = [line for line in log.splitlines() if "AUTH failure" in line]
    assert len(lines) == 4, lines
    assert re.search(r"AUTH failure \(PLAIN\): authentication failure \(PLAIN: authcid=alice: unknown user or "
                     r"wrong password\), relay=\[127.0.0.1\]$", lines[0]), lines[0]
    assert "wrong password," not in log.replace("unknown user or wrong password", "")   # never the password
    # the fail2ban filter of docs/submission.md finds the client's address in every one
    failregex = (r"^.*mailward\[\d+\]: AUTH failure \(\S+\): authentication failure \(.*\), "
                 r"relay=(?:\S+ )?\[<HOST>\](?: \(may be forged\))?\s*$").replace("<HOST>", r"(?P<host>[^\]]+)")
    assert [re.match(failregex, line).group("host") for line in lines] == ["127.0.0.1"] * 4


def test_sender_not_owned_and_rate_limit(make_mta, pki, users_file, tmp_path):
    logins = tmp_path / "sender-logins"
    logins.write_text("# who may send as whom\nalice@example.org  alice\n@example.org  bob\n")
    s = make_submission(make_mta, pki, users_file,
                        submission={"sender_login_map": str(logins), "rate_limit_messages": 2})
    with starttls_client(s, pki) as c:
        c.user, c.password = "alice", USERS["alice"]
        c.auth("PLAIN", c.auth_plain)
        assert c.mail("bob@example.org") == \
            (553, b"5.7.1 <bob@example.org>: Sender address rejected: not owned by user alice")
        for _ in range(2):
            assert c.mail("alice@example.org")[0] == 250
            assert c.rcpt("user@localhost")[0] == 250
            assert c.data(MSG)[0] == 250
        assert c.mail("alice@example.org") == (450, b"4.7.1 Rate limit exceeded, try again later")
    with starttls_client(s, pki) as c:     # bob owns the whole domain; his own count starts at 0
        c.user, c.password = "bob", USERS["bob"]
        c.auth("LOGIN", c.auth_login, initial_response_ok=False)
        assert c.mail("anyone@example.org")[0] == 250
    log = s.mta.wait_log("Rate limit exceeded")
    assert "ruleset=check_mail, arg1=<alice@example.org>, authid=alice" in log


def test_authenticated_client_relays_and_unauthenticated_does_not(sub, pki):
    """From 127.0.0.2 (127.0.0.1 always relays, as in sendmail): relaying needs AUTH."""
    with smtplib.SMTP(sub.host, sub.mx, local_hostname="client.test", timeout=15,
                      source_address=("127.0.0.2", 0)) as c:
        c.ehlo()
        c.mail("a@client.test")
        assert c.rcpt("someone@remote.test") == (550, b"5.7.1 <someone@remote.test>... Relaying denied")
    with starttls_client(sub, pki, port=sub.mx, source_address=("127.0.0.2", 0)) as c:
        c.user, c.password = "alice", USERS["alice"]
        c.auth("PLAIN", c.auth_plain)
        assert c.mail("alice@example.org")[0] == 250
        assert c.rcpt("someone@remote.test")[0] == 250


def test_auth_parameter_kept_only_for_the_authenticated_owner(sub, pki):
    """RFC 4954 §5: AUTH=<mailbox> is kept when the authenticated user owns it, else <>; with
    no sender login map only the login name itself is owned (sendmail's default trust_auth)."""
    def send(c, auth_param):
        assert c.mail("alice@example.org", [f"AUTH={auth_param}"])[0] == 250
        assert c.rcpt("x@remote.test")[0] == 250
        code, reply = c.data(MSG)
        assert code == 250
        return spooled_envelope(sub.mta, queue_id(reply))["sender_params"]["AUTH"]

    with starttls_client(sub, pki) as c:
        c.user, c.password = "alice", USERS["alice"]
        c.auth("PLAIN", c.auth_plain)
        assert send(c, "alice") == "alice"
        assert send(c, "alice@example.org") == "<>"
        assert send(c, "<>") == "<>"
        assert c.mail("alice@example.org", ["AUTH=a+zz"])[0] == 501
    with smtplib.SMTP(sub.host, sub.mx, local_hostname="client.test", timeout=15) as c:
        c.ehlo()
        assert send(c, "alice") == "<>"    # not authenticated: kept as <>


def test_submissions_handshake_first_and_plaintext_is_not_smtp(sub, pki):
    with socket.create_connection((sub.host, sub.submissions), timeout=5) as raw:
        raw.sendall(b"EHLO client.test\r\n")
        data = raw.recv(1024)
    assert not data.startswith(b"220")
    assert "verify=SOFTWARE" in sub.mta.wait_log("verify=SOFTWARE")


def test_external_with_a_verified_client_certificate(make_mta, pki, users_file, tmp_path):
    """AUTH EXTERNAL (RFC 4422 Appendix A): offered only to a client whose certificate
    verified, as the user its CN names (submission.external_identity = "cn"), a user of the
    users file."""
    users = tmp_path / "users"
    users.write_bytes(users_file.read_bytes())
    users.chmod(0o600)
    user_add(users, "client.test", "client cert user pw")
    s = make_submission(make_mta, pki, users, submission={"external_identity": "cn"},
                        auth={"mechanisms": ["PLAIN", "EXTERNAL"]})
    with starttls_client(s, pki) as c:                     # no certificate: no EXTERNAL
        assert c.esmtp_features["auth"].split() == ["PLAIN"]
        assert c.docmd("AUTH", "EXTERNAL =")[0] == 504
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    with smtplib.SMTP(s.host, s.submission, local_hostname="client.test", timeout=15) as c:
        c.ehlo()
        c.starttls(context=ctx)
        c.ehlo()
        assert c.esmtp_features["auth"].split() == ["PLAIN", "EXTERNAL"]
        assert c.docmd("AUTH", "EXTERNAL =") == (235, b"2.7.0 Authentication successful")
        assert c.mail("client@client.test")[0] == 250
    assert "authid=client.test, mech=EXTERNAL, bits=0" in s.mta.wait_log("mech=EXTERNAL")
    # implicit TLS asks for the certificate too (after Srv_Features, during the handshake)
    with smtplib.SMTP_SSL(s.host, s.submissions, local_hostname="client.test", timeout=15, context=ctx) as c:
        c.ehlo()
        assert c.esmtp_features["auth"].split() == ["PLAIN", "EXTERNAL"]
        assert c.docmd("AUTH", "EXTERNAL " + base64.b64encode(b"client.test").decode())[0] == 235
