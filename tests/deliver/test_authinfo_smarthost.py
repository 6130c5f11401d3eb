"""Relaying through a smarthost with SMTP AUTH from the access map's ``AuthInfo:`` entries
("sendmail cf/README, SMTP AUTHENTICATION"; RFC 4954), end to end with two real
``mailward serve`` processes on loopback:

* A, the sender: receives with smtplib, routes ``remote.example`` to B's submission port
  (``[127.0.0.1]:PORT``), its access map holds ``TLS_Srv:`` and ``AuthInfo:`` for B;
* B, the smarthost: a submission listener (STARTTLS, AUTH required before MAIL, RFC 6409)
  with a users file made by ``mailward user add``; it delivers ``remote.example`` locally.

What is checked is what an administrator sees: the message in B's Maildir, A's
``AUTH=client`` line and B's ``AUTH=server`` line, the deferral reasons, and that the
password is in no log line and no queue file of either server.
"""

from __future__ import annotations

import base64
import json
import smtplib
from pathlib import Path

import pytest

from tests.conftest import free_port, tls_settings
from tests.auth.conftest import dovecot  # noqa: F401  (the fixture: a real Dovecot auth service)
from tests.submission.conftest import user_add
from tests.spool_view import spool_of

PASSWORD = "Sm4rt-h0st pass"   # what must never be written anywhere but the access map


def _everything_written(base: Path) -> str:
    """Every file under a server's folder except its config and the access map (logs, queue)."""
    out = []
    for path in base.rglob("*"):
        if path.is_file() and path.name not in ("access", "mailward.toml", "users"):
            out.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(out)


@pytest.fixture
def servers(make_mta, pki, tmp_path):
    def start(authinfo: str, *, b_password: str = PASSWORD, a_delivery: dict | None = None,
              extra_access: str = "", tls_srv: str = "TLS_Srv:[127.0.0.1]  VERIFY\n", b_auth: dict | None = None):
        users = tmp_path / "users"
        if not users.exists():
            user_add(users, "relayuser", b_password)
        mx_b, sub_b = free_port(), free_port()
        b = make_mta({"server": {"listen": [f"127.0.0.1:{mx_b}", f"127.0.0.1:{sub_b} submission"],
                                 "hostname": "smarthost.test", "reverse_lookup": False},
                      "tls": tls_settings(pki), "auth": b_auth or {"backend": "file", "users_file": str(users)},
                      "submission": {"auth_failure_delay": 0.0},
                      "local": {"domains": ["remote.example"]}, "spool": {"fsync": False}})
        a = make_mta({"server": {"hostname": "a.test", "reverse_lookup": False},
                      "tls": tls_settings(pki), "spool": {"fsync": False},
                      "local": {"domains": ["localhost"]},
                      "policy": {"access_map": "access", "relay_domains": ["remote.example"]},
                      "delivery": {"route_file": "routes", "retry_first": 3600, "connect_timeout": 5,
                                   "command_timeout": 10, **(a_delivery or {})}}, start=False)
        (a.base / "routes").write_text(f"remote.example  [127.0.0.1]:{sub_b}\n")
        (a.base / "access").write_text(f"{tls_srv}{extra_access}{authinfo}\n")
        (a.base / "access").chmod(0o600)
        a.start()
        return a, b
    return start


def send(a, rcpt: str = "bob@remote.example") -> str:
    with smtplib.SMTP(a.host, a.port, local_hostname="client.test", timeout=15) as c:
        c.ehlo()
        c.mail("sender@localhost")
        assert c.rcpt(rcpt)[0] == 250
        code, reply = c.data(b"From: <sender@localhost>\r\nSubject: via smarthost\r\n\r\nhello\r\n")
    assert code == 250
    return reply.decode().split()[1]


def wait_for(mta, text: str, timeout: float = 20.0) -> str:
    return mta.wait_log(text, timeout)


def no_password_anywhere(*servers) -> None:
    encoded = base64.b64encode(f"\0relayuser\0{PASSWORD}".encode()).decode()
    for mta in servers:
        written = _everything_written(mta.base)
        assert PASSWORD not in written and encoded not in written, f"the password leaked under {mta.base}"
        assert base64.b64encode(PASSWORD.encode()).decode() not in written


