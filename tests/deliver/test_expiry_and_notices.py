"""Expiry (give_up_after → bounce 4.4.7), the delay warning DSN, the mail-loop hop limit, and
a pooled connection that the server closed meanwhile — over real sockets, short timings."""

from __future__ import annotations

import asyncio
import time

from harness import Harness, Sink, message, run


def wait_until(pred, timeout=10.0):
    async def waiter():
        deadline = time.monotonic() + timeout
        while not pred() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    return waiter()


def test_expiry_bounces_with_4_4_7(tmp_path, dns_server, mx_port):
    # nothing listens on the MX of order.test: every attempt is a connection refusal
    h = Harness(tmp_path, dns_server, mx_port, {"delivery": {"retry_first": 0.2, "give_up_after": 0.8}})

    async def main():
        h.send("a@localhost", ["u@order.test"], message("expiring"))
        await h.start()
        await wait_until(lambda: not h.spool.ids() or h.mailbox("a"))
        await h.settle()
        await h.stop()
    run(main)
    text = h.log.text()
    assert "stat=Deferred: 451 4.4.1 Connection refused by mx" in text
    dsn = h.dsn("a")
    rcpt = dsn.get_payload()[1].get_payload()[1]
    assert rcpt["Action"] == "failed" and rcpt["Status"] == "4.4.7"
    # the remote reply stays as it was; the expiry is said in the human-readable part
    assert rcpt["Diagnostic-Code"].startswith("SMTP; 451 4.4.1 Connection refused by mx")
    assert "Message could not be delivered for" in dsn.get_payload()[0].get_content()
    assert h.spool.ids() == []


def test_delay_warning_is_sent_once(tmp_path, dns_server, mx_port):
    h = Harness(tmp_path, dns_server, mx_port, {"delivery": {"retry_first": 0.2, "delay_warning": 0.1}})

    async def main():
        qid = h.send("a@localhost", ["u@order.test"], message("slow"))
        await h.start()
        await wait_until(lambda: h.spool.load(qid).recipients[0].attempts >= 3)
        await h.stop()
        return qid
    qid = run(main)
    dsn = h.dsn("a")   # exactly one notice despite several failed attempts
    assert dsn["Subject"].startswith("Warning: could not send message")
    rcpt = dsn.get_payload()[1].get_payload()[1]
    assert rcpt["Action"] == "delayed" and rcpt["Status"].startswith("4.") and rcpt["Will-Retry-Until"]
    assert h.spool.load(qid).recipients[0].state == "deferred"


def test_mail_loop_is_bounced_not_passed_on(tmp_path, dns_server, mx_port):
    h = Harness(tmp_path, dns_server, mx_port)
    looped = b"".join(b"Received: from hop%d.test by hop%d.test; Thu, 26 Nov 2026 01:00:00 +0000\r\n" % (i, i)
                      for i in range(60)) + b"Subject: loop\r\n\r\nbody\r\n"
    with Sink("127.0.0.11", mx_port) as mx1:
        async def main():
            h.send("a@localhost", ["u@order.test"], looped)
            await h.start()
            await h.settle()
            await h.stop()
        run(main)
    assert mx1.messages == []
    assert h.dsn("a").get_payload()[1].get_payload()[1]["Status"] == "5.4.6"


def test_a_pooled_connection_closed_by_the_server_is_replaced(tmp_path, dns_server, mx_port, make_mta):
    """A real mailward MX with a short idle timeout says 421 and closes the connection we kept;
    the next message notices and goes over a new connection."""
    mx = make_mta({"server": {"hostname": "mx.tls.test", "listen": [f"127.0.0.61:{mx_port}"], "idle_timeout": 0.4,
                              "data_timeout": 0.4},
                   "local": {"domains": ["tls.test"]}}, host="127.0.0.61")
    h = Harness(tmp_path / "h", dns_server, mx_port, {"delivery": {"connection_idle": 30.0}})

    async def main():
        h.send("a@localhost", ["u@tls.test"], message("first"))
        await h.start()
        await h.settle()
        assert h.runner.ctx.outbound.connections == 1
        await asyncio.sleep(1.0)     # the MX times the idle session out: 421, close
        h.send("a@localhost", ["u@tls.test"], message("second"))
        h.runner.flush()
        await h.settle()
        await h.stop()
    run(main)
    mx.wait_mail("u", 2)
    assert h.spool.ids() == [] and h.runner.ctx.outbound.connections == 2
    assert "Timeout waiting for input" in mx.log_text() or "timeout" in mx.log_text()


class SlowSink(Sink):
    def __init__(self, *args, delay: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def test_shutdown_lets_a_delivery_finish_within_the_grace(tmp_path, dns_server, mx_port):
    h = Harness(tmp_path, dns_server, mx_port)
    with SlowSink("127.0.0.11", mx_port, delay=0.5) as mx1:
        async def main():
            h.send("a@localhost", ["u@order.test"], message("slow"))
            runner = await h.start()
            await wait_until(lambda: runner._inflight)
            await asyncio.sleep(0.1)
            await h.stop()           # grace 5 s: the delivery finishes and is recorded
        run(main)
    assert len(mx1.messages) == 1 and h.spool.ids() == []


def test_shutdown_past_the_grace_keeps_the_message_for_the_restart(tmp_path, dns_server, mx_port):
    h = Harness(tmp_path, dns_server, mx_port)
    with SlowSink("127.0.0.11", mx_port, delay=1.0) as mx1:
        async def main():
            qid = h.send("a@localhost", ["u@order.test"], message("cut"))
            runner = await h.start()
            runner.grace = 0.1
            await wait_until(lambda: runner._inflight)
            await asyncio.sleep(0.1)
            await h.stop()           # the attempt is cancelled: nothing recorded, message kept
            assert h.spool.ids() == [qid] and h.spool.load(qid).recipients[0].state == "queued"
            h.runner = None
            await h.start()          # "restart": the spool is read again
            await h.settle()
            await h.stop()
        run(main)
    assert h.spool.ids() == [] and len(mx1.messages) >= 1   # at least once, never lost
