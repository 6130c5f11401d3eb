"""The server core's answers to clients that break the rules: sendmail's nullserver mode,
pipelining where RFC 2920 forbids it, NUL in DATA, line lengths after dot-unstuffing,
and the cost of parsing a long pipelined input. Plain function calls, no sockets."""

from __future__ import annotations

from mailward.smtp import events as ev
from mailward.smtp.replies import Reply
from mailward.smtp.server import ServerLimits
from tests.smtp.driver import ServerDriver
from tests.smtp.test_server_core import codes, session

NOT_AUTHENTICATED = Reply(454, "4.7.0", "not authenticated")


def test_refusing_commands_serves_only_what_sendmail_serves_as_nullserver():
    d = session()
    d.core.refuse_commands(NOT_AUTHENTICATED)
    assert d.send(b"EHLO c\r\n") == ["250-mx.test Hello client.test [127.0.0.1], pleased to meet you",
                                     "250 ENHANCEDSTATUSCODES"]
    assert d.send(b"HELO c\r\n") == ["250 mx.test Hello client.test [127.0.0.1], pleased to meet you"]
    for command in (b"MAIL FROM:<a@b>", b"RCPT TO:<u@mx.test>", b"DATA", b"VRFY u", b"EXPN u", b"HELP",
                    b"STARTTLS"):
        assert d.send(command + b"\r\n") == ["454 4.7.0 not authenticated"], command
    assert d.send(b"NOOP\r\nRSET\r\nXYZZY\r\n") == ["250 2.0.0 OK", "250 2.0.0 Reset state",
                                                    "500 5.5.1 Command unrecognized"]
    assert not any(isinstance(e, (ev.MailFrom, ev.RcptTo, ev.DataRequested)) for e in d.events)
    assert codes(d.send(b"QUIT\r\n")) == ["221"]


def test_refused_commands_count_as_errors():
    d = session(ServerLimits(max_bad_commands=3))
    d.core.refuse_commands(NOT_AUTHENTICATED)
    out = d.send(b"MAIL FROM:<a@b>\r\n" * 3)
    assert codes(out) == ["454", "454", "454", "421"]
    assert d.core.closed


def test_a_new_tls_session_ends_the_refusal():
    d = session()
    d.core.refuse_commands(NOT_AUTHENTICATED)
    d.core.tls_started()
    assert d.send(b"EHLO c\r\n")[-1] == "250 HELP"


# ---- flow control: replies held back, not piled up -------------------------------------

def test_the_core_stops_when_its_replies_are_not_taken():
    d = session()
    d.core.receive_data(b"HELP\r\n" * 20000)  # 2.6 MB of replies if all were answered at once
    assert d.core.next_event() is ev.NEED_DATA and d.core.output_full
    first = d.core.data_to_send()
    assert len(first) < d.core.OUTPUT_HIGH_WATER + 200
    rest = d.settle()  # takes the replies as they come, as the session does once they are written
    assert first.count(b"214 2.0.0 See") + rest.count(b"214 2.0.0 See") == 20000
    assert d.core.next_event() is ev.NEED_DATA and not d.core.output_full


# ---- parsing cost is linear in the input --------------------------------------------------

def _answer_all(data: bytes) -> float:
    import time

    d = session()
    start = time.perf_counter()
    replies = len(d.feed(data))
    elapsed = time.perf_counter() - start
    assert replies == len(data) // len(b"NOOP\r\n") * len(b"250 2.0.0 OK\r\n")
    return elapsed


def test_pipelined_input_costs_linear_time():
    small = b"NOOP\r\n" * (256 * 1024 // 6)
    large = small * 4
    _answer_all(small)  # warm up
    t_small = min(_answer_all(small) for _ in range(3))
    t_large = min(_answer_all(large) for _ in range(2))
    print(f"256 KiB: {t_small:.3f} s, 1 MiB: {t_large:.3f} s, ratio {t_large / t_small:.1f}")
    assert t_large / t_small < 8


# ---- RFC 2920 §3.1: what must wait for a reply ------------------------------------------

SYNC = "554 5.5.0 Error: SMTP protocol synchronization"


def test_ehlo_with_traffic_behind_it_is_refused_as_sendmail_does():
    d = session()
    assert d.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\n") == ["554 5.5.0 SMTP protocol error",
                                                       "550 5.0.0 Command rejected"]
    assert any(isinstance(e, ev.PipeliningViolation) and e.after == "EHLO" and e.seen == b"MAIL FROM:<a@b>\r\n"
               for e in d.events)
    assert d.send(b"EHLO c\r\n")[-1] == "250 ENHANCEDSTATUSCODES"


def test_message_text_before_the_354_is_refused_and_the_connection_closed():
    d = session()
    d.send(b"EHLO c\r\n")
    out = d.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
    assert out == ["250 2.1.0 <a@b>... Sender ok", "250 2.1.5 <u@mx.test>... Recipient ok", SYNC]
    assert d.core.closed
    violation = next(e for e in d.events if isinstance(e, ev.PipeliningViolation))
    assert violation == ev.PipeliningViolation("DATA", b"Subject: x\r\n\r\nbody\r\n.\r\n")
    assert not any(isinstance(e, (ev.DataRequested, ev.DataChunk, ev.DataComplete)) for e in d.events)
    assert isinstance(d.events[-1], ev.CloseConnection)


