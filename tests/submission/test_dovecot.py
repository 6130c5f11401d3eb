"""Submission with Dovecot's auth service as the AUTH backend, end to end: a real Dovecot
(tests/auth's fixture: alice has the password "alice pw" in its passwd-file), a real
``mailward serve`` asking it over its auth-client socket, smtplib as the client."""

from __future__ import annotations

import smtplib

import pytest

from tests.auth.conftest import dovecot  # noqa: F401  (the fixture)
from tests.submission.conftest import make_submission, queue_id, starttls_client


def test_dovecot_backend_end_to_end(make_mta, pki, tmp_path, dovecot):  # noqa: F811
    s = make_submission(make_mta, pki, tmp_path / "unused-users-file",
                        auth={"backend": "dovecot", "dovecot_socket": str(dovecot.socket), "users_file": ""})
    with starttls_client(s, pki) as c:
        assert c.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]   # what Dovecot announces
        c.user, c.password = "alice", "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            c.auth("PLAIN", c.auth_plain)
        assert err.value.smtp_code == 535
        c.user, c.password = "alice", "alice pw"
        assert c.auth("LOGIN", c.auth_login, initial_response_ok=False)[0] == 235
        assert c.mail("alice@example.org")[0] == 250
        assert c.rcpt("user@localhost")[0] == 250
        code, reply = c.data(b"Subject: dovecot\r\n\r\nhello\r\n")
    assert code == 250
    assert "with ESMTPSA id" in s.mta.wait_message("user", queue_id(reply))
    log = s.mta.wait_log("authid=alice, mech=LOGIN")
    assert "AUTH=server, relay=[127.0.0.1], authid=alice, mech=LOGIN, bits=0" in log
    assert "AUTH failure (PLAIN): authentication failure (" in log and "wrong" not in log.replace("wrong password", "")
