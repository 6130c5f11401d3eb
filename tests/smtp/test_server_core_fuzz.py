"""Property tests on the server core: any bytes, split anywhere, give replies and events —
never an exception, never a hang — and splitting a session does not change its replies."""

from __future__ import annotations

from tests.fuzzing import examples  # noqa: E402
from hypothesis import given, settings
from hypothesis import strategies as st

from mailward.smtp.server import ServerLimits
from tests.smtp.driver import ServerDriver

LIMITS = ServerLimits(max_command_line=128, max_text_line=200, max_message_size=4000, max_bad_commands=50)
# Whether a client waited for a reply shows only in how its bytes were split, so the splitting
# property holds with the RFC 2920 checks off.
UNCHECKED = ServerLimits(max_command_line=128, max_text_line=200, max_message_size=4000, max_bad_commands=50,
                         forbid_unauth_pipelining=False)
WORDS = [b"EHLO c\r\n", b"HELO c\r\n", b"MAIL FROM:<a@b.example>\r\n", b"MAIL FROM:<>\r\n",
         b"RCPT TO:<u@mx.test>\r\n", b"DATA\r\n", b"RSET\r\n", b"NOOP\r\n", b"STARTTLS\r\n", b"QUIT\r\n",
         b".\r\n", b"\r\n.\r\n", b"\n.\n", b"\r.\r", b"..\r\n", b"x" * 150, b"\r\n", b"\n", b"\r", b"\x00",
         b"BDAT 10\r\n", b"VRFY x\r\n", b"MAIL FROM:<a@b> SIZE=1\r\n", "é".encode(), b"\xff"]


def run(chunks, limits=LIMITS):
    d = ServerDriver(limits, client_desc="c [127.0.0.1]", greeting="hi", auto_tls=True, max_steps=10000)
    out = [d.feed(chunk) for chunk in chunks]
    return b"".join(out), d.events


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_random_bytes_never_crash(chunks):
    replies, _ = run(chunks)
    for line in replies.split(b"\r\n")[:-1]:
        assert line[:3].isdigit()


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=40))
def test_command_soup_never_crashes(words):
    run(words)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.sampled_from(WORDS[:8] + WORDS[9:10]), max_size=15), st.lists(st.integers(0, 400), max_size=8))
def test_splitting_does_not_change_replies(words, cuts):
    data = b"".join(words)
    whole, _ = run([data], limits=UNCHECKED)
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    split, _ = run(pieces, limits=UNCHECKED)
    assert split == whole
