"""The AUTH and submission rules of the server core (mailward/smtp/server_auth.py) with plain
calls, no sockets: the exchange as events and answers, the state table, line limits, what
TLS resets; and random input with AUTH available never raises and never authenticates."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailward.smtp import events as ev
from mailward.smtp.replies import Reply
from mailward.smtp.server import ServerConnection, ServerLimits
from mailward.smtp.server_auth import AUTH_FAILED, AUTH_OK, AuthCancelled, AuthRequested, AuthResponse
from mailward.smtp.server_state import ServerState
from tests.fuzzing import examples


class Peer:
    """Drives a core: ``answer(event)`` decides AUTH steps (None: leave it pending)."""

    def __init__(self, *, tls: bool = True, submission: bool = False, mechanisms=("PLAIN", "LOGIN"),
                 limits: ServerLimits = ServerLimits()):
        self.core = ServerConnection("mx.test", "[127.0.0.1]", limits, starttls_available=not tls,
                                     implicit_tls=tls, auth_available=True, submission=submission)
        self.core.auth_mechanisms = tuple(mechanisms)
        self.core.greet("mx.test ESMTP")
        self.core.data_to_send()
        self.events: list = []

    def send(self, line: str | bytes) -> list[str]:
        data = line if isinstance(line, bytes) else line.encode() + b"\r\n"
        self.core.receive_data(data)
        return self.settle()

    def settle(self) -> list[str]:
        core = self.core
        while True:
            event = core.next_event()
            if event in (ev.NEED_DATA, ev.PAUSED):
                return core.data_to_send().decode().splitlines()
            self.events.append(event)
            if isinstance(event, (ev.MailFrom, ev.RcptTo, ev.DataRequested, ev.DataComplete, ev.StartTLS)):
                core.respond(None)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_plain_with_initial_response_then_mail():
    p = Peer()
    assert "250-AUTH PLAIN LOGIN" in p.send("EHLO c")
    assert p.send("AUTH PLAIN " + b64(b"\0alice\0pw")) == []          # paused: the backend decides
    assert p.events[-1] == AuthRequested("PLAIN", b"\0alice\0pw") and p.core.state is ServerState.AUTH
    p.core.auth_result(AUTH_OK, "alice")
    assert p.settle() == ["235 2.7.0 Authentication successful"]
    assert p.core.authenticated == "alice" and p.core.state is ServerState.GREETED
    assert p.send("AUTH PLAIN") == ["503 5.5.1 Already authenticated"]
    assert p.send("MAIL FROM:<alice@example.org> AUTH=alice+40example.org")[0].startswith("250")


def test_challenges_cancel_and_bad_base64():
    p = Peer()
    p.send("EHLO c")
    p.send("AUTH LOGIN")
    assert p.events[-1] == AuthRequested("LOGIN", None)
    p.core.auth_challenge(b"Username:")
    assert p.settle() == ["334 " + b64(b"Username:")]
    p.send(b64(b"alice"))
    assert p.events[-1] == AuthResponse(b"alice")
    p.core.auth_challenge(b"Password:")
    p.settle()
    assert p.send("*") == ["501 5.0.0 AUTH aborted"]
    assert isinstance(p.events[-1], AuthCancelled) and p.core.state is ServerState.GREETED
    p.send("AUTH PLAIN =")
    assert p.events[-1] == AuthRequested("PLAIN", b"")
    p.core.auth_challenge(b"")
    assert p.settle() == ["334 "]
    assert p.send("not base64!") == ["501 5.5.2 Cannot Base64-decode Client responses"]
    assert p.core.bad_commands == 1 and p.core.state is ServerState.GREETED
    p.send("AUTH PLAIN")
    p.core.auth_result(AUTH_FAILED)
    assert p.settle() == ["535 5.7.8 Authentication credentials invalid"]
    assert p.core.authenticated is None and p.core.bad_commands == 1   # wrong credentials: not counted


@pytest.mark.parametrize("tls, submission, line, reply", [
    (False, False, "AUTH PLAIN", "538 5.7.11 Encryption required for requested authentication mechanism"),
    (False, True, "AUTH PLAIN", "530 5.7.0 Must issue a STARTTLS command first"),
    (False, True, "MAIL FROM:<a@b.example>", "530 5.7.0 Must issue a STARTTLS command first"),
    (True, True, "MAIL FROM:<a@b.example>", "530 5.7.0 Authentication required"),
    (True, False, "AUTH CRAM-MD5", "504 5.5.4 Unrecognized authentication type"),
    (True, False, "AUTH PLAIN a b", "501 5.5.2 Syntax error: AUTH mechanism [initial-response]"),
    (True, False, "AUTH PLAIN %%%", "501 5.5.2 Cannot Base64-decode Client responses"),
    (True, False, "MAIL FROM:<a@b.example> AUTH=a+zz", "501 5.5.4 AUTH parameter must be <> or an xtext "
                                                         "mailbox (RFC 4954 §5)"),
])
def test_refusals(tls, submission, line, reply):
    p = Peer(tls=tls, submission=submission)
    ehlo = p.send("EHLO c")
    assert any(x.startswith("250-AUTH") for x in ehlo) == tls
    assert p.send(line) == [reply]


def test_sequence_rules():
    p = Peer()
    assert p.send("AUTH PLAIN") == ["503 5.5.1 Polite people say HELO first"]
    p.send("HELO c")
    assert p.send("AUTH PLAIN") == ["503 5.5.1 AUTH needs EHLO first (RFC 4954 §3)"]
    p.send("EHLO c")
    p.send("MAIL FROM:<a@b.example>")
    assert p.send("AUTH PLAIN") == ["503 5.5.0 AUTH not permitted during a mail transaction"]
    no_auth = Peer()
    no_auth.core.auth_available = False     # a server without an AUTH backend
    assert not any("AUTH" in line for line in no_auth.send("EHLO c"))
    assert no_auth.send("AUTH PLAIN") == ["503 5.3.3 AUTH not available"]


def test_long_exchange_lines_and_tls_reset():
    p = Peer(limits=ServerLimits(max_command_line=512))
    p.send("EHLO c")
    long_response = b64(b"\0alice\0" + b"p" * 3000)        # > 512, < 12288: allowed in AUTH
    p.send("AUTH PLAIN " + long_response)
    assert p.events[-1].initial.endswith(b"p" * 3000)
    p.core.auth_challenge(b"more?")
    p.settle()
    assert p.send("A" * 13000) == ["500 5.5.6 Authentication Exchange line is too long"]
    assert isinstance(p.events[-2], AuthCancelled) and p.core.state is ServerState.GREETED
    assert p.send("NOOP" + " " * 600) == ["500 5.5.2 Line too long"]   # commands keep their limit
    # STARTTLS forgets an authentication (a core that started in clear)
    q = Peer(tls=False)
    q.send("EHLO c")
    q.send("STARTTLS")
    q.core.tls_started()
    q.core.auth_mechanisms = ("PLAIN",)
    q.send("EHLO c")
    q.send("AUTH PLAIN =")
    q.core.auth_result(Reply(235, "2.7.0", "Authentication successful"), "alice")
    q.settle()
    assert q.core.authenticated == "alice"
    q.core.tls_started()          # (tests use it to start a fresh session without a handshake)
    assert q.core.authenticated is None and q.core.auth_mechanisms == ()


WORDS = [b"EHLO c\r\n", b"AUTH PLAIN\r\n", b"AUTH PLAIN =\r\n", b"AUTH LOGIN dXNlcg==\r\n", b"*\r\n",
         b"=\r\n", b"%%\r\n", b"AUTH\r\n", b"MAIL FROM:<a@b.example> AUTH=<>\r\n", b"RCPT TO:<u@x.test>\r\n",
         b"DATA\r\n", b"x\r\n.\r\n", b"RSET\r\n", b"QUIT\r\n", b"A" * 600, b"\r\n", b"STARTTLS\r\n"]


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.one_of(st.sampled_from(WORDS), st.binary(max_size=80)), max_size=40),
       st.lists(st.sampled_from(["challenge", "fail", "temporary"]), max_size=40))
def test_random_input_with_auth_never_raises_nor_authenticates(chunks, answers):
    """Whatever the client sends, and whatever short of success the backend answers, no
    exception, and never an authenticated session."""
    p = Peer(submission=True)
    answers = iter(answers)
    for chunk in chunks:
        p.send(chunk)
        while isinstance(p.core.pending, (AuthRequested, AuthResponse)):
            what = next(answers, "fail")
            if what == "challenge":
                p.core.auth_challenge(b"x")
            else:
                p.core.auth_result(AUTH_FAILED if what == "fail" else Reply(454, "4.7.0", "Temporary"))
            p.settle()
        assert p.core.authenticated is None
        assert not any(isinstance(e, ev.MailFrom) for e in p.events)   # submission: MAIL needs AUTH
