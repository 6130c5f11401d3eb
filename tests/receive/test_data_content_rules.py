"""What a message may hold, on a real server: a NUL octet is refused after the end of data
(as a bare CR or LF is), and a line's length is counted after dot-unstuffing
(RFC 5321 §4.5.3.1.6). A refused message leaves nothing in the spool; the session goes on."""

from __future__ import annotations

import socket
import time

from tests.receive.test_attacks_and_bad_input import read_reply
from tests.spool_view import partial_files, queued


def open_data(mta, rcpt: str) -> socket.socket:
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    s.sendall(b"EHLO client.test\r\n")
    read_reply(s)
    s.sendall(f"MAIL FROM:<a@client.test>\r\nRCPT TO:<{rcpt}@localhost>\r\nDATA\r\n".encode())
    data = b""
    while b"354 " not in data:
        data += s.recv(4096)
    return s


def test_nul_in_data_is_refused_and_nothing_is_kept(make_mta):
    mta = make_mta({"server": {"reverse_lookup": False}})
    s = open_data(mta, "nul")
    s.sendall(b"Subject: nul\r\n\r\nbefore\r\n\x00.\r\nafter\r\n.\r\n")
    assert read_reply(s) == "554 5.6.0 Message contains a NUL character (RFC 5322 §3.5)\r\n".encode()
    mta.wait_log("reject=554 5.6.0 Message contains a NUL character")
    assert partial_files(mta) == [] and queued(mta) == []
    # the session goes on: the same message without the NUL is accepted
    s.sendall(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<nul@localhost>\r\nDATA\r\n")
    data = b""
    while b"354 " not in data:
        data += s.recv(4096)
    s.sendall(b"Subject: clean\r\n\r\nbefore\r\n.\r\n")
    assert read_reply(s).startswith(b"250 2.0.0")
    s.sendall(b"QUIT\r\n")
    read_reply(s)
    s.close()
    files = mta.wait_mail("nul")
    time.sleep(0.3)
    assert len(mta.maildir_files("nul")) == 1 and b"Subject: clean" in files[0].read_bytes()
    assert b"\x00" not in files[0].read_bytes()


def test_line_length_is_counted_after_dot_unstuffing(make_mta):
    mta = make_mta({"server": {"reverse_lookup": False}})
    longest = b"." + b"d" * 997  # 998 octets as written: legal (RFC 5321 §4.5.3.1.6)
    s = open_data(mta, "dots")
    s.sendall(b"." + longest + b"\r\nSubject: dots\r\n\r\nbody\r\n.\r\n")  # 999 octets on the wire
    reply = read_reply(s)
    assert reply.startswith(b"250 2.0.0"), reply
    qid = reply.split()[2].decode()
    s.sendall(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<dots@localhost>\r\nDATA\r\n")
    data = b""
    while b"354 " not in data:
        data += s.recv(4096)
    s.sendall(b"Subject: too long\r\n\r\n.." + b"d" * 998 + b"\r\n.\r\n")  # 999 as written: too long
    assert read_reply(s).startswith(b"552 5.3.4")
    s.sendall(b"QUIT\r\n")
    read_reply(s)
    s.close()
    text = mta.wait_message("dots", qid)
    assert ("\n" + longest.decode() + "\n") in text.replace("\r\n", "\n")
    time.sleep(0.3)
    assert len(mta.maildir_files("dots")) == 1
    assert partial_files(mta) == [] and queued(mta) == []
