"""The SMTP client core's states and rules, in one place (as h11's ``_state.py``).

The states of :class:`mailward.smtp.client.ClientConnection`, the table of the calls the I/O
layer may make in each (anything else is :class:`~mailward.smtp.errors.LocalProtocolError`,
whose message names the state), and the states in which the core waits for a call.
:mod:`mailward.smtp.client` moves between them on each reply.

The dialogue (RFC 5321 §3, §4.1; RFC 3207 §4.2; RFC 2920 §3.1)::

    GREETING --220--> EHLO --250--> READY;   EHLO --5xx--> HELO --250--> READY
             (a greeting other than 220, EHLO refused with 4xx or inside TLS, HELO refused: QUIT)
    READY --start_tls()--> STARTTLS --220--> TLS_HANDSHAKE --tls_started()--> EHLO
                                    --other--> READY     --tls_refused_by_policy()--> QUIT
    READY --send_transaction()--> TRANSACTION --354--> CONTENT --end_content()--> DATA_END
    DATA_END --its reply--> READY   (354 after every RCPT was refused: only the end, DATA_END)
    TRANSACTION --refused before the content--> RSET --its reply--> READY
                                                (or READY at once when MAIL was refused)
    READY --authenticate()--> AUTH --334--> (the next response) AUTH --235 or any other--> READY
    GREETING/EHLO/HELO/READY --quit()--> QUIT --221--> CLOSED
    any state --421, or the peer closes--> CLOSED

LMTP (RFC 2033) follows the same table: LHLO in place of EHLO (no HELO fallback, §4.1), and
DATA_END waits for one reply per recipient accepted at RCPT (§4.2) before READY.
"""

from __future__ import annotations

import enum

from mailward.smtp.errors import LocalProtocolError


class ClientState(enum.Enum):
    GREETING = "waiting for the server's greeting"
    EHLO = "EHLO (LHLO in LMTP) sent"
    HELO = "HELO sent (EHLO was refused)"
    READY = "a transaction, STARTTLS or QUIT may start"
    STARTTLS = "STARTTLS sent"
    TLS_HANDSHAKE = "220 to STARTTLS: the I/O layer runs the handshake"
    TRANSACTION = "MAIL, RCPT and DATA sent, their replies awaited"
    CONTENT = "354: the I/O layer sends the message"
    DATA_END = "the end of data sent, its reply awaited"
    RSET = "RSET sent after a transaction that ended before its content"
    AUTH = "AUTH sent: a 334 challenge or the final reply awaited"
    QUIT = "QUIT sent, its reply awaited"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.name


S = ClientState

# call → (the states it is allowed in, when that is). In CLOSED, quit() does nothing.
CALLS: dict[str, tuple[frozenset[ClientState], str]] = {
    "start_tls": (frozenset({S.READY}), "after Ready, when STARTTLS was offered"),
    "tls_started": (frozenset({S.TLS_HANDSHAKE}), "after TLSReady and a handshake that succeeded"),
    "tls_refused_by_policy": (frozenset({S.TLS_HANDSHAKE}), "after TLSReady and a handshake that succeeded"),
    "send_transaction": (frozenset({S.READY}), "after Ready, TLSRefused or TransactionDone"),
    "send_content": (frozenset({S.CONTENT}), "after SendContent"),
    "end_content": (frozenset({S.CONTENT}), "after SendContent"),
    "authenticate": (frozenset({S.READY}), "after Ready (inside TLS), when AUTH was offered"),
    "quit": (frozenset({S.GREETING, S.EHLO, S.HELO, S.READY, S.CLOSED}), "outside a transaction"),
}

# next_event() says WAITING in these: nothing happens until the I/O layer calls the core.
WAITING_FOR_A_CALL = frozenset({S.READY, S.TLS_HANDSHAKE, S.CONTENT, S.CLOSED})
# Replies are not read in these: what arrives during the handshake is never an answer.
REPLIES_NOT_READ = frozenset({S.TLS_HANDSHAKE, S.CLOSED})
# A transaction is under way: if the connection ends, it ends with what is known.
IN_TRANSACTION = frozenset({S.TRANSACTION, S.CONTENT, S.DATA_END, S.RSET})


def check_call(call: str, state: ClientState) -> None:
    """LocalProtocolError, naming the state, unless ``call`` is allowed in ``state``."""
    allowed, when = CALLS[call]
    if state not in allowed:
        names = ", ".join(s.name for s in ClientState if s in allowed)
        raise LocalProtocolError(f"{call}() is not allowed in state {state.name}: only in {names} ({when})")