def test_auth_plain_under_verified_tls_then_delivered(servers):
    a, b = servers('AuthInfo:[127.0.0.1]  "U:relayuser" "P:Sm4rt-h0st pass" "M:PLAIN LOGIN"')
    qid = send(a)
    log = wait_for(a, f"{qid}: to=<bob@remote.example>")
    assert "AUTH=client, relay=[127.0.0.1], mech=PLAIN, bits=0" in log, log
    assert "stat=Sent" in log.split(f"{qid}: to=<bob@remote.example>")[1].splitlines()[0]
    assert "verify=OK" in log
    assert b.wait_mail("bob")
    assert "AUTH=server, relay=[127.0.0.1], authid=relayuser, mech=PLAIN, bits=0" in b.log_text()
    no_password_anywhere(a, b)


def test_auth_login_with_a_base64_password_and_the_address_key(servers):
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    a, b = servers(f'AuthInfo:127.0.0.1  "I:relayuser" "P={encoded}" "M:LOGIN"')
    qid = send(a)
    log = wait_for(a, f"{qid}: to=<bob@remote.example>")
    assert "AUTH=client, relay=[127.0.0.1], mech=LOGIN, bits=0" in log, log
    assert b.wait_mail("bob")
    assert "authid=relayuser, mech=LOGIN" in b.log_text()
    no_password_anywhere(a, b)


def test_wrong_password_defers_with_the_reply_in_the_queue(servers):
    a, b = servers('AuthInfo:  "U:relayuser" "P:Sm4rt-h0st pass"', b_password="another password")
    qid = send(a)
    line = wait_for(a, f"{qid}: to=<bob@remote.example>").split(f"{qid}: to=<bob@remote.example>")[1]
    line = line.splitlines()[0]
    assert "stat=Deferred" in line and "535" in line, line
    assert "AUTH=client, relay=[127.0.0.1], mech=PLAIN, reject=535" in a.log_text()
    status = json.dumps(spool_of(a).history(qid))   # the queue's per-recipient results
    assert "535 5.7.8" in status and "AUTH PLAIN refused" in status, status
    assert not b.maildir_files("bob")
    no_password_anywhere(a, b)


def test_never_in_clear_defers_and_says_why(servers):
    # Try_TLS: NO keeps STARTTLS unused; no TLS_Srv: entry, so the TLS check passes in clear
    # and AuthInfo alone decides
    a, b = servers('AuthInfo:[127.0.0.1]  "U:relayuser" "P:Sm4rt-h0st pass"',
                   extra_access="Try_TLS:[127.0.0.1]  NO\n", tls_srv="")
    qid = send(a)
    line = wait_for(a, f"{qid}: to=<bob@remote.example>").split(f"{qid}: to=<bob@remote.example>")[1]
    line = line.splitlines()[0]
    assert "stat=Deferred" in line and "not sent without TLS" in line, line
    assert "AUTH=client, relay=[127.0.0.1], reject=" in a.log_text()
    assert "AUTH=server" not in b.log_text()
    no_password_anywhere(a, b)


def test_a_dovecot_backed_smarthost(servers, dovecot):  # noqa: F811
    # the smarthost checks the password with a real Dovecot (Dovecot SASL), as a site whose users
    # live in Dovecot runs it; the sender's AuthInfo names alice (whose password is {PLAIN} there)
    a, b = servers('AuthInfo:[127.0.0.1]  "U:alice" "P:alice pw" "M:PLAIN"',
                   b_auth={"backend": "dovecot", "dovecot_socket": str(dovecot.socket), "users_file": ""})
    qid = send(a)
    log = wait_for(a, f"{qid}: to=<bob@remote.example>")
    assert "AUTH=client, relay=[127.0.0.1], mech=PLAIN, bits=0" in log, log
    assert "stat=Sent" in log.split(f"{qid}: to=<bob@remote.example>")[1].splitlines()[0]
    assert b.wait_mail("bob")
    assert "AUTH=server, relay=[127.0.0.1], authid=alice, mech=PLAIN, bits=0" in b.log_text()
    assert "alice pw" not in _everything_written(a.base) + _everything_written(b.base)
