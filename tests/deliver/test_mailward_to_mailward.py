"""Two real mailward processes exchange mail over STARTTLS with client certificates: the sender
finds the receiver by MX (NSD on loopback), presents its client certificate, and both logs
show verify=OK; the receiver's Received header shows the TLS line; the content is exact.
Then kill -9 of the sender during a retry wait, restart: the message is still delivered."""

from __future__ import annotations

import smtplib

from tests.spool_view import leftovers


def sender_settings(pki, dns_server, mx_port, tmp_path, **delivery):
    (tmp_path / "access").write_text("Connect:127.0.0.1 RELAY\n")
    return {
        "server": {"hostname": "sender.test"},
        "local": {"domains": ["localhost"]},
        "tls": {"ca_file": str(pki.ca)},
        "policy": {"access_map": str(tmp_path / "access")},
        "delivery": {"resolver": [dns_server], "smtp_port": mx_port, "client_cert_file": str(pki.client_cert),
                     "client_key_file": str(pki.client_key), "connect_timeout": 2.0, "retry_jitter": 0.0,
                     **delivery},
    }


def receiver_settings(pki, mx_port):
    return {"server": {"hostname": "mx.tls.test", "listen": [f"127.0.0.61:{mx_port}"]},
            "local": {"domains": ["tls.test"]},
            "tls": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key), "ca_file": str(pki.ca)}}


BODY = (b"From: <a@localhost>\r\nTo: <u@tls.test>\r\nSubject: over TLS\r\n\r\n.dot first\r\n..two\r\n"
        b"plain line\r\n.\r\nlast\r\n")


def submit(mta, rcpt="u@tls.test"):
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.ehlo("client.test")
        s.sendmail("a@localhost", [rcpt], BODY)


def test_two_mailwards_over_starttls_with_client_certificates(make_mta, pki, dns_server, mx_port, tmp_path):
    receiver = make_mta(receiver_settings(pki, mx_port), host="127.0.0.61")
    sender = make_mta(sender_settings(pki, dns_server, mx_port, tmp_path))
    submit(sender)
    (path,) = receiver.wait_mail("u", 1, timeout=15)
    sent_log = sender.wait_log("stat=Sent")
    assert "STARTTLS=client, relay=mx.tls.test, version=TLSv1.3, verify=OK, cipher=" in sent_log
    assert "relay=mx.tls.test. [127.0.0.61], dsn=2.0.0, stat=Sent (" in sent_log
    recv_log = receiver.log_text()
    assert "STARTTLS=server, relay=" in recv_log and "verify=OK" in recv_log
    assert "cert-subject=/C=XX/O=Mailward+20Test/CN=client.test" in recv_log
    stored = path.read_bytes()
    assert b"(version=TLSv1.3 cipher=" in stored and b"verify=OK)" in stored
    # exact content: Maildir stores LF line ends; the body after the headers is unchanged
    assert stored.endswith(BODY.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1])
    assert stored.count(b"Received: ") == 2   # the sender's and the receiver's, nothing else added


def test_kill_9_while_deferred_then_restart_delivers(make_mta, pki, dns_server, mx_port, tmp_path):
    sender = make_mta(sender_settings(pki, dns_server, mx_port, tmp_path, retry_first=1.0))
    submit(sender)
    sender.wait_log("stat=Deferred")           # the receiver is not running yet
    sender.kill9()
    receiver = make_mta(receiver_settings(pki, mx_port), host="127.0.0.61")
    sender.start()                              # the spool is read again at start
    receiver.wait_mail("u", 1, timeout=20)
    assert "stat=Sent (" in sender.wait_log("stat=Sent (", timeout=5)
    assert leftovers(sender) == []


def test_recipients_over_the_next_hops_limit_go_in_further_transactions(make_mta, pki, dns_server, mx_port,
                                                                         tmp_path):
    receiver = make_mta({**receiver_settings(pki, mx_port),
                         "server": {"hostname": "mx.tls.test", "listen": [f"127.0.0.61:{mx_port}"],
                                    "max_recipients": 2}}, host="127.0.0.61")
    sender = make_mta(sender_settings(pki, dns_server, mx_port, tmp_path))
    rcpts = [f"u{i}@tls.test" for i in range(5)]
    with smtplib.SMTP(sender.host, sender.port, timeout=10) as s:
        s.sendmail("a@localhost", rcpts, BODY)
    for i in range(5):
        receiver.wait_mail(f"u{i}", 1, timeout=15)
    log = sender.wait_log("to=<u4@tls.test>")
    assert "Deferred" not in log and log.count("STARTTLS=client, relay=") == 1   # one connection, three transactions


def test_kill_9_during_a_delivery_then_restart_delivers_at_least_once(make_mta, pki, dns_server, mx_port,
                                                                       tmp_path):
    import asyncio
    import time

    from harness import Sink

    class Stalling(Sink):
        """Holds the first DATA long enough for the sender to be killed in the middle of it."""
        async def handle_DATA(self, server, session, envelope):
            self.stalled = getattr(self, "stalled", 0) + 1
            if self.stalled == 1:
                await asyncio.sleep(3)
            return await super().handle_DATA(server, session, envelope)

    sender = make_mta(sender_settings(pki, dns_server, mx_port, tmp_path, command_timeout=10.0))
    with Stalling("127.0.0.71", mx_port) as sink:
        submit(sender, rcpt="u@sink.test")
        deadline = time.time() + 10
        while not getattr(sink, "stalled", 0) and time.time() < deadline:
            time.sleep(0.05)
        assert getattr(sink, "stalled", 0) == 1
        sender.kill9()                        # in the middle of the DATA exchange
        sender.start()
        sender.wait_log("stat=Sent (", timeout=15)
        deadline = time.time() + 5
        while not sink.messages and time.time() < deadline:
            time.sleep(0.05)
    assert len(sink.messages) >= 1
    assert sink.messages[-1]["content"].endswith(BODY.split(b"\r\n\r\n", 1)[1])
