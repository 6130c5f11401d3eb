"""Events the SMTP server core hands to the I/O layer. Small frozen values.

Events marked *decision* pause the core until the I/O layer calls
``ServerConnection.respond(reply)`` (``None`` accepts with the default reply).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailward.smtp.parse import Path
from mailward.smtp.replies import Reply


@dataclass(frozen=True)
class Helo:
    name: str
    extended: bool  # EHLO


@dataclass(frozen=True)
class MailFrom:  # decision
    path: Path


@dataclass(frozen=True)
class RcptTo:  # decision
    path: Path


@dataclass(frozen=True)
class DataRequested:  # decision: 354 to go on, or e.g. 452 4.3.1 when the spool cannot take it
    pass


@dataclass(frozen=True)
class DataChunk:
    data: bytes  # message content, dot-unstuffed, CRLF line ends


@dataclass(frozen=True)
class DataComplete:  # decision: 250 with the queue id only once the message is durable
    size: int


@dataclass(frozen=True)
class DataFailed:
    """The core has already answered (size, line length, bare CR/LF, NUL); discard what was kept."""
    reply: Reply


@dataclass(frozen=True)
class TransactionReset:
    """The transaction was discarded (``reason``: "RSET", "HELO", "EHLO" or "pipelining");
    a refused message is :class:`DataFailed`, an answered one :class:`DataComplete`."""
    reason: str


@dataclass(frozen=True)
class StartTLS:  # decision
    """Accept (None → 220, then the core holds all input; send the 220 in clear, run the
    handshake, call tls_started() or close) or refuse (e.g. 454 4.7.0)."""


@dataclass(frozen=True)
class CloseConnection:
    reason: str  # "quit", "too many errors", "timeout", "shutdown"


@dataclass(frozen=True)
class PipeliningViolation:
    """The client sent more before a reply it had to wait for (RFC 2920 §3.1): after
    ``after`` ("EHLO", "HELO", "DATA", or "CONNECT" for bytes before the greeting) came
    ``seen`` (its first octets). The core has answered; for the log."""
    after: str
    seen: bytes


@dataclass(frozen=True)
class ProtocolError:
    """A reply the core sent for a client mistake (for the log); no action needed."""
    command: str
    reply: Reply


class _Sentinel:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")   # send data_to_send(), then feed more (if output_full: call again)
PAUSED = _Sentinel("PAUSED")         # waiting for respond()/tls_started(), or closed
