"""The client core in LMTP mode (RFC 2033), driven by plain calls: transcripts of S:/C: bytes."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from mailward.smtp import client as C
from mailward.smtp.replies import Reply

LHLO = b"250-dovecot.test\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 PIPELINING\r\n"


def events(conn: C.ClientConnection) -> list:
    out = []
    while True:
        e = conn.next_event()
        if e in (C.NEED_DATA, C.WAITING):
            return out
        out.append(e)


def ready(conn: C.ClientConnection, lhlo: bytes = LHLO) -> C.Ready:
    conn.receive_data(b"220 dovecot.test Dovecot ready.\r\n")
    events(conn)
    assert conn.data_to_send() == b"LHLO mw.test\r\n"
    conn.receive_data(lhlo)
    (ev,) = events(conn)
    assert isinstance(ev, C.Ready)
    return ev


def transaction(conn, rcpts, rcpt_replies: bytes, final: bytes):
    conn.send_transaction(C.Transaction("a@client.test", tuple((r, {}) for r in rcpts), {}, 10))
    sent = conn.data_to_send()
    assert sent.startswith(b"MAIL FROM:<a@client.test>") and sent.endswith(b"DATA\r\n")
    conn.receive_data(b"250 2.1.0 OK\r\n" + rcpt_replies + b"354 OK\r\n")
    (ev,) = events(conn)
    assert isinstance(ev, C.SendContent)
    conn.send_content(b"Subject: x\r\n\r\nhi\r\n")
    conn.end_content()
    assert conn.data_to_send().endswith(b"\r\n.\r\n")
    conn.receive_data(final)
    return events(conn)


def test_lhlo_instead_of_ehlo_and_one_reply_per_recipient():
    conn = C.ClientConnection("mw.test", lmtp=True)
    ready(conn)
    evs = transaction(conn, ["a@x", "b@x", "c@x"], b"250 2.1.5 OK\r\n550 5.1.1 <b@x> User doesn't exist\r\n"
                      b"250 2.1.5 OK\r\n",
                      b"250 2.0.0 <a@x> Saved\r\n")
    assert evs == []                      # a second reply is due (for c@x): not done yet
    assert conn.state is C.ClientState.DATA_END
    (done,) = events_after(conn, b"452 4.2.2 <c@x> Quota exceeded\r\n")
    result = done.result
    assert isinstance(result, C.LMTPResult)
    assert result.outcome(0) == Reply(250, "2.0.0", "<a@x> Saved")
    assert result.outcome(1).code == 550 and result.outcome(1).status == "5.1.1"
    assert result.outcome(2) == Reply(452, "4.2.2", "<c@x> Quota exceeded")
    assert conn.ready and conn.transactions == 1


def events_after(conn, data: bytes) -> list:
    conn.receive_data(data)
    return events(conn)


def test_replies_arriving_together_and_the_connection_is_reused():
    conn = C.ClientConnection("mw.test", lmtp=True)
    ready(conn)
    (done,) = transaction(conn, ["a@x", "b@x"], b"250 OK\r\n250 OK\r\n", b"250 2.0.0 a ok\r\n250 2.0.0 b ok\r\n")
    assert [done.result.outcome(i).text for i in (0, 1)] == ["a ok", "b ok"]
    (done,) = transaction(conn, ["c@x"], b"250 OK\r\n", b"554 5.6.0 rejected\r\n")
    assert done.result.outcome(0).code == 554 and conn.transactions == 2


def test_connection_lost_after_some_replies_defers_only_the_rest():
    conn = C.ClientConnection("mw.test", lmtp=True)
    ready(conn)
    assert transaction(conn, ["a@x", "b@x"], b"250 OK\r\n250 OK\r\n", b"250 2.0.0 a saved\r\n") == []
    conn.receive_data(b"")
    done, closed = events(conn)
    assert isinstance(done, C.TransactionDone) and isinstance(closed, C.Closed)
    assert done.result.interrupted
    assert done.result.outcome(0).code == 250           # delivered stays delivered
    assert done.result.outcome(1).code == 451           # no reply: deferred


def test_lhlo_refused_quits_without_helo():
    conn = C.ClientConnection("mw.test", lmtp=True)
    conn.receive_data(b"220 lmtp.test\r\n")
    events(conn)
    assert conn.data_to_send() == b"LHLO mw.test\r\n"
    conn.receive_data(b"500 5.5.1 Unknown command\r\n")
    (failed,) = events(conn)
    assert isinstance(failed, C.HeloFailed)
    assert conn.data_to_send() == b"QUIT\r\n"            # no HELO: LMTP has none (RFC 2033 §4.1)


def test_starttls_then_lhlo_again():
    conn = C.ClientConnection("mw.test", lmtp=True)
    ready(conn, b"250-lmtp.test\r\n250 STARTTLS\r\n")
    conn.start_tls()
    assert conn.data_to_send() == b"STARTTLS\r\n"
    conn.receive_data(b"220 2.0.0 go ahead\r\n")
    (ev,) = events(conn)
    assert isinstance(ev, C.TLSReady)
    conn.tls_started()
    assert conn.data_to_send() == b"LHLO mw.test\r\n"


def test_smtp_mode_unchanged_one_reply_after_data():
    conn = C.ClientConnection("mw.test")
    conn.receive_data(b"220 mx\r\n")
    events(conn)
    assert conn.data_to_send() == b"EHLO mw.test\r\n"
    conn.receive_data(b"250-mx\r\n250 PIPELINING\r\n")
    events(conn)
    (done,) = transaction(conn, ["a@x", "b@x"], b"250 OK\r\n250 OK\r\n", b"250 2.0.0 queued\r\n")
    assert type(done.result) is C.TransactionResult
    assert done.result.outcome(0) == done.result.outcome(1) == Reply(250, "2.0.0", "queued")


def test_all_recipients_refused_no_data_in_lmtp():
    conn = C.ClientConnection("mw.test", lmtp=True)
    ready(conn, b"250-lmtp.test\r\n250 8BITMIME\r\n")     # no PIPELINING: one command at a time
    conn.send_transaction(C.Transaction("a@c", (("x@y", {}),), {}, 0))
    assert conn.data_to_send() == b"MAIL FROM:<a@c>\r\n"
    conn.receive_data(b"250 OK\r\n")
    events(conn)
    assert conn.data_to_send() == b"RCPT TO:<x@y>\r\n"
    conn.receive_data(b"550 5.1.1 no such user\r\n")
    events(conn)
    assert conn.data_to_send() == b"RSET\r\n"
    conn.receive_data(b"250 OK\r\n")
    (done,) = events(conn)
    assert done.result.outcome(0).code == 550


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([250, 450, 550]), st.sampled_from([250, 452, 552])), min_size=1,
                max_size=6),
       st.booleans())
def test_each_recipient_gets_its_own_reply(plan, pipelined):
    """Any mix of RCPT and end-of-data replies: outcome(i) is i's RCPT refusal, else its own
    reply after the data (RFC 2033 §4.2); DATA is not sent when no RCPT was accepted."""
    conn = C.ClientConnection("mw.test", lmtp=True)
    ready(conn, LHLO if pipelined else b"250-lmtp.test\r\n250 8BITMIME\r\n")
    rcpts = [f"r{i}@x" for i in range(len(plan))]
    conn.send_transaction(C.Transaction("a@c", tuple((r, {}) for r in rcpts), {}, 0))
    replies = [b"250 2.1.0 OK\r\n"] + [f"{code} {code // 100}.0.0 rcpt {i}\r\n".encode()
                                       for i, (code, _) in enumerate(plan)]
    accepted = [i for i, (code, _) in enumerate(plan) if code == 250]
    evs: list = []
    sent = b""
    for reply in replies:
        sent += conn.data_to_send()
        evs += events_after(conn, reply)
    sent += conn.data_to_send()
    if not accepted:   # pipelined, DATA went out and fails (RFC 2033 §4.2: 503); then RSET
        assert (b"DATA" in sent) == pipelined
        if pipelined:
            evs += events_after(conn, b"503 5.5.1 No valid recipients\r\n")
            sent = conn.data_to_send()
        assert sent.endswith(b"RSET\r\n")
        conn.receive_data(b"250 2.0.0 reset\r\n")
        (done,) = events(conn)
    else:
        (ev,) = events_after(conn, b"354 go\r\n")
        assert isinstance(ev, C.SendContent)
        conn.end_content()
        conn.data_to_send()
        final = b"".join(f"{plan[i][1]} {plan[i][1] // 100}.0.0 data {i}\r\n".encode() for i in accepted)
        (done,) = events_after(conn, final)
    for i, (rcpt_code, data_code) in enumerate(plan):
        got = done.result.outcome(i)
        if rcpt_code != 250:
            assert (got.code, got.text) == (rcpt_code, f"rcpt {i}")
        else:
            assert (got.code, got.text) == (data_code, f"data {i}")
    assert conn.ready
