"""LMTP delivery (RFC 2033) into a real Dovecot 2.3: its ``lmtp`` service on a UNIX socket
and on a loopback TCP port (STARTTLS with a certificate from our own CA), its ``imap``
service to read what arrived. Dovecot runs from a config in a tmp folder (the approach of
tests/auth: base_dir in tmp, anvil's penalty socket, existing internal/login users).

* in process: :func:`mailward.deliver.lmtp.deliver` with the delivery client's settings,
  one message to a known and an unknown user: 250 for one, 550 5.1.1 for the other;
* a real ``mailward serve`` with the route ``example.test lmtp:unix:SOCKET``: a message
  sent with smtplib is read back over IMAP with its Received lines; a message to a known
  and an unknown user delivers one and bounces the other with a DSN carrying Dovecot's 550.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import imaplib
import os
import shutil
import smtplib
import tempfile
import time
from pathlib import Path

import pytest

from mailward.deliver import lmtp
from mailward.deliver.outbound import Outbound, PendingRecipient, Transfer
from mailward.deliver.routes import Hop
from mailward.tls.context import TLSFiles, client_context
from tests.auth.conftest import DOVECOT, Dovecot
from tests.conftest import free_port

MAIL_UID = 65534   # nobody: Dovecot's mail processes run as the userdb's uid

DOVECOT_CONF = """\
# Dovecot for mailward's LMTP tests: lmtp on a UNIX socket and a loopback port, imap on a port.
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = mailward-lmtp-{name}
log_path = {dir}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
mail_location = maildir:{dir}/mail/%u
first_valid_uid = {uid}
passdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
userdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
service lmtp {{
  unix_listener {dir}/lmtp {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    user = $default_internal_user
    mode = 0600
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@example.test
}}
"""


class DovecotMail(Dovecot):
    imap_port: int = 0
    lmtp_port: int = 0

    def messages(self, user: str, password: str, want: int = 1, timeout: float = 10.0) -> list[bytes]:
        """Every message in the user's INBOX, read over IMAP (waits for ``want`` of them)."""
        deadline = time.monotonic() + timeout
        while True:
            imap = imaplib.IMAP4("127.0.0.1", self.imap_port)
            try:
                imap.login(user, password)
                imap.select("INBOX")
                _, data = imap.search(None, "ALL")
                found = []
                for num in data[0].split():
                    _, parts = imap.fetch(num, "(RFC822)")
                    found.append(parts[0][1])
            finally:
                try:
                    imap.logout()
                except Exception:
                    pass
            if len(found) >= want or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


@pytest.fixture(scope="module")
def dovecot(pki):
    if not os.path.exists(DOVECOT):
        pytest.skip("dovecot is not installed (scripts/install-test-deps)")
    if os.geteuid() != 0:
        pytest.skip("dovecot -F needs root here (its services change user)")
    folder = Path(tempfile.mkdtemp(prefix="mwlm", dir="/tmp"))   # short: a UNIX socket path has 108 octets
    folder.chmod(0o755)
    (folder / "mail").mkdir()
    os.chown(folder / "mail", MAIL_UID, MAIL_UID)
    (folder / "passwd").write_text(f"alice:{{PLAIN}}alice pw:{MAIL_UID}:{MAIL_UID}::{folder}/mail/alice::\n"
                                   f"bob:{{PLAIN}}bob pw:{MAIL_UID}:{MAIL_UID}::{folder}/mail/bob::\n")
    lmtp_port, imap_port = free_port(), free_port()
    conf = folder / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(dir=folder, name=folder.name, cert=pki.server_cert, key=pki.server_key,
                                        uid=MAIL_UID, lmtp_port=lmtp_port, imap_port=imap_port))
    dc = DovecotMail(folder, folder / "lmtp", conf, folder / "dovecot.log")
    dc.lmtp_port, dc.imap_port = lmtp_port, imap_port
    dc.start()
    try:
        _wait_port(imap_port)
        yield dc
    finally:
        dc.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_port(port: int, timeout: float = 10.0) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def outbound(pki, **kw) -> Outbound:
    return Outbound(helo_name="mw.test", tls_context=client_context(TLSFiles(ca_file=str(pki.ca))),
                    connect_timeout=5, command_timeout=10, **kw)


def transfer(qid: str, rcpts: list[str], subject: str = "lmtp") -> Transfer:
    content = (f"From: <sender@client.test>\r\nTo: <alice@example.test>\r\nSubject: {subject}\r\n"
               f"Message-ID: <{qid}@client.test>\r\n\r\nHello by LMTP.\r\n.dot line\r\n").encode()
    return Transfer(qid, "sender@client.test", {}, [PendingRecipient(i, r, {}) for i, r in enumerate(rcpts)],
                    lambda: iter([content]), len(content), domain="example.test")


