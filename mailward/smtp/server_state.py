"""The SMTP server core's states and rules, in one place (as h11's ``_state.py``).

Everything that decides *whether* a command is served lives here: the states, the table of
the states each command is served in, what a client is told when it sends a command out of
sequence, and which events move the core from one state to another.
:mod:`mailward.smtp.server` decides *what* a served command does.

The dialogue (RFC 5321 §3.3, §4.1.4; RFC 3207 §4.2), as :data:`TRANSITIONS` has it::

    CONNECTED         --HELO/EHLO-->          GREETED
    GREETED           --MAIL accepted-->      MAIL_ACCEPTED --RCPT accepted--> RCPT_ACCEPTED
    RCPT_ACCEPTED     --354 to DATA-->        DATA          --CRLF.CRLF-->     END_OF_DATA
    END_OF_DATA       --the message's reply-> GREETED
    DATA              --message refused (size, line length, bare CR/LF, NUL)--> GREETED
    MAIL_/RCPT_ACCEPTED --RSET, HELO/EHLO-->  GREETED
    CONNECTED/GREETED --220 to STARTTLS-->    TLS_HANDSHAKE --tls_started()--> CONNECTED
    GREETED           --AUTH accepted-->      AUTH          --235/535/454/501--> GREETED
    CONNECTED         --a refusing greeting-> REFUSED: only QUIT is served (RFC 5321 §3.1)
    any state         --QUIT, too many errors, timeout, shutdown, pipelining violation--> CLOSED

A decision (MAIL, RCPT, DATA, the end of data, STARTTLS) pauses the core in its state until
``respond()``; the reply moves it on or leaves it where it was.

Two overlays sit beside the state, as sendmail 8.17 keeps them beside its own
(srvrsmtp.c): *nullserver* (``refuse_commands()``: after a failed tls_client check, only
:data:`SERVED_IN_NULLSERVER` are served, the rest get the check's reply, counted as errors)
and the *check_mail* rejection (``block()``: once the client said HELO, every MAIL and RCPT
gets the check's reply, not counted). The order in which a command's checks are made — and
so which reply a client sees when several apply — is sendmail 8.17's: MAIL and RCPT check
the sequence before their arguments, DATA and STARTTLS after (see ``_cmd_data`` and
``_cmd_starttls`` in :mod:`mailward.smtp.server`).
"""

from __future__ import annotations

import enum

from mailward.smtp import replies as R
from mailward.smtp.errors import LocalProtocolError
from mailward.smtp.replies import Reply


class ServerState(enum.Enum):
    CONNECTED = "no HELO/EHLO yet"                   # also after TLS starts (RFC 3207 §4.2)
    GREETED = "HELO/EHLO accepted, no transaction"
    MAIL_ACCEPTED = "MAIL accepted, no recipient yet"
    RCPT_ACCEPTED = "at least one recipient accepted"
    DATA = "reading the message text"                # after 354, until CRLF.CRLF
    END_OF_DATA = "the message ended, its reply is being decided"
    TLS_HANDSHAKE = "220 sent to STARTTLS, all input dropped until tls_started()"
    AUTH = "an AUTH exchange runs: each line is an answer to a 334 (RFC 4954 §4)"
    REFUSED = "greeted with a refusal, only QUIT is served"   # RFC 5321 §3.1
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.name


S = ServerState
ALL_STATES = frozenset(ServerState)
# The states in which a line of input is a command.
COMMAND_STATES = frozenset({S.CONNECTED, S.GREETED, S.MAIL_ACCEPTED, S.RCPT_ACCEPTED})
IN_TRANSACTION = frozenset({S.MAIL_ACCEPTED, S.RCPT_ACCEPTED})

# ---- which command is served where -----------------------------------------------------------
# verb → the states it is served in. A verb not in this table gets 500 5.5.1.
SERVED_IN: dict[str, frozenset[ServerState]] = {
    "HELO": COMMAND_STATES,
    "EHLO": COMMAND_STATES,
    "MAIL": frozenset({S.GREETED}),
    "RCPT": IN_TRANSACTION,
    "DATA": frozenset({S.RCPT_ACCEPTED}),
    "RSET": COMMAND_STATES,
    "NOOP": COMMAND_STATES,
    "QUIT": COMMAND_STATES | {S.REFUSED},
    "VRFY": COMMAND_STATES,
    "EXPN": COMMAND_STATES,
    "HELP": COMMAND_STATES,
    "STARTTLS": frozenset({S.CONNECTED, S.GREETED}),   # RFC 3207 §4: not inside a transaction
    "AUTH": frozenset({S.GREETED}),                    # RFC 4954 §4: after EHLO, not in a transaction
}

