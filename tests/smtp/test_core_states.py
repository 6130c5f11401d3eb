"""The state tables of both cores (mailward/smtp/server_state.py, client_state.py): complete,
followed by the cores, and named in the errors a caller sees."""

from __future__ import annotations

import pytest

from mailward.smtp import client as C
from mailward.smtp import events as ev
from mailward.smtp import server_state as rules
from mailward.smtp.client_state import ClientState
from mailward.smtp.errors import LocalProtocolError
from mailward.smtp.server_state import COMMAND_STATES, ServerState
from tests.smtp.driver import DECISIONS, ServerDriver


def test_every_command_outside_its_states_has_a_reply():
    for verb, states in rules.SERVED_IN.items():
        for state in COMMAND_STATES - states:
            assert rules.out_of_sequence(verb, state) is not None, (verb, state)
        for state in states & COMMAND_STATES:
            assert rules.out_of_sequence(verb, state) is None, (verb, state)


def test_the_server_core_walks_through_its_states():
    d = ServerDriver()
    seen = [d.core.state]
    for line in (b"EHLO c\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<u@mx.test>\r\n", b"DATA\r\n", b"x\r\n.\r\n"):
        d.feed(line)
        seen.append(d.core.state)
    d.feed(b"QUIT\r\n")
    seen.append(d.core.state)
    S = ServerState
    assert seen == [S.CONNECTED, S.GREETED, S.MAIL_ACCEPTED, S.RCPT_ACCEPTED, S.DATA, S.GREETED, S.CLOSED]


def next_decision(core):
    for _ in range(100):
        event = core.next_event()
        if isinstance(event, DECISIONS):
            return event
    raise AssertionError("no decision")


def test_the_server_core_pauses_for_a_decision_in_its_state():
    d = ServerDriver()
    d.send(b"EHLO c\r\n")
    d.core.receive_data(b"MAIL FROM:<a@b>\r\n")
    assert isinstance(next_decision(d.core), ev.MailFrom)
    assert d.core.state is ServerState.GREETED and d.core.next_event() is ev.PAUSED
    d.core.respond(None)
    assert d.core.state is ServerState.MAIL_ACCEPTED and d.core.pending is None


def test_the_end_of_data_waits_for_its_reply():
    d = ServerDriver()
    d.send(b"EHLO c\r\n")
    d.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<u@mx.test>\r\nDATA\r\n")
    d.core.receive_data(b"text\r\n.\r\n")
    assert isinstance(next_decision(d.core), ev.DataComplete)
    assert d.core.state is ServerState.END_OF_DATA and not d.core.in_data
    d.core.respond(None)
    assert d.core.state is ServerState.GREETED and d.core.transaction is None


def test_respond_without_a_decision_names_the_state():
    d = ServerDriver()
    d.send(b"EHLO c\r\n")
    with pytest.raises(LocalProtocolError, match="respond\\(\\) is not allowed in state GREETED: no decision"):
        d.core.respond(None)


def test_a_closed_server_core_cannot_start_tls():
    d = ServerDriver()
    d.send(b"QUIT\r\n")
    with pytest.raises(LocalProtocolError, match="TLS started is not possible in state CLOSED"):
        d.core.tls_started()


def test_client_calls_outside_their_states_name_the_state():
    conn = C.ClientConnection("c")
    assert conn.state is ClientState.GREETING
    with pytest.raises(LocalProtocolError, match=r"send_content\(\) is not allowed in state GREETING: "
                                                 r"only in CONTENT \(after SendContent\)"):
        conn.send_content(b"x")
    conn.receive_data(b"220 mx ESMTP\r\n")
    conn.next_event()
    conn.next_event()
    assert conn.state is ClientState.EHLO
    conn.receive_data(b"250-mx\r\n250 PIPELINING\r\n")
    conn.next_event()
    assert conn.state is ClientState.READY
    conn.send_transaction(C.Transaction("a@b", (("u@mx", {}),)))
    with pytest.raises(LocalProtocolError, match=r"quit\(\) is not allowed in state TRANSACTION"):
        conn.quit()


def test_the_client_error_is_still_the_core_api():
    assert C.LocalProtocolError is LocalProtocolError
    assert issubclass(C.RemoteProtocolError, Exception)