def test_unix_socket_one_reply_per_recipient(dovecot, pki):
    out = asyncio.run(lmtp.deliver(outbound(pki), transfer("QLMTP1", ["alice@example.test", "nosuch@example.test",
                                                                      "bob@example.test"]),
                                   lmtp.Destination(socket=str(dovecot.socket))))
    assert out[0].reply.code == 250 and out[2].reply.code == 250
    assert out[1].reply.code == 550 and out[1].reply.status == "5.1.1"
    assert out[0].relay == f"unix:{dovecot.socket}"
    (msg,) = dovecot.messages("bob", "bob pw")
    assert b"Message-ID: <QLMTP1@client.test>" in msg and b"\r\n.dot line\r\n" in msg


def test_tcp_with_starttls_verified(dovecot, pki, caplog):
    caplog.set_level("INFO", logger="mailward")
    hop = Hop("[127.0.0.1]", "127.0.0.1", dovecot.lmtp_port)
    out = asyncio.run(lmtp.deliver(outbound(pki), transfer("QLMTP2", ["alice@example.test"]),
                                   lmtp.Destination(hops=(hop,))))
    assert out[0].reply.code == 250, out
    line = next(r.getMessage() for r in caplog.records if "STARTTLS=client" in r.getMessage())
    assert "relay=[127.0.0.1]" in line and "verify=OK" in line
    msgs = dovecot.messages("alice", "alice pw", want=2)
    assert any(b"<QLMTP2@client.test>" in m for m in msgs)


def test_missing_socket_defers_naming_it(tmp_path, pki):
    out = asyncio.run(lmtp.deliver(outbound(pki), transfer("QLMTP3", ["a@example.test"]),
                                   lmtp.Destination(socket=str(tmp_path / "nothing"))))
    assert out[0].reply.code == 451 and str(tmp_path / "nothing") in str(out[0].reply)


# ---- a real mailward serve with an lmtp: route --------------------------------------------------

@pytest.fixture
def mailward_lmtp(make_mta, dovecot):
    mta = make_mta({"server": {"hostname": "mx.test", "reverse_lookup": False},
                    "local": {"domains": ["localhost"]}, "spool": {"fsync": False},
                    "policy": {"relay_domains": ["example.test"]},
                    "delivery": {"route_file": "routes", "retry_first": 3600}}, start=False)
    (mta.base / "routes").write_text(f"example.test   lmtp:unix:{dovecot.socket}\n")
    return mta.start()


def smtp_send(mta, rcpts: list[str], subject: str) -> str:
    with smtplib.SMTP(mta.host, mta.port, local_hostname="client.test", timeout=15) as c:
        c.ehlo()
        c.mail("sender@localhost")
        for r in rcpts:
            assert c.rcpt(r)[0] == 250
        code, reply = c.data(f"From: <sender@localhost>\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
                             .encode())
    assert code == 250
    return reply.decode().split()[1]


def test_serve_delivers_by_lmtp_and_imap_finds_it(mailward_lmtp, dovecot):
    qid = smtp_send(mailward_lmtp, ["bob@example.test"], "by serve")
    line = mailward_lmtp.wait_log(f"{qid}: to=<bob@example.test>", 20)
    line = line.split(f"{qid}: to=<bob@example.test>")[1].splitlines()[0]
    assert "mailer=lmtp" in line and f"relay=unix:{dovecot.socket}" in line and "stat=Sent" in line, line
    msgs = [m for m in dovecot.messages("bob", "bob pw", want=2) if b"Subject: by serve" in m]
    assert len(msgs) == 1
    msg = email.message_from_bytes(msgs[0], policy=email.policy.default)
    received = msg.get_all("Received")
    assert any("by mx.test" in r and qid in r for r in received), received     # mailward's
    assert any("with LMTP" in r for r in received), received                     # Dovecot's


def test_unknown_user_bounces_while_the_other_is_delivered(mailward_lmtp, dovecot):
    qid = smtp_send(mailward_lmtp, ["alice@example.test", "nosuch@example.test"], "one of two")
    log = mailward_lmtp.wait_log(f"{qid}: to=<nosuch@example.test>", 20)
    bad = log.split(f"{qid}: to=<nosuch@example.test>")[1].splitlines()[0]
    assert "mailer=lmtp" in bad and "dsn=5.1.1" in bad and "User doesn't exist" in bad, bad
    good = mailward_lmtp.wait_log(f"{qid}: to=<alice@example.test>").split(
        f"{qid}: to=<alice@example.test>")[1].splitlines()[0]
    assert "stat=Sent" in good, good
    assert any(b"Subject: one of two" in m for m in dovecot.messages("alice", "alice pw", want=3))
    (bounce,) = mailward_lmtp.wait_mail("sender", 1, 20)
    dsn = bounce.read_text(errors="replace")
    finals = [ln for ln in dsn.splitlines() if ln.startswith("Final-Recipient:")]
    assert finals == ["Final-Recipient: rfc822; nosuch@example.test"], finals
    assert "550 5.1.1" in dsn
