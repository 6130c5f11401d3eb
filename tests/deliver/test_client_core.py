"""The sans-IO SMTP client core, driven by plain calls: transcripts of S:/C: bytes."""

from __future__ import annotations

import pytest

from mailward.smtp import client as C
from mailward.smtp.replies import Reply

EHLO_FULL = (b"250-mx.test Hello client [127.0.0.1], pleased to meet you\r\n250-ENHANCEDSTATUSCODES\r\n"
             b"250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000000\r\n250-DSN\r\n250-SMTPUTF8\r\n"
             b"250-STARTTLS\r\n250 HELP\r\n")
EHLO_PLAIN = b"250-mx.test Hello\r\n250 8BITMIME\r\n"


def events(conn: C.ClientConnection) -> list:
    out = []
    while True:
        e = conn.next_event()
        if e in (C.NEED_DATA, C.WAITING):
            return out
        out.append(e)


def greet(conn, ehlo=EHLO_FULL):
    conn.receive_data(b"220 mx.test ESMTP\r\n")
    evs = events(conn)
    assert isinstance(evs[0], C.Greeting)
    assert conn.data_to_send() == f"EHLO {conn.local_name}\r\n".encode()
    conn.receive_data(ehlo)
    evs = events(conn)
    assert isinstance(evs[-1], C.Ready)
    return evs[-1]


def tx(*rcpts, sender="a@client.test", params=None, size=0):
    return C.Transaction(sender, tuple((r, p) for r, p in rcpts), params or {}, size)


def test_reply_reader_multiline_and_enhanced_codes():
    r = C.ReplyReader()
    assert r.feed(b"250-2.1.0 first\r\n250") == []
    (reply,) = r.feed(b" 2.1.0 second\r\n")
    assert reply == Reply(250, "2.1.0", ("first", "second"))
    with pytest.raises(C.RemoteProtocolError):
        C.ReplyReader().feed(b"hello there\r\n")
    with pytest.raises(C.RemoteProtocolError):
        C.ReplyReader().feed(b"250-a\r\n354 b\r\n")


def test_ehlo_extensions():
    ready = greet(C.ClientConnection("client.test"))
    assert ready.esmtp and ready.extensions["SIZE"] == "1000000" and "PIPELINING" in ready.extensions


