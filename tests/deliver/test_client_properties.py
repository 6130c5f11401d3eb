"""Property tests: the client's dot-stuffing undone by the server's DATA reader gives back the
exact message for any content and any chunking; and no server bytes make the client core raise
anything but RemoteProtocolError."""

from __future__ import annotations

from tests.fuzzing import examples  # noqa: E402
from hypothesis import given, settings
from hypothesis import strategies as st

from mailward.smtp import client as C
from mailward.smtp.data import DataReader

LINE = st.lists(st.sampled_from([b".", b"..", b"a", b" ", b"\xc3\xa9", b"x" * 40, b"."]), max_size=8).map(b"".join)
MESSAGE = st.lists(LINE, max_size=30).map(lambda lines: b"".join(line + b"\r\n" for line in lines))


def ready_connection() -> C.ClientConnection:
    conn = C.ClientConnection("c.test")
    conn.receive_data(b"220 mx\r\n")
    conn.next_event()
    conn.receive_data(b"250-mx\r\n250 PIPELINING\r\n")
    while conn.next_event() not in (C.WAITING, C.NEED_DATA):
        pass
    conn.data_to_send()
    conn.send_transaction(C.Transaction("a@b", (("c@d", {}),)))
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert isinstance(conn.next_event(), C.SendContent)
    return conn


@settings(max_examples=examples(300), deadline=None)
@given(MESSAGE, st.lists(st.integers(min_value=1, max_value=50), max_size=10))
def test_stuffing_round_trips_through_the_server_reader(message, cuts):
    conn = ready_connection()
    pos = 0
    for n in cuts:
        conn.send_content(message[pos:pos + n])
        pos += n
    conn.send_content(message[pos:])
    conn.end_content()
    wire = conn.data_to_send()
    reader = DataReader(max_line=10000, max_size=10 ** 7)
    content, rest = reader.feed(wire)
    assert rest == b"" and content == message and not reader.failed


REPLIES = st.sampled_from([b"220 mx ESMTP\r\n", b"250-mx\r\n", b"250 PIPELINING\r\n", b"250 STARTTLS\r\n",
                           b"250 2.0.0 ok\r\n", b"354 go\r\n", b"421 4.3.2 bye\r\n", b"550 5.1.1 no\r\n",
                           b"451 4.3.0 later\r\n", b"220 2.0.0 Ready to start TLS\r\n", b"221 bye\r\n",
                           b"502 5.5.1 what\r\n", b"250", b"\r\n", b""])
SERVER = st.lists(st.one_of(REPLIES, st.binary(max_size=20)), max_size=25).map(b"".join)


@settings(max_examples=examples(500), deadline=None)
@given(st.lists(SERVER, max_size=6))
def test_garbage_from_the_server_only_raises_remote_protocol_error(chunks):
    conn = C.ClientConnection("c.test")
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            for _ in range(20):
                ev = conn.next_event()
                if ev in (C.NEED_DATA, C.WAITING):
                    break
                if isinstance(ev, C.Ready) and conn.ready:
                    conn.send_transaction(C.Transaction("a@b", (("c@d", {}),)))
                elif isinstance(ev, C.SendContent):
                    conn.send_content(b"x\r\n")
                    conn.end_content()
                elif isinstance(ev, C.TLSReady):
                    conn.tls_started()
            conn.data_to_send()
    except C.RemoteProtocolError:
        pass
