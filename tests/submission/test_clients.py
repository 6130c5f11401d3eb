"""Real mail clients submitting through a real ``mailward serve`` with a users file made by
``mailward user add``: swaks (AUTH PLAIN and LOGIN over STARTTLS, PLAIN over implicit TLS),
msmtp (STARTTLS on the submission listener, implicit TLS on the submissions listener, a
wrong password), and SCRAM-SHA-256 driven by scramp's client over raw SMTP commands."""

from __future__ import annotations

import base64
import re
import subprocess

import pytest
from scramp import ScramClient

from tests.conftest import need
from tests.submission.conftest import USERS, queue_id, starttls_client


def swaks(sub, pki, port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [need("swaks"), "--server", sub.host, "--port", str(port), "--helo", "client.test",
         "--from", "alice@example.org", "--to", "user@localhost", "--tls-verify", "--tls-ca-path", str(pki.ca),
         "--auth-user", "alice", "--auth-password", USERS["alice"], "--header", "Subject: via swaks", *args],
        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_auth_over_starttls(sub, pki, mech):
    out = swaks(sub, pki, sub.submission, "--tls", "--auth", mech)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<~  235 2.7.0 Authentication successful" in out.stdout
    qid = re.search(r"<~  250 2\.0\.0 (\S+) Message accepted", out.stdout).group(1)
    assert "with ESMTPSA id" in sub.mta.wait_message("user", qid)
    assert f"authid=alice, mech={mech}, bits=0" in sub.mta.wait_log(f"mech={mech}")


def test_swaks_auth_over_implicit_tls(sub, pki):
    out = swaks(sub, pki, sub.submissions, "--tls-on-connect", "--auth", "PLAIN")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<~  220 mx.test ESMTP mailward" in out.stdout      # the greeting came inside TLS
    assert "<~  235 2.7.0 Authentication successful" in out.stdout


def test_swaks_refused_in_clear_on_submission(sub, pki):
    out = swaks(sub, pki, sub.submission, "--auth", "PLAIN")   # no --tls: AUTH is not offered
    assert out.returncode != 0
    assert "Host did not advertise authentication" in out.stdout + out.stderr


MSMTP_CONF = """\
defaults
tls on
tls_trust_file {ca}
tls_host_override localhost
logfile {log}
host {host}
from alice@example.org
auth {auth}
user alice
password {password}

account starttls
port {submission}
tls_starttls on

account implicit
port {submissions}
tls_starttls off
"""


def msmtp(sub, pki, tmp_path, account: str, password: str = USERS["alice"], auth: str = "plain"):
    conf = tmp_path / f"msmtprc-{account}-{auth}"
    conf.write_text(MSMTP_CONF.format(ca=pki.ca, log=tmp_path / "msmtp.log", host=sub.host, auth=auth,
                                      password=password, submission=sub.submission,
                                      submissions=sub.submissions))
    conf.chmod(0o600)
    message = f"From: alice@example.org\nTo: user@localhost\nSubject: via msmtp {account}\n\nhello\n"
    return subprocess.run([need("msmtp"), "-C", str(conf), "-a", account, "user@localhost"], input=message,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("account", ["starttls", "implicit"])
def test_msmtp(sub, pki, tmp_path, account):
    out = msmtp(sub, pki, tmp_path, account)
    assert out.returncode == 0, out.stdout + out.stderr + (tmp_path / "msmtp.log").read_text()
    line = (tmp_path / "msmtp.log").read_text().splitlines()[-1]
    assert "exitcode=EX_OK" in line
    qid = re.search(r'smtpmsg=.250 2\.0\.0 (\S+) Message accepted', line).group(1)
    assert "with ESMTPSA id" in sub.mta.wait_message("user", qid)


def test_msmtp_wrong_password(sub, pki, tmp_path):
    out = msmtp(sub, pki, tmp_path, "starttls", password="not the password", auth="login")
    assert out.returncode != 0
    assert "535 5.7.8 Authentication credentials invalid" in out.stderr + (tmp_path / "msmtp.log").read_text()


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def scram_login(c, user: str, password: str) -> tuple[int, bytes]:
    """SCRAM-SHA-256 (RFC 7677) with scramp's client, as raw AUTH commands (RFC 4954 §4)."""
    client = ScramClient(["SCRAM-SHA-256"], user, password)
    code, text = c.docmd("AUTH", "SCRAM-SHA-256 " + b64(client.get_client_first()))
    assert code == 334, text
    client.set_server_first(base64.b64decode(text).decode())
    code, text = c.docmd(b64(client.get_client_final()))
    if code != 334:
        return code, text
    client.set_server_final(base64.b64decode(text).decode())   # checks the server's signature
    return c.docmd("")


def test_scram_sha_256(sub, pki):
    with starttls_client(sub, pki) as c:
        assert scram_login(c, "alice", "wrong") == (535, b"5.7.8 Authentication credentials invalid")
        assert scram_login(c, "alice", USERS["alice"]) == (235, b"2.7.0 Authentication successful")
        c.mail("alice@example.org")
        c.rcpt("user@localhost")
        code, reply = c.data(b"Subject: scram\r\n\r\nhello\r\n")
    assert code == 250
    assert "with ESMTPSA id" in sub.mta.wait_message("user", queue_id(reply))
    log = sub.mta.wait_log("mech=SCRAM-SHA-256, bits=0")
    assert "AUTH=server, relay=[127.0.0.1], authid=alice, mech=SCRAM-SHA-256, bits=0" in log
    assert "AUTH failure (SCRAM-SHA-256): authentication failure (SCRAM-SHA-256: authcid=alice: wrong password)" \
        in log