def test_helo_fallback_when_ehlo_refused():
    conn = C.ClientConnection("client.test")
    conn.receive_data(b"220 old.test SMTP\r\n")
    events(conn)
    assert conn.data_to_send() == b"EHLO client.test\r\n"
    conn.receive_data(b"502 5.5.1 Command unrecognized\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"HELO client.test\r\n"
    conn.receive_data(b"250 old.test\r\n")
    (ready,) = events(conn)
    assert isinstance(ready, C.Ready) and not ready.esmtp
    # without ESMTP no parameters are sent, and commands go one at a time
    conn.send_transaction(tx(("b@x.test", {"NOTIFY": "SUCCESS"}), sender="a@c.test",
                             params={"BODY": "8BITMIME", "RET": "HDRS"}, size=99))
    assert conn.data_to_send() == b"MAIL FROM:<a@c.test>\r\n"


def test_greeting_554_quits():
    conn = C.ClientConnection("c")
    conn.receive_data(b"554 5.3.2 go away\r\n")
    (g,) = events(conn)
    assert g.reply.code == 554 and conn.data_to_send() == b"QUIT\r\n"
    conn.receive_data(b"221 2.0.0 bye\r\n")
    (closed,) = events(conn)
    assert isinstance(closed, C.Closed) and conn.closed


def test_pipelined_transaction_params_and_per_recipient_results():
    conn = C.ClientConnection("client.test")
    greet(conn)
    conn.send_transaction(tx(("ok@x.test", {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;ok@x.test"}),
                             ("bad@x.test", {}), ("later@x.test", {}),
                             params={"BODY": "8BITMIME", "RET": "HDRS", "ENVID": "abc", "SMTPUTF8": None},
                             size=1234))
    # RFC 2920: the whole group in one write, DATA last
    assert conn.data_to_send() == (
        b"MAIL FROM:<a@client.test> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc\r\n"
        b"RCPT TO:<ok@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;ok@x.test\r\n"
        b"RCPT TO:<bad@x.test>\r\nRCPT TO:<later@x.test>\r\nDATA\r\n")
    conn.receive_data(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 <bad@x.test>... User unknown\r\n"
                      b"451 4.3.0 try later\r\n354 go\r\n")
    (send,) = events(conn)
    assert isinstance(send, C.SendContent)
    conn.send_content(b"Subject: x\r\n\r\n.leading dot\r\n")
    conn.send_content(b".\r\nmiddle\r\n..two\r\n")
    conn.end_content()
    assert conn.data_to_send() == b"Subject: x\r\n\r\n..leading dot\r\n..\r\nmiddle\r\n...two\r\n.\r\n"
    conn.receive_data(b"250 2.0.0 queued as X\r\n")
    (done,) = events(conn)
    r = done.result
    assert r.outcome(0).code == 250 and r.outcome(1).status == "5.1.1" and r.outcome(2).code == 451
    assert conn.ready and conn.transactions == 1


def test_dot_stuffing_across_chunk_boundaries_and_missing_final_crlf():
    conn = C.ClientConnection("c")
    greet(conn)
    conn.send_transaction(tx(("b@x", {})))
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    events(conn)
    for chunk in (b"a\r", b"\n", b".b\r\n.", b"c"):  # '.' starts a line in the 3rd and 4th chunks
        conn.send_content(chunk)
    conn.end_content()
    assert conn.data_to_send() == b"a\r\n..b\r\n..c\r\n.\r\n"


def test_all_recipients_refused_pipelined_then_rset_and_reuse():
    conn = C.ClientConnection("c")
    greet(conn)
    conn.send_transaction(tx(("x@y", {})))
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"RSET\r\n"
    conn.receive_data(b"250 2.0.0 reset\r\n")
    (done,) = events(conn)
    assert done.result.outcome(0).code == 550 and conn.ready
    conn.send_transaction(tx(("z@y", {})))
    assert conn.data_to_send().startswith(b"MAIL FROM:<a@client.test>")


def test_not_pipelined_stops_after_mail_refusal():
    conn = C.ClientConnection("c")
    greet(conn, EHLO_PLAIN)
    conn.send_transaction(tx(("x@y", {}), ("z@y", {})))
    assert conn.data_to_send() == b"MAIL FROM:<a@client.test>\r\n"
    conn.receive_data(b"553 5.1.8 bad sender\r\n")
    (done,) = events(conn)
    assert conn.data_to_send() == b""
    assert done.result.outcome(1).code == 553


def test_not_pipelined_one_command_at_a_time():
    conn = C.ClientConnection("c")
    greet(conn, EHLO_PLAIN)
    conn.send_transaction(tx(("x@y", {}), ("z@y", {})))
    assert conn.data_to_send() == b"MAIL FROM:<a@client.test>\r\n"
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    assert conn.data_to_send() == b"RCPT TO:<x@y>\r\n"
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    assert conn.data_to_send() == b"RCPT TO:<z@y>\r\n"
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    assert conn.data_to_send() == b"DATA\r\n"


def test_starttls_is_an_event_and_ehlo_again_after():
    conn = C.ClientConnection("c")
    greet(conn)
    conn.start_tls()
    assert conn.data_to_send() == b"STARTTLS\r\n"
    conn.receive_data(b"220 2.0.0 Ready to start TLS\r\n")
    assert isinstance(events(conn)[0], C.TLSReady)
    conn.tls_started()
    assert conn.data_to_send() == b"EHLO c\r\n" and conn.extensions == {}
    conn.receive_data(b"250-mx\r\n250 PIPELINING\r\n")
    (ready,) = events(conn)
    assert "STARTTLS" not in ready.extensions and conn.tls_active


def test_starttls_refused_stays_usable():
    conn = C.ClientConnection("c")
    greet(conn)
    conn.start_tls()
    conn.receive_data(b"454 4.7.0 TLS not available due to temporary reason\r\n")
    (refused,) = events(conn)
    assert isinstance(refused, C.TLSRefused) and conn.ready


def test_421_and_lost_connection_end_the_transaction_as_transient():
    conn = C.ClientConnection("c")
    greet(conn)
    conn.send_transaction(tx(("x@y", {})))
    conn.receive_data(b"250 ok\r\n")
    conn.receive_data(b"")
    evs = events(conn)
    assert isinstance(evs[0], C.TransactionDone) and evs[0].result.outcome(0).code == 451
    assert isinstance(evs[1], C.Closed) and conn.closed

    conn = C.ClientConnection("c")
    greet(conn)
    conn.receive_data(b"421 4.3.2 shutting down\r\n")
    (closed,) = events(conn)
    assert closed.reply.code == 421


def test_wrong_call_is_a_local_error():
    conn = C.ClientConnection("c")
    with pytest.raises(C.LocalProtocolError):
        conn.send_transaction(tx(("x@y", {})))


def test_replies_injected_before_the_tls_handshake_are_never_used():
    """The client-side STARTTLS injection (CVE-2011-1575 class): a server (or a man in the
    middle) sends replies in clear right behind 220; after the handshake the client must not
    take them as answers to its commands inside TLS."""
    conn = C.ClientConnection("client.test")
    greet(conn)
    conn.start_tls()
    assert conn.data_to_send() == b"STARTTLS\r\n"
    conn.receive_data(b"220 2.0.0 Ready to start TLS\r\n250-evil.test\r\n250 AUTH PLAIN\r\n250 2.1.0 ok\r\n")
    assert isinstance(events(conn)[-1], C.TLSReady)
    conn.tls_started()
    assert conn.data_to_send() == b"EHLO client.test\r\n"
    assert events(conn) == []  # nothing injected answered our EHLO
    conn.receive_data(EHLO_PLAIN)
    ready = events(conn)[-1]
    assert isinstance(ready, C.Ready) and "AUTH" not in ready.extensions and conn.tls_active
