"""AUTH in the client core (RFC 4954) with PLAIN (RFC 4616) and LOGIN: transcripts of S:/C: bytes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings, strategies as st

from mailward.smtp import client as C
from mailward.smtp import client_auth as A


def events(conn: C.ClientConnection) -> list:
    out = []
    while True:
        e = conn.next_event()
        if e in (C.NEED_DATA, C.WAITING):
            return out
        out.append(e)


def in_tls(ehlo_after_tls: bytes = b"250-smarthost\r\n250-AUTH PLAIN LOGIN\r\n250 PIPELINING\r\n"):
    conn = C.ClientConnection("mw.test")
    conn.receive_data(b"220 smarthost\r\n250-smarthost\r\n250 STARTTLS\r\n")
    events(conn)
    conn.start_tls()
    conn.receive_data(b"220 go\r\n")
    events(conn)
    conn.tls_started()
    conn.data_to_send()
    conn.receive_data(ehlo_after_tls)
    (ready,) = events(conn)
    assert isinstance(ready, C.Ready)
    return conn


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_plain_with_initial_response():
    conn = in_tls()
    conn.authenticate(A.Plain("relayuser", "s3cret pw"))
    assert conn.data_to_send() == b"AUTH PLAIN " + b64(b"\0relayuser\0s3cret pw") + b"\r\n"
    conn.receive_data(b"235 2.7.0 Authentication successful\r\n")
    (ok,) = events(conn)
    assert isinstance(ok, A.AuthSucceeded) and ok.reply.code == 235
    assert conn.authenticated and conn.ready


def test_plain_authzid_only_when_different():
    assert A.Plain("u", "p", "u").initial_response() == b"\0u\0p"
    assert A.Plain("u", "p", "boss").initial_response() == b"boss\0u\0p"


def test_login_two_prompts():
    conn = in_tls()
    conn.authenticate(A.Login("relayuser", "s3cret pw"))
    assert conn.data_to_send() == b"AUTH LOGIN\r\n"
    conn.receive_data(b"334 VXNlcm5hbWU6\r\n")
    assert events(conn) == []
    assert conn.data_to_send() == b64(b"relayuser") + b"\r\n"
    conn.receive_data(b"334 UGFzc3dvcmQ6\r\n")
    events(conn)
    assert conn.data_to_send() == b64(b"s3cret pw") + b"\r\n"
    conn.receive_data(b"535 5.7.8 Authentication credentials invalid\r\n")
    (failed,) = events(conn)
    assert isinstance(failed, A.AuthFailed) and failed.reply.status == "5.7.8"
    assert not conn.authenticated and conn.ready


def test_bad_challenge_cancels():
    conn = in_tls()
    conn.authenticate(A.Login("u", "p"))
    conn.data_to_send()
    conn.receive_data(b"334 not base64 !!\r\n")
    events(conn)
    assert conn.data_to_send() == b"*\r\n"
    conn.receive_data(b"501 5.7.0 Authentication aborted\r\n")
    (failed,) = events(conn)
    assert isinstance(failed, A.AuthFailed) and failed.reply.code == 501


def test_plain_asked_again_cancels():
    conn = in_tls()
    conn.authenticate(A.Plain("u", "p"))
    conn.data_to_send()
    conn.receive_data(b"334 \r\n")
    events(conn)
    assert conn.data_to_send() == b"*\r\n"


def test_long_initial_response_waits_for_the_empty_challenge():
    conn = in_tls()
    conn.authenticate(A.Plain("u" * 300, "p" * 200))
    assert conn.data_to_send() == b"AUTH PLAIN\r\n"     # RFC 4954 §4: the line would pass 512 octets
    conn.receive_data(b"334 \r\n")
    events(conn)
    assert conn.data_to_send() == b64(b"\0" + b"u" * 300 + b"\0" + b"p" * 200) + b"\r\n"


def test_never_in_clear_and_only_when_offered():
    conn = C.ClientConnection("mw.test")
    conn.receive_data(b"220 smarthost\r\n250-smarthost\r\n250 AUTH PLAIN\r\n")
    events(conn)
    conn.data_to_send()
    with pytest.raises(C.LocalProtocolError, match="in clear"):
        conn.authenticate(A.Plain("u", "p"))
    assert conn.data_to_send() == b""
    conn = in_tls(b"250-smarthost\r\n250 PIPELINING\r\n")
    with pytest.raises(C.LocalProtocolError, match="not offered"):
        conn.authenticate(A.Plain("u", "p"))


def test_the_password_is_in_no_repr_or_event():
    conn = in_tls()
    mech = A.Login("relayuser", "TopSecret-9")
    assert "TopSecret" not in repr(mech) and "TopSecret" not in repr(A.Plain("u", "TopSecret-9", "z"))
    conn.authenticate(mech)
    conn.data_to_send()
    conn.receive_data(b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 5.7.8 no\r\n")
    evs = events(conn)
    assert "TopSecret" not in repr(evs) and "TopSecret" not in repr(vars(conn))


def test_choose_follows_the_preferred_list_and_the_offer():
    assert A.choose(("LOGIN", "PLAIN"), "PLAIN LOGIN") == "LOGIN"
    assert A.choose((), "LOGIN CRAM-MD5") == "LOGIN"
    assert A.choose(("DIGEST-MD5",), "PLAIN DIGEST-MD5") is None   # not implemented here
    assert A.choose(("plain",), "plain") == "PLAIN"
    assert A.choose((), "SCRAM-SHA-256") is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=4), st.sampled_from(["PLAIN", "LOGIN"]))
def test_any_server_replies_end_the_exchange_without_raising(chunks, name):
    conn = in_tls()
    conn.authenticate(A.mechanism(name, "u", "p"))
    for chunk in chunks:
        try:
            conn.receive_data(chunk)
            events(conn)
        except C.RemoteProtocolError:
            return