AUTH_IN_TRANSACTION = Reply(503, "5.5.0", "AUTH not permitted during a mail transaction")   # RFC 4954 §4

# (verb, state) → the reply to a verb sent in a command state it is not served in (RFC 5321
# §4.1.4, §4.3.2: 503 bad sequence), in sendmail 8.17's words; counted as a client error.
OUT_OF_SEQUENCE: dict[tuple[str, ServerState], Reply] = {
    ("MAIL", S.CONNECTED): R.NEED_HELO,
    ("MAIL", S.MAIL_ACCEPTED): R.NESTED_MAIL,
    ("MAIL", S.RCPT_ACCEPTED): R.NESTED_MAIL,
    ("RCPT", S.CONNECTED): R.NEED_HELO,
    ("RCPT", S.GREETED): R.NEED_MAIL,
    ("DATA", S.CONNECTED): R.NEED_HELO,
    ("DATA", S.GREETED): R.NEED_MAIL,
    ("DATA", S.MAIL_ACCEPTED): R.NEED_RCPT,
    ("STARTTLS", S.MAIL_ACCEPTED): R.TLS_IN_TRANSACTION,
    ("STARTTLS", S.RCPT_ACCEPTED): R.TLS_IN_TRANSACTION,
    ("AUTH", S.CONNECTED): R.NEED_HELO,
    ("AUTH", S.MAIL_ACCEPTED): AUTH_IN_TRANSACTION,
    ("AUTH", S.RCPT_ACCEPTED): AUTH_IN_TRANSACTION,
}
# In REFUSED every line but QUIT gets this, not counted as an error (RFC 5321 §3.1).
NOT_SERVED_WHEN_REFUSED = R.NO_SERVICE

# sendmail's nullserver mode: served as usual; every other known verb gets the refusal.
SERVED_IN_NULLSERVER = frozenset({"QUIT", "HELO", "EHLO", "NOOP", "RSET"})
# sendmail's check_mail rejection (block()): these verbs get its reply once the client said HELO.
BLOCKED_BY_CHECK_MAIL = frozenset({"MAIL", "RCPT"})

# ---- how the state moves ----------------------------------------------------------------------
# what happened → (the states it can happen in, the state after it). Anything else is a bug in
# mailward (LocalProtocolError), never the client's doing.
TRANSITIONS: dict[str, tuple[frozenset[ServerState], ServerState]] = {
    "greeting refused": (frozenset({S.CONNECTED}), S.REFUSED),
    "HELO accepted": (COMMAND_STATES, S.GREETED),
    "MAIL accepted": (frozenset({S.GREETED}), S.MAIL_ACCEPTED),
    "RCPT accepted": (IN_TRANSACTION, S.RCPT_ACCEPTED),
    "transaction reset": (IN_TRANSACTION, S.GREETED),          # RSET, HELO/EHLO, a violation
    "354 sent": (frozenset({S.RCPT_ACCEPTED}), S.DATA),
    "end of data": (frozenset({S.DATA}), S.END_OF_DATA),
    "message refused": (frozenset({S.DATA}), S.GREETED),       # the core already answered
    "message answered": (frozenset({S.END_OF_DATA}), S.GREETED),
    "220 to STARTTLS": (frozenset({S.CONNECTED, S.GREETED}), S.TLS_HANDSHAKE),
    "AUTH started": (frozenset({S.GREETED}), S.AUTH),
    "AUTH ended": (frozenset({S.AUTH}), S.GREETED),
    # a fresh session over TLS; tests also use it to start one without a handshake
    "TLS started": (ALL_STATES - {S.CLOSED}, S.CONNECTED),
    "closed": (ALL_STATES, S.CLOSED),
}


def served(verb: str, state: ServerState) -> bool:
    return state in SERVED_IN.get(verb, ())


def out_of_sequence(verb: str, state: ServerState) -> Reply | None:
    """The reply to ``verb`` in ``state`` if the table does not serve it there, else None."""
    if served(verb, state):
        return None
    return OUT_OF_SEQUENCE[verb, state]


def next_state(what: str, state: ServerState) -> ServerState:
    """The state after ``what`` happened in ``state``; LocalProtocolError if it cannot."""
    allowed, after = TRANSITIONS[what]
    if state not in allowed:
        names = ", ".join(sorted(s.name for s in allowed))
        raise LocalProtocolError(f"{what} is not possible in state {state.name} (only in {names})")
    return after
