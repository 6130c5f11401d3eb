"""A quoted local part may hold ',', '=', ';' and (with SMTPUTF8) U+2028 or U+0085
(RFC 5321 §4.1.2, RFC 6531 §3.3). In the log they would forge fields (', relay=...') or
end the line; in the Received: header's 'for' clause they would end the header for a
reader that splits lines on U+2028. Both get them escaped."""

from __future__ import annotations

import socket
import time

from tests.receive.test_attacks_and_bad_input import read_reply


def session(mta) -> socket.socket:
    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    s.sendall(b"EHLO client.test\r\n")
    assert b"SMTPUTF8" in read_reply(s)
    return s


def test_quoted_local_parts_cannot_forge_log_fields(make_mta, tmp_path):
    amap = tmp_path / "access"
    amap.write_text("From:spam.test REJECT\n")
    mta = make_mta({"server": {"reverse_lookup": False}, "policy": {"access_map": str(amap)}})
    s = session(mta)
    s.sendall(b'MAIL FROM:<"x, relay=forged.example [6.6.6.6], reject=none"@spam.test>\r\n')
    assert read_reply(s).startswith(b"550")
    s.sendall('MAIL FROM:<"line\u2028break\u0085next"@spam.test> SMTPUTF8\r\n'.encode())
    assert read_reply(s).startswith(b"550")
    s.sendall(b"QUIT\r\n")
    read_reply(s)
    s.close()
    log = mta.wait_log("line\\u2028break\\x85next")
    assert 'arg1=<"x\\x2c relay\\x3dforged.example [6.6.6.6]\\x2c reject\\x3dnone"@spam.test>, relay=[127.0.0.1], ' \
           'reject=550 5.7.1 <"x\\x2c relay\\x3dforged.example' in log
    assert "relay=forged.example" not in log and "reject=none" not in log
    assert "\u2028" not in log and "\u0085" not in log


def test_received_for_clause_is_escaped(make_mta):
    mta = make_mta({"server": {"reverse_lookup": False}})
    s = session(mta)
    s.sendall(b"MAIL FROM:<a@client.test> SMTPUTF8\r\n")
    assert read_reply(s).startswith(b"250")
    s.sendall('RCPT TO:<"to\u2028X-Forged: yes; ok=1"@localhost>\r\n'.encode())
    assert read_reply(s).startswith(b"250")
    s.sendall(b"DATA\r\n")
    assert read_reply(s).startswith(b"354")
    s.sendall(b"Subject: quoted\r\n\r\nbody\r\n.\r\n")
    reply = read_reply(s)
    assert reply.startswith(b"250 2.0.0"), reply
    qid = reply.split()[2].decode()
    s.sendall(b"QUIT\r\n")
    read_reply(s)
    s.close()
    text = ""
    deadline = time.time() + 10
    while qid not in text and time.time() < deadline:
        text = "".join(p.read_text(errors="replace") for p in mta.maildir.glob("*/new/*"))
        time.sleep(0.05)
    received = text[text.index("Received:"):]
    received = received[: received.index("Subject:")]
    assert '\tfor <"to\\u2028X-Forged: yes\\x3b ok\\x3d1"@localhost>; ' in received
    assert "\u2028" not in received
