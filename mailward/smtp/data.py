"""The DATA phase reader: end-of-data detection, dot-unstuffing and smuggling checks. Pure.

RFC 5321 §4.1.1.4: the mail data ends with ``<CRLF>.<CRLF>`` and nothing else does. A bare LF
or bare CR (RFC 5321 §2.3.8) is what SMTP smuggling relies on: a next hop that takes ``\\n.\\n``
or ``\\r.\\r`` as the end of data would see a second, forged message. So here:

* the end is recognised only on ``CRLF . CRLF`` (the DATA line's own CRLF counts as the first);
* by default a message holding a bare CR or LF is rejected once its real end arrives
  (``reject``); the ``normalise`` setting instead turns each into CRLF, after which the
  delivery client dot-stuffs every line — so it can never act as an end of data downstream;
* dot-unstuffing removes the first character of every line that starts with ``.`` (§4.5.2);
* a line longer than ``max_line`` (CRLF included) or a message over ``max_size`` octets is
  consumed to its end and then rejected; its bytes are not kept;
* so is, by default (``reject_nul``), a message holding a NUL octet: RFC 5322 §3.5 leaves
  it out of message text and RFC 2045 §2.8 out of 8bit data, and a next hop written in C
  may take it as the end of a line or of the message.

Memory stays bounded: only the unfinished last line is buffered (at most ``max_line`` octets
before it is known to be too long), complete lines are handed out as chunks.
"""

from __future__ import annotations

import re

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
END_AT_START = b".\r\n"
END_MARKER = b"\r\n.\r\n"


class DataReader:
    def __init__(self, *, max_line: int, max_size: int, normalise: bool = False, reject_nul: bool = True):
        self.max_line = max_line
        self.max_size = max_size
        self.normalise = normalise
        self.reject_nul = reject_nul
        self.nul = False
        self.size = 0              # octets kept so far (after unstuffing)
        self.too_big = False
        self.line_too_long = False
        self.bare_line_ending = False
        self._tail = b""           # the unfinished last line
        self._at_line_start = True

    @property
    def failed(self) -> bool:
        return self.too_big or self.line_too_long or self.bare_line_ending or self.nul

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """Take received bytes; return (content to keep, rest after the end or None)."""
        buf = self._tail + data if self._tail else data
        if self._at_line_start and buf.startswith(END_AT_START):
            self._tail = b""
            return b"", buf[len(END_AT_START):]
        end = buf.find(END_MARKER)
        if end >= 0:
            self._tail = b""
            return self._take(buf[: end + 2]), buf[end + len(END_MARKER):]
        cut = buf.rfind(b"\r\n")
        content = b""
        if cut >= 0:
            content = self._take(buf[: cut + 2])
            buf = buf[cut + 2:]
            self._at_line_start = True
        if len(buf) > self.max_line:
            # An unfinished line already too long: remember that, keep only what could start
            # the end marker.
            self.line_too_long = True
            buf = buf[-1:]
            self._at_line_start = False
        self._tail = buf
        return content, None

    def _take(self, block: bytes) -> bytes:
        """Check and unstuff complete lines (block ends with CRLF); '' once the message failed."""
        starts_line = self._at_line_start
        limit = self.max_line - 2
        # One split serves both checks: its length counts the CRLFs (then a bare CR or LF shows
        # as a surplus in the one-byte counts, which are fast), its pieces are the lines.
        lines = block.split(b"\r\n")
        crlf = len(lines) - 1
        if block.count(b"\r") != crlf or block.count(b"\n") != crlf:
            if self.normalise:
                block = _BARE.sub(b"\r\n", block)
                lines = block.split(b"\r\n")
            else:
                self.bare_line_ending = True
        if len(block) > limit and max(map(len, lines)) > limit and _any_too_long(lines, limit, starts_line):
            self.line_too_long = True
        if self.reject_nul and b"\x00" in block:
            self.nul = True
        if starts_line and block.startswith(b"."):
            block = block[1:]
        if b"\r\n." in block:
            block = block.replace(b"\r\n.", b"\r\n")
        self.size += len(block)
        if self.size > self.max_size:
            self.too_big = True
        return b"" if self.failed else block


def _any_too_long(lines: list[bytes], limit: int, starts_line: bool) -> bool:
    """Whether a line is longer than ``limit`` octets as the sender wrote it: RFC 5321
    §4.5.3.1.6 counts the text line, and the dot that transparency (§4.5.2) adds in front
    of a line starting with '.' is not part of it. The first piece is a line start only
    if the block starts one."""
    for i, line in enumerate(lines):
        if len(line) > limit:
            stuffed = line[:1] == b"." and (i > 0 or starts_line)
            if len(line) - stuffed > limit:
                return True
    return False
