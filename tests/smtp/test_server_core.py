"""The server core driven by plain function calls: what a transcript cannot show — the
events and the message text the core hands over, decisions the I/O layer refuses, input the
core holds. Dialogues that only need the replies are transcripts (tests/transcripts/)."""

from __future__ import annotations

import pytest

from mailward.smtp import events as ev
from mailward.smtp.server import ServerLimits
from tests.smtp.driver import ServerDriver


def codes(lines):
    return [line[:3] for line in lines if line[3:4] == " "]


def session(limits=ServerLimits(), **kw) -> ServerDriver:
    """A core that has sent its greeting (already taken)."""
    d = ServerDriver(limits, **kw)
    d.send(b"")
    return d


def test_starttls_refused_by_the_io_layer_gives_454():
    from mailward.smtp.replies import TLS_CANNOT_START
    d = session()
    d.send(b"EHLO c\r\n")
    d.core.receive_data(b"STARTTLS\r\nNOOP\r\n")
    assert isinstance(d.core.next_event(), ev.StartTLS)
    d.core.respond(TLS_CANNOT_START)
    assert d.send(b"") == ["454 4.7.0 TLS not available due to temporary reason", "250 2.0.0 OK"]


def test_full_transaction_pipelined_replies_leave_together():
    d = session()
    d.send(b"EHLO c\r\n")
    out = d.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@mx.test>\r\nRCPT TO:<v@mx.test>\r\nDATA\r\n")
    assert out == ["250 2.1.0 <a@b.example>... Sender ok", "250 2.1.5 <u@mx.test>... Recipient ok",
                   "250 2.1.5 <v@mx.test>... Recipient ok", "354 End data with <CR><LF>.<CR><LF>"]
    out = d.send(b"Subject: hi\r\n\r\n..dot\r\n.x\r\n.\r\nQUIT\r\n")
    assert out == ["250 2.0.0 OK", "221 2.0.0 mx.test closing connection"]
    assert d.body == b"Subject: hi\r\n\r\n.dot\r\nx\r\n"
    assert d.core.closed


def test_dsn_and_smtputf8_parameters_kept_verbatim():
    d = session()
    d.send(b"EHLO c\r\n")
    d.send("MAIL FROM:<ü@exämple.test> SMTPUTF8 RET=HDRS ENVID=Ab+2Bc BODY=8BITMIME\r\n".encode())
    d.send(b"RCPT TO:<u@mx.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Some+2BOne@Example.ORG\r\n")
    mail = next(e for e in d.events if isinstance(e, ev.MailFrom))
    rcpt = next(e for e in d.events if isinstance(e, ev.RcptTo))
    assert mail.path.address == "ü@exämple.test"
    assert mail.path.params == {"SMTPUTF8": None, "RET": "HDRS", "ENVID": "Ab+2Bc", "BODY": "8BITMIME"}
    assert rcpt.path.params["ORCPT"] == "rfc822;Some+2BOne@Example.ORG"
    assert rcpt.path.params["NOTIFY"] == "SUCCESS,FAILURE"


def test_eight_bit_body_kept_unchanged():
    d = session()
    d.send(b"EHLO c\r\n")
    d.send(b"MAIL FROM:<a@b> BODY=8BITMIME\r\nRCPT TO:<u@mx.test>\r\nDATA\r\n")
    body = "Subject: caf\u00e9\r\n\r\n\u00fcber \u2603\r\n".encode()
    assert d.send(body + b".\r\n") == ["250 2.0.0 OK"]
    assert d.body == body


# ---- STARTTLS (RFC 3207) and the sendmail 8.17 answers -------------------------------------

def test_starttls_discards_pipelined_plaintext_and_resets_session():
    d = session()
    d.send(b"EHLO c\r\n")
    out = d.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n")
    assert out == ["220 2.0.0 Ready to start TLS"]
    assert isinstance(d.events[-1], ev.StartTLS)
    d.core.receive_data(b"NOOP\r\n")  # plaintext arriving before the handshake: dropped too
    d.core.tls_started()
    assert d.send(b"MAIL FROM:<a@b>\r\n") == ["503 5.5.1 Polite people say HELO first"]
    out = d.send(b"EHLO c\r\n")
    assert "250-STARTTLS" not in out
    assert d.send(b"STARTTLS\r\n") == ["454 4.3.3 TLS not available after start"]


# ---- SMTP smuggling: only CRLF.CRLF ends DATA --------------------------------------------------

@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r"])
def test_smuggled_end_of_data_never_ends_the_message(fake_end):
    d = session()
    d.send(b"EHLO c\r\n")
    d.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\n")
    out = d.send(b"Subject: x\r\n\r\nhello" + fake_end + b"MAIL FROM:<forged@x>\r\n")
    assert out == []  # still inside DATA: nothing answered, no new MAIL
    assert not any(isinstance(e, ev.MailFrom) and e.path.address == "forged@x" for e in d.events)
    out = d.send(b"more\r\n.\r\n")
    assert out == ["554 5.6.0 Message contains a bare CR or LF; lines must end with CRLF (RFC 5321 §2.3.8)"]
    assert any(isinstance(e, ev.DataFailed) for e in d.events)


def test_normalise_mode_accepts_and_converts_bare_line_ends():
    d = session(ServerLimits(normalise_bare_line_endings=True))
    d.send(b"EHLO c\r\n")
    d.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\n")
    assert d.send(b"a\nb\r\n.\n\r\n.\r\n") == ["250 2.0.0 OK"]
    assert d.body == b"a\r\nb\r\n\r\n\r\n"  # the smuggled '.' line became an empty line
    assert b"\r\n.\r\n" not in b"\r\n" + d.body


# ---- limits ------------------------------------------------------------------------------

def test_overlong_command_without_newline_is_not_buffered():
    d = session(ServerLimits(max_command_line=64))
    d.send(b"x" * 10000)
    assert d.core.input_held <= 64
    assert d.send(b"\r\nNOOP\r\n") == ["500 5.5.2 Line too long", "250 2.0.0 OK"]


def test_message_size_limit():
    d = session(ServerLimits(max_message_size=2000))
    d.send(b"EHLO c\r\n")
    d.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\n")
    out = d.send((b"x" * 70 + b"\r\n") * 100 + b".\r\n")
    assert out == ["552 5.3.4 Message size exceeds fixed maximum message size"]
    assert d.body == b""  # nothing kept beyond the limit


def test_binary_junk_gets_clear_replies():
    d = session()
    out = d.send(b"\x00\x01\x02\xff\xfe\r\n\x16\x03\x01\x00\xa5\x01\x00\x00\r\n")
    assert all(line.startswith("500 5.5.2") for line in out)


def test_timeout_and_shutdown_replies():
    d = session()
    d.core.timeout()
    assert d.core.data_to_send().startswith(b"421 4.4.2 mx.test Timeout")
    d = session()
    d.core.shutdown()
    assert d.core.data_to_send().startswith(b"421 4.3.2 mx.test Service shutting down")
