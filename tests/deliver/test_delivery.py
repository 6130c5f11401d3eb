"""Delivery end to end over loopback: real DNS (NSD), real spool, real runner, aiosmtpd sinks
as the MX hosts on 127.0.0.x. What a user sees: where mail lands, log lines, DSNs."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from harness import Harness, Sink, message, run


@pytest.fixture
def harness_factory(tmp_path, dns_server, mx_port):
    made = []

    def make(settings=None):
        h = Harness(tmp_path / f"h{len(made)}", dns_server, mx_port, settings)
        made.append(h)
        return h
    return make


def test_mx_order_first_preference_gets_the_mail(harness_factory, mx_port):
    h = harness_factory()
    with Sink("127.0.0.11", mx_port) as mx1, Sink("127.0.0.12", mx_port) as mx2:
        async def main():
            h.send("a@localhost", ["u@order.test"], message())
            await h.start()
            await h.settle()
            await h.stop()
        run(main)
    assert len(mx1.messages) == 1 and not mx2.messages
    assert "relay=mx1.order.test. [127.0.0.11], dsn=2.0.0, stat=Sent" in h.log.text()
    assert h.spool.ids() == []


class Silent:
    """Accepts TCP connections and never says a word (an MX that does not answer)."""

    def __init__(self, host, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(5)
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            while True:
                self.conns.append(self.sock.accept()[0])
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("first", ["refuses", "silent"])
def test_fallback_to_the_next_mx(harness_factory, mx_port, first):
    h = harness_factory({"delivery": {"connect_timeout": 1.0}})
    silent = Silent("127.0.0.21", mx_port) if first == "silent" else None
    try:
        with Sink("127.0.0.22", mx_port) as live:
            async def main():
                h.send("a@localhost", ["u@fallback.test"], message())
                await h.start()
                await h.settle()
                await h.stop()
            started = time.monotonic()
            run(main)
    finally:
        if silent:
            silent.close()
    assert len(live.messages) == 1
    assert "relay=live.fallback.test. [127.0.0.22], dsn=2.0.0, stat=Sent" in h.log.text()
    assert time.monotonic() - started < 10


def test_no_mx_uses_the_domains_address(harness_factory, mx_port):
    h = harness_factory()
    with Sink("127.0.0.41", mx_port) as sink:
        async def main():
            h.send("a@localhost", ["u@nomx.test"], message())
            await h.start()
            await h.settle()
            await h.stop()
        run(main)
    assert sink.messages[0]["to"] == ["u@nomx.test"]


def test_null_mx_bounces_at_once_with_a_dsn(harness_factory):
    h = harness_factory()

    async def main():
        h.send("a@localhost", ["u@null.test"], message("to null"))
        await h.start()
        await h.settle()
        await h.stop()
    run(main)
    dsn = h.dsn("a")
    assert dsn.get_content_type() == "multipart/report"
    per_rcpt = dsn.get_payload()[1].get_payload()[1]
    assert per_rcpt["Final-Recipient"] == "rfc822; u@null.test" and per_rcpt["Status"] == "5.1.10"
    assert per_rcpt["Action"] == "failed" and "556 5.1.10" in per_rcpt["Diagnostic-Code"]
    assert h.spool.ids() == []   # the original is gone, the DSN delivered
    assert "DSN: " in h.log.text()


def test_servfail_defers_never_bounces(harness_factory):
    h = harness_factory()

    async def main():
        qid = h.send("a@localhost", ["u@mail.broken.test"], message())
        await h.start()
        await h.settle()
        await h.stop()
        return qid
    qid = run(main)
    env = h.spool.load(qid)
    assert env.recipients[0].state == "deferred" and env.recipients[0].detail.startswith("451 4.4.3")
    assert h.mailbox("a") == []
    assert "stat=Deferred: 451 4.4.3" in h.log.text()


def test_content_is_delivered_byte_for_byte_with_dot_stuffing(harness_factory, mx_port):
    body = (b".\r\n..\r\n.leading dot\r\n...three\r\nmiddle . dot\r\n\r\n.\r\n"
            b"8-bit: \xc3\xa9\xc3\xa0\r\n" + b"x" * 998 + b"\r\n" + b"end without dot\r\n")
    original = message("dots", body)
    h = harness_factory()
    with Sink("127.0.0.11", mx_port) as mx1:
        async def main():
            h.send("a@localhost", ["u@order.test"], original, {"BODY": "8BITMIME"})
            await h.start()
            await h.settle()
            await h.stop()
        run(main)
    assert mx1.messages[0]["content"] == original
    assert "BODY=8BITMIME" in mx1.messages[0]["mail_options"]


def test_4xx_then_success_on_retry(harness_factory, mx_port):
    h = harness_factory({"delivery": {"retry_first": 0.3}})
    with Sink("127.0.0.11", mx_port, rcpt_replies={"u@order.test": ["451 4.3.0 try again later"]}) as mx1:
        async def main():
            h.send("a@localhost", ["u@order.test"], message())
            await h.start()
            await h.settle()
            deadline = time.monotonic() + 10
            while h.spool.ids() and time.monotonic() < deadline:
                await __import__("asyncio").sleep(0.1)
            await h.stop()
        run(main)
    text = h.log.text()
    assert "stat=Deferred: 451 4.3.0 try again later" in text
    assert text.index("Deferred") < text.index("stat=Sent")
    assert len(mx1.messages) == 1 and h.spool.ids() == []


def test_5xx_bounces_with_the_remote_status_and_others_still_delivered(harness_factory, mx_port):
    h = harness_factory()
    with Sink("127.0.0.11", mx_port, rcpt_replies={"bad@order.test": "550 5.1.1 <bad@order.test>... User unknown"}) \
            as mx1:
        async def main():
            h.send("a@localhost", ["good@order.test", ("bad@order.test", {"ORCPT": "rfc822;bad@order.test"})],
                   message("mixed"), {"RET": "HDRS", "ENVID": "E1"})
            await h.start()
            await h.settle()
            await h.stop()
        run(main)
    assert mx1.messages[0]["to"] == ["good@order.test"]
    dsn = h.dsn("a")
    status = dsn.get_payload()[1].get_payload()
    assert status[0]["Original-Envelope-Id"] == "E1"
    assert [p["Final-Recipient"] for p in status[1:]] == ["rfc822; bad@order.test"]
    assert status[1]["Status"] == "5.1.1" and status[1]["Remote-MTA"] == "dns; mx1.order.test"
    assert status[1]["Diagnostic-Code"] == "SMTP; 550 5.1.1 <bad@order.test>... User unknown"
    assert dsn.get_payload()[2].get_content_type() == "text/rfc822-headers"   # RET=HDRS


def test_no_dsn_to_the_null_sender(harness_factory):
    h = harness_factory()

    async def main():
        h.send("", ["u@null.test"], message())
        await h.start()
        await h.settle()
        await h.stop()
    run(main)
    assert h.spool.ids() == [] and "reason=null sender" in h.log.text()


def test_success_dsn_when_next_hop_lacks_dsn(harness_factory, mx_port):
    h = harness_factory()
    with Sink("127.0.0.11", mx_port) as mx1:   # aiosmtpd does not announce DSN
        async def main():
            h.send("a@localhost", [("u@order.test", {"NOTIFY": "SUCCESS"})], message())
            await h.start()
            await h.settle()
            await h.stop()
        run(main)
    assert len(mx1.messages) == 1
    rcpt = h.dsn("a").get_payload()[1].get_payload()[1]
    assert rcpt["Action"] == "relayed" and rcpt["Status"] == "2.0.0"


def test_connection_reuse_for_several_messages(harness_factory, mx_port):
    h = harness_factory({"delivery": {"max_per_destination": 1}})
    with Sink("127.0.0.11", mx_port) as mx1:
        async def main():
            for i in range(3):
                h.send("a@localhost", ["u@order.test"], message(f"m{i}"))
            await h.start()
            await h.settle()
            await h.stop()
        run(main)
    assert len(mx1.messages) == 3
    assert len(mx1.sessions) == 1 and h.runner.ctx.outbound.connections == 1


def test_aliases_to_local_users_and_remote_addresses(harness_factory, mx_port, tmp_path):
    aliases = tmp_path / "aliases"
    aliases.write_text("# test aliases\nteam: alice, bob@order.test,\n  staff\nstaff: carol\n")
    h = harness_factory({"local": {"aliases": str(aliases)}})
    with Sink("127.0.0.11", mx_port) as mx1:
        async def main():
            h.send("a@localhost", ["team@localhost"], message("team"))
            await h.start()
            await h.settle()
            await h.stop()
        run(main)
    assert len(h.mailbox("alice")) == 1 and len(h.mailbox("carol")) == 1
    assert mx1.messages[0]["to"] == ["bob@order.test"]
    assert "mailer=alias" in h.log.text()


def test_size_over_the_next_hops_limit_and_smtputf8_without_support_bounce(harness_factory, mx_port):
    h = harness_factory()
    big = message("big", b"x" * 3000 + b"\r\n")
    with Sink("127.0.0.11", mx_port, data_size_limit=1000, enable_SMTPUTF8=False) as mx1:
        async def main():
            h.send("a@localhost", ["u@order.test"], big)
            h.send("a@localhost", ["v@order.test"], message("utf8"), {"SMTPUTF8": None})
            await h.start()
            await h.settle()
            await h.stop()
        run(main)
    assert mx1.messages == []
    statuses = sorted(email_status(raw) for raw in h.mailbox("a"))
    assert statuses == ["5.3.4", "5.6.7"]


def email_status(raw: bytes) -> str:
    import email
    import email.policy
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return msg.get_payload()[1].get_payload()[1]["Status"]


def test_mx_pointing_back_to_this_server_bounces_5_3_5(harness_factory):
    h = harness_factory({"server": {"hostname": "mx1.order.test"}})

    async def main():
        h.send("a@localhost", ["u@order.test"], message())
        await h.start()
        await h.settle()
        await h.stop()
    run(main)
    assert h.dsn("a").get_payload()[1].get_payload()[1]["Status"] == "5.3.5"


def test_more_messages_due_than_delivery_slots_all_go_out(harness_factory, mx_port):
    """Regression: with more messages due than max_deliveries, the ones beyond the first
    free slot were dropped from the timetable (the benchmark saw 21 of 1,000 delivered)."""
    h = harness_factory({"delivery": {"max_deliveries": 2}})
    with Sink("127.0.0.11", mx_port) as mx1:
        async def main():
            for i in range(30):
                h.send("a@localhost", ["u@order.test"], message(f"m{i}"))
            await h.start()
            await h.settle()
            await h.stop()
        run(main)
    assert len(mx1.messages) == 30
    assert h.spool.ids() == []