def test_text_arriving_while_the_354_is_decided_is_refused():
    def decide(event):
        if isinstance(event, ev.DataRequested):
            d.core.receive_data(b"early text\r\n")  # arrives while the 354 is being decided

    d = session(decide=decide)
    d.send(b"EHLO c\r\n")
    assert d.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\n")[-1] == SYNC
    assert d.core.closed


def test_bytes_before_the_greeting_are_refused():
    d = ServerDriver(client_desc="c [127.0.0.1]", greeting=None)
    d.core.receive_data(b"EHLO early\r\n")
    d.core.greet("mx.test ESMTP mailward")
    assert d.settle() == (SYNC + "\r\n").encode()
    assert d.events[0] == ev.PipeliningViolation("CONNECT", b"EHLO early\r\n")
    assert isinstance(d.events[1], ev.CloseConnection) and len(d.events) == 2


def test_the_checks_can_be_turned_off():
    unchecked = ServerLimits(forbid_unauth_pipelining=False)
    d = session(unchecked)
    out = d.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\nbody\r\n.\r\n")
    assert codes(out) == ["250", "250", "250", "354", "250"] and d.body == b"body\r\n"


# ---- NUL in DATA --------------------------------------------------------------------------

def test_nul_in_data_is_refused_after_the_end_of_data():
    d = session()
    d.send(b"EHLO c\r\n")
    d.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\n")
    out = d.send(b"Subject: x\r\n\r\none\r\n\x00.\r\n")
    assert out == []  # '\x00.' is not the end of data
    assert d.send(b"two\r\n.\r\n") == ["554 5.6.0 Message contains a NUL character (RFC 5322 §3.5)"]
    assert any(isinstance(e, ev.DataFailed) for e in d.events)
    assert not any(isinstance(e, ev.DataComplete) for e in d.events)
    assert codes(d.send(b"RSET\r\n")) == ["250"]


def test_nul_in_data_can_be_kept():
    d = session(ServerLimits(reject_nul_in_data=False))
    d.send(b"EHLO c\r\n")
    d.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\n")
    assert codes(d.send(b"one\r\n\x00.\r\n.\r\n")) == ["250"]
    assert d.body == b"one\r\n\x00.\r\n"


# ---- line length after dot-unstuffing (RFC 5321 §4.5.3.1.6, §4.5.2) ------------------------

def _data_session():
    d = session()
    d.send(b"EHLO c\r\n")
    d.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\n")
    return d


def test_a_998_octet_line_starting_with_a_dot_is_accepted():
    d = _data_session()
    line = b"." + b"x" * 997  # 998 octets: the longest legal text line
    assert d.send(b"Subject: dots\r\n\r\n." + line + b"\r\n.\r\n") == ["250 2.0.0 OK"]
    assert d.body == b"Subject: dots\r\n\r\n" + line + b"\r\n"


def test_a_999_octet_line_starting_with_a_dot_is_refused():
    d = _data_session()
    out = d.send(b"Subject: dots\r\n\r\n.." + b"x" * 998 + b"\r\n.\r\n")
    assert out[0].startswith("552 5.3.4")


def test_the_longest_stuffed_line_is_accepted_when_it_arrives_in_pieces():
    d = _data_session()
    wire = b".." + b"y" * 997 + b"\r\n"
    for i in range(0, len(wire), 7):
        d.send(wire[i:i + 7])
    assert d.send(b".\r\n") == ["250 2.0.0 OK"]
    assert d.body == b"." + b"y" * 997 + b"\r\n"


# ---- addresses in log lines and trace headers -------------------------------------------

def test_printable_address():
    from mailward.smtp.parse import printable_address as p

    assert p("user@example.org") == "user@example.org"
    assert p("SRS0=Hx=AB=example.org=user@fwd.example") == "SRS0=Hx=AB=example.org=user@fwd.example"
    assert p("jürgen@example.de") == "jürgen@example.de"  # printable UTF-8 stays
    assert p('"a, relay=x"@y') == '"a\\x2c relay\\x3dx"@y'
    assert p('"a;b"@y') == '"a\\x3bb"@y'
    assert p('"q\\"x\\\\y"@z') == '"q\\x5c\\x22x\\x5c\\x5cy"@z'  # every backslash starts an escape
    assert p('"l\u2028i\u0085n\u2029e"@x') == '"l\\u2028i\\x85n\\u2029e"@x'
    assert p("u\u202ev@x") == "u\\u202ev@x"  # a format character (right-to-left override)
    assert p("550 5.7.1 <\"a, b=c\"@d>... Relaying denied") == "550 5.7.1 <\"a\\x2c b\\x3dc\"@d>... Relaying denied"
