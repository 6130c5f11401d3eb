"""The server core driven by plain function calls: transcripts, pipelining, STARTTLS,
smuggling, limits. Each test asserts the reply lines a client would see."""

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


def test_greeting_and_ehlo_keywords():
    d = ServerDriver()
    out = d.send(b"EHLO client.test\r\n")
    assert out[0] == "220 mx.test ESMTP mailward"
    assert out[1] == "250-mx.test Hello client.test [127.0.0.1], pleased to meet you"
    keywords = [line[4:] for line in out[2:]]
    assert keywords == ["ENHANCEDSTATUSCODES", "PIPELINING", "8BITMIME", "SIZE 26214400", "DSN", "SMTPUTF8",
                        "STARTTLS", "HELP"]


def test_starttls_refused_by_the_io_layer_gives_454():
    from mailward.smtp.replies import TLS_CANNOT_START
    d = session()
    d.send(b"EHLO c\r\n")
    d.core.receive_data(b"STARTTLS\r\nNOOP\r\n")
    assert isinstance(d.core.next_event(), ev.StartTLS)
    d.core.respond(TLS_CANNOT_START)
    assert d.send(b"") == ["454 4.7.0 TLS not available due to temporary reason", "250 2.0.0 OK"]


def test_no_starttls_keyword_without_certificate():
    d = session(starttls=False)
    assert "250-STARTTLS" not in d.send(b"EHLO c\r\n")
    assert d.send(b"STARTTLS\r\n") == ["503 5.5.0 TLS not available"]


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


@pytest.mark.parametrize("command,reply", [
    (b"MAIL FROM:<a@b>\r\n", "503 5.5.1 Polite people say HELO first"),
    (b"RCPT TO:<a@b>\r\n", "503 5.5.1 Polite people say HELO first"),
    (b"DATA\r\n", "503 5.5.1 Polite people say HELO first"),
    (b"FOO\r\n", "500 5.5.1 Command unrecognized"),
    (b"VRFY root\r\n", "252 2.5.2 Cannot VRFY user; try RCPT to attempt delivery"),
    (b"NOOP\r\n", "250 2.0.0 OK"),
    (b"RSET\r\n", "250 2.0.0 Reset state"),
    (b"HELO\r\n", "501 5.0.0 HELO requires domain address"),
])
def test_single_commands(command, reply):
    assert session().send(command) == [reply]


def test_sequence_errors():
    d = session()
    d.send(b"EHLO c\r\n")
    assert d.send(b"RCPT TO:<u@mx.test>\r\n") == ["503 5.5.1 Need MAIL before RCPT"]
    d.send(b"MAIL FROM:<>\r\n")
    assert d.send(b"MAIL FROM:<>\r\n") == ["503 5.5.1 Sender already specified"]
    assert d.send(b"DATA\r\n") == ["503 5.5.1 Need RCPT (recipient)"]


@pytest.mark.parametrize("command,code", [
    (b"MAIL FROM:<a@b> FOO=bar\r\n", "555 5.5.4"),
    (b"MAIL FROM:<a@b> SIZE=99999999999\r\n", "552 5.3.4"),
    (b"MAIL FROM:a@b\r\n", "501 5.5.2"),
    (b"MAIL FROM:<a@@b>\r\n", "501 5.1.3"),
    (b"MAIL FROM:<a@b> BODY=BINARYMIME\r\n", "501 5.5.4"),
    (b"MAIL TO:<a@b>\r\n", "501 5.5.2"),
    (b"MAIL FROM:<\xc3\xa9@b.example>\r\n", "553 5.6.7"),
])
def test_mail_parameter_errors(command, code):
    d = session()
    d.send(b"EHLO c\r\n")
    assert d.send(command)[0].startswith(code)


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

def test_starttls_errors_as_sendmail():
    d = session()
    d.send(b"EHLO c\r\n")
    assert d.send(b"STARTTLS foo\r\n") == ["501 5.5.2 Syntax error (no parameters allowed)"]
    d.send(b"MAIL FROM:<a@b>\r\n")
    assert d.send(b"STARTTLS\r\n") == ["503 5.5.0 TLS not permitted during a mail transaction"]


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


def test_bare_lf_in_command_rejected():
    d = session()
    assert d.send(b"EHLO c\n") == [
        "500 5.5.2 Bare CR or LF in command; lines must end with CRLF (RFC 5321 §2.3.8)"]


# ---- limits ------------------------------------------------------------------------------

def test_command_line_limit():
    d = session(ServerLimits(max_command_line=64))
    assert d.send(b"NOOP " + b"x" * 100 + b"\r\nNOOP\r\n") == ["500 5.5.2 Line too long", "250 2.0.0 OK"]


def test_overlong_command_without_newline_is_not_buffered():
    d = session(ServerLimits(max_command_line=64))
    d.send(b"x" * 10000)
    assert d.core.input_held <= 64
    assert d.send(b"\r\nNOOP\r\n") == ["500 5.5.2 Line too long", "250 2.0.0 OK"]


def test_text_line_limit():
    d = session(ServerLimits(max_text_line=100))
    d.send(b"EHLO c\r\n")
    d.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\n")
    out = d.send(b"a" * 200 + b"\r\n.\r\n")
    assert out[0].startswith("552 5.3.4")


def test_message_size_limit():
    d = session(ServerLimits(max_message_size=2000))
    d.send(b"EHLO c\r\n")
    d.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\n")
    out = d.send((b"x" * 70 + b"\r\n") * 100 + b".\r\n")
    assert out == ["552 5.3.4 Message size exceeds fixed maximum message size"]
    assert d.body == b""  # nothing kept beyond the limit


def test_recipient_limit():
    d = session(ServerLimits(max_recipients=2))
    d.send(b"EHLO c\r\n")
    d.send(b"MAIL FROM:<a@b>\r\n")
    out = d.send(b"RCPT TO:<a@mx.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\n")
    assert codes(out) == ["250", "250", "452"]


def test_too_many_bad_commands_then_421():
    d = session(ServerLimits(max_bad_commands=3))
    out = d.send(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
    assert codes(out) == ["500", "500", "500", "421"]
    assert d.core.closed


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
