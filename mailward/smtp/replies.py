"""SMTP replies: a code, an enhanced status code (RFC 3463) and text, rendered as bytes.

Texts follow sendmail 8.17 as observed (the wording of its srvrsmtp.c) where sendmail has
such a reply, and otherwise say what is wrong and, where it helps, the RFC section.
Multi-line replies use ``code-`` continuation (RFC 5321 §4.2.1).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    status: str  # enhanced status code, "" for the greeting and 354
    text: str | tuple[str, ...]

    @property
    def lines(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else self.text

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def to_bytes(self) -> bytes:
        text = self.text
        if isinstance(text, str):   # one line: the loop below, unrolled
            return (f"{self.code} {self.status} {text}\r\n" if self.status
                    else f"{self.code} {text}\r\n").encode("utf-8")
        out = []
        lines = self.lines
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            # Enhanced status codes go on every line (RFC 2034 §3) but not on EHLO keywords.
            body = f"{self.status} {line}" if self.status and (i == 0 or self.code != 250) else line
            out.append(f"{self.code}{sep}{body}\r\n")
        return "".join(out).encode("utf-8")

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8").rstrip("\r\n").replace("\r\n", " / ")


# Replies that do not depend on the session. Names say when each is sent.
SYNTAX_UNRECOGNIZED = Reply(500, "5.5.1", "Command unrecognized")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
BARE_LINE_ENDING = Reply(500, "5.5.2", "Bare CR or LF in command; lines must end with CRLF (RFC 5321 §2.3.8)")
BAD_CHARACTERS = Reply(500, "5.5.2", "Command contains NUL or control characters")
NEED_HELO = Reply(503, "5.5.1", "Polite people say HELO first")
NEED_MAIL = Reply(503, "5.5.1", "Need MAIL before RCPT")
NEED_RCPT = Reply(503, "5.5.1", "Need RCPT (recipient)")
NESTED_MAIL = Reply(503, "5.5.1", "Sender already specified")
NO_SERVICE = Reply(503, "5.5.1", "No SMTP service here; QUIT please")  # after a refusing greeting
NO_PARAMS_ALLOWED = Reply(501, "5.5.2", "Syntax error (no parameters allowed)")
TLS_AFTER_START = Reply(454, "4.3.3", "TLS not available after start")
TLS_IN_TRANSACTION = Reply(503, "5.5.0", "TLS not permitted during a mail transaction")
TLS_NOT_AVAILABLE = Reply(503, "5.5.0", "TLS not available")
TLS_CANNOT_START = Reply(454, "4.7.0", "TLS not available due to temporary reason")
READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")
OK = Reply(250, "2.0.0", "OK")
RESET = Reply(250, "2.0.0", "Reset state")
VRFY_NO_DISCLOSURE = Reply(252, "2.5.2", "Cannot VRFY user; try RCPT to attempt delivery")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
TEXT_LINE_TOO_LONG = Reply(552, "5.3.4", "Message has a line longer than the limit (RFC 5321 §4.5.3.1.6)")
BARE_LINE_ENDING_IN_DATA = Reply(554, "5.6.0", "Message contains a bare CR or LF; lines must end with CRLF "
                                 "(RFC 5321 §2.3.8)")
NOT_UTF8_ALLOWED = Reply(553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter (RFC 6531)")
STORAGE_FULL = Reply(452, "4.3.1", "Insufficient system storage")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing; try again later")
HELP = Reply(214, "2.0.0", ("mailward: commands are HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS",
                            "See RFC 5321 and RFC 3207"))


def closing(hostname: str) -> Reply:
    return Reply(221, "2.0.0", f"{hostname} closing connection")


def shutting_down(hostname: str) -> Reply:
    return Reply(421, "4.3.2", f"{hostname} Service shutting down, closing connection")


def timed_out(hostname: str) -> Reply:
    return Reply(421, "4.4.2", f"{hostname} Timeout waiting for input, closing connection")


def too_many_errors(hostname: str) -> Reply:
    return Reply(421, "4.7.0", f"{hostname} Too many errors, closing connection")
