"""The SMTP server protocol core (RFC 5321, RFC 3207, RFC 1870, RFC 6152, RFC 3461, RFC 6531, RFC 8689).

No I/O: bytes go in with :meth:`ServerConnection.receive_data`, events come out of
:meth:`next_event`, reply bytes come out of :meth:`data_to_send`. The I/O layer flushes
``data_to_send()`` whenever ``next_event()`` says NEED_DATA, so the replies to a pipelined
group of commands leave together (RFC 2920 §3.1).

Decisions that need the world (policy, the spool) are events that pause the core until
:meth:`respond` is called. STARTTLS is an event: the core queues ``220``, **discards every
byte it already holds** (CVE-2011-0411: plaintext pipelined after STARTTLS must not be
executed inside the TLS session), drops all input until :meth:`tls_started`, and then starts
over without HELO/EHLO and without a transaction (RFC 3207 §4.2).

AUTH (RFC 4954) and what a submission listener requires (RFC 6409, RFC 8314) are
:mod:`mailward.smtp.server_auth`, mixed in. MAIL and RCPT parameters are checked by
:mod:`mailward.smtp.server_params`; REQUIRETLS
(RFC 8689) is offered in EHLO only inside TLS and accepted on MAIL only there.

States: :attr:`ServerConnection.state` is a :class:`~mailward.smtp.server_state.ServerState`;
which command is served in which state, what a client is told otherwise, and how the state
moves are tables in :mod:`mailward.smtp.server_state`. This module carries out the commands.

Pipelining (RFC 2920 §3.1) where the client must wait (``forbid_unauth_pipelining``): EHLO
or HELO with more behind it gets sendmail 8.17's 554 and the rest of the session its
nullserver answers; bytes before the greeting, and message text before the 354, get
Postfix's 554 and the connection is closed. Each is a PipeliningViolation event for the log.

Flow control: the core stops working through pipelined commands once
``OUTPUT_HIGH_WATER`` octets of replies wait in :meth:`data_to_send`; ``next_event()`` then
says NEED_DATA with :attr:`ServerConnection.output_full` set, and goes on after the replies
were taken. The I/O layer takes them, and stops reading while the peer does not read
(a client that never reads cannot make the server hold its replies without bound).

Failure behaviour: a client mistake is answered and counted; after ``max_bad_commands``
the core answers 421 and closes. Nothing here raises on any input.

SECURITY
    Faces the network: every byte given to :meth:`ServerConnection.receive_data` is the
    client's, split wherever the client or the network split it, sent when it chose (before
    the greeting, after STARTTLS, before the 354) and in any quantity. Addresses, parameters,
    the HELO name and message text are the client's words; they leave the core unchanged in
    events, and whoever logs or stores them escapes them (:func:`parse.printable_address`).

    Bounded, each by a setting (``server.*`` in the configuration, carried by
    :class:`ServerLimits`): a command line by ``max_command_line`` (512 octets, RFC 5321
    §4.5.3.1.4) — a longer one is answered 500 and dropped as it arrives, never buffered; a
    text line by ``max_text_line`` (1000, §4.5.3.1.6) and a message by ``max_message_size``
    (RFC 1870: 552) — past either, the rest is read to its end and not kept; recipients by
    ``max_recipients`` (100, §4.5.3.1.8; then 452, §4.5.3.1.10); client errors by
    ``max_bad_commands`` (20; then 421 and close). Replies held for a client that does not
    read: ``OUTPUT_HIGH_WATER``. Input held: what one read delivered plus one unfinished
    line; parsing it costs linear time however it is pipelined. Time is bounded by the I/O
    layer's timers (:mod:`mailward.receive.session`).

    Must never happen: a command that arrived in clear before the TLS handshake is executed
    inside the TLS session (CVE-2011-0411); anything but ``CRLF.CRLF`` ends the message text
    (SMTP smuggling: a bare LF or CR, as in ``LF.LF``, refuses the message with 554 after its
    real end, or with ``bare_line_endings = "normalise"`` becomes CRLF; RFC 5321 §2.3.8,
    §4.1.1.4); message text sent before the 354 is taken as text
    (``forbid_unauth_pipelining``); a NUL octet is stored (``reject_nul_in_data``, RFC 5322
    §3.5); a transaction survives RSET, HELO/EHLO, STARTTLS or a refused message; an exception
    escapes on any input (a property test feeds the core random bytes).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from mailward.smtp import events as ev
from mailward.smtp import replies as R
from mailward.smtp import server_state as rules
from mailward.smtp.data import DataReader
from mailward.smtp.errors import LocalProtocolError
from mailward.smtp.parse import COMMAND_CONTROL, Path, SyntaxProblem, parse_path
from mailward.smtp.replies import Reply
from mailward.smtp.server_auth import AUTH_LINE_TOO_LONG, AuthCancelled, AuthCommands, without_credentials
from mailward.smtp.server_params import check_mail_params, check_rcpt_params
from mailward.smtp.server_state import ServerState


@dataclass(frozen=True)
class ServerLimits:
    max_command_line: int = 512      # octets incl. CRLF, RFC 5321 §4.5.3.1.4
    max_text_line: int = 1000        # octets incl. CRLF, RFC 5321 §4.5.3.1.6
    max_message_size: int = 26214400
    max_recipients: int = 100        # RFC 5321 §4.5.3.1.8
    max_bad_commands: int = 20
    normalise_bare_line_endings: bool = False
    reject_nul_in_data: bool = True  # RFC 5322 §3.5: no NUL in message text
    # Refuse a client that sends more before the reply it must wait for (RFC 2920 §3.1).
    forbid_unauth_pipelining: bool = True
    # Offer REQUIRETLS after STARTTLS and accept MAIL's REQUIRETLS under TLS (RFC 8689).
    requiretls: bool = True


@dataclass
class InboundTransaction:
    """The mail transaction a client is building (RFC 5321 §3.3): the sender of an accepted
    MAIL and the recipients of accepted RCPTs, as the client wrote them. Not the spool's
    envelope (:class:`mailward.spool.store.Envelope`), which the receiving session makes
    from it at DATA; not the client core's :class:`mailward.smtp.client_events.Transaction`,
    which is what the delivery side sends."""
    sender: Path
    recipients: list[Path] = field(default_factory=list)

    @property
    def smtputf8(self) -> bool:
        return "SMTPUTF8" in self.sender.params


# sendmail 8.17 to EHLO or HELO with traffic behind it, and to every command after that
# (as sendmail 8.17 answers a client that does not wait for the EHLO reply, RFC 2920 §3.1).
PROTOCOL_ERROR = Reply(554, "5.5.0", "SMTP protocol error")
COMMAND_REJECTED = Reply(550, "5.0.0", "Command rejected")
# Postfix ≥ 3.9 (smtpd_forbid_unauth_pipelining) to bytes before the greeting or behind DATA;
# it then closes the connection.
PIPELINING_SYNC = Reply(554, "5.5.0", "Error: SMTP protocol synchronization")
NUL_IN_DATA = Reply(554, "5.6.0", "Message contains a NUL character (RFC 5322 §3.5)")

class ServerConnection(AuthCommands):
    OUTPUT_HIGH_WATER = 65536  # octets of replies held before the core waits for them to be taken

    def __init__(self, hostname: str, client_desc: str, limits: ServerLimits = ServerLimits(),
                 *, starttls_available: bool = False, implicit_tls: bool = False, auth_available: bool = False,
                 submission: bool = False):
        """``implicit_tls``: the session runs inside TLS from its start (RFC 8314);
        ``auth_available``: AUTH can be offered (under TLS; :mod:`.server_auth`);
        ``submission``: STARTTLS and AUTH before MAIL (RFC 6409)."""
        self.hostname = hostname
        self.client_desc = client_desc          # "name [addr]" for the EHLO reply
        self.limits = limits
        self.starttls_available = starttls_available
        self.tls_active = implicit_tls
        self.auth_available = auth_available
        self.require_tls = self.require_auth = submission
        self.authenticated = None
        self.helo: str | None = None
        self.extended = False
        self.transaction: InboundTransaction | None = None
        self.bad_commands = 0
        self.blocked: Reply | None = None   # see block()
        self.refusing: Reply | None = None  # see refuse_commands()
        self._state = ServerState.CONNECTED
        # Input not yet handled is _inbuf[_pos:]: lines are taken by moving _pos, and the
        # handled part is dropped only when it is the larger half, so a long pipelined input
        # costs linear time, not a copy of the rest per line.
        self._inbuf = bytearray()
        self._pos = 0
        self._discarding_long_line = False
        self._discarding_auth_line = False   # the line being dropped is an AUTH command
        self._out: list[bytes] = []
        self._out_size = 0
        self.output_full = False  # next_event() stopped for its replies, not for input
        self._events: deque = deque()
        self._pending: object | None = None   # the decision event respond() answers
        self._reader: DataReader | None = None

    # ---- the I/O boundary -------------------------------------------------------------
    def greet(self, text: str) -> None:
        """The 220 greeting; bytes received before it (feed them first) are a client that
        did not wait for it: refused and closed, as Postfix does."""
        if self._unauth_pipelining("CONNECT"):
            return
        self._send(Reply(220, "", text))

    def refuse(self, reply: Reply) -> None:
        """Greet with a refusal (e.g. 554); then only QUIT is served (RFC 5321 §3.1)."""
        self._send(reply)
        self._enter("greeting refused")

    def receive_data(self, data: bytes) -> None:
        if self._state in (ServerState.TLS_HANDSHAKE, ServerState.CLOSED):
            return  # nothing sent before the handshake or after close is ever executed
        if self._pos and self._pos * 2 >= len(self._inbuf):
            del self._inbuf[: self._pos]
            self._pos = 0
        self._inbuf += data

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        self.output_full = False
        return out

    @property
    def state(self) -> ServerState:
        """Where the dialogue is (:class:`mailward.smtp.server_state.ServerState`)."""
        return self._state

    @property
    def pending(self):
        """The decision event that :meth:`respond` answers, or None."""
        return self._pending

    @property
    def closed(self) -> bool:
        return self._state is ServerState.CLOSED

    @property
    def in_data(self) -> bool:
        return self._state is ServerState.DATA

    @property
    def input_held(self) -> int:
        """Octets of input the core holds in memory (handled ones not yet dropped included)."""
        return len(self._inbuf)

    def _paused(self) -> bool:
        return self._pending is not None or self._state in (ServerState.TLS_HANDSHAKE, ServerState.CLOSED)

    def next_event(self):
        while not self._events:
            if self._paused():
                return ev.PAUSED
            if self._out_size >= self.OUTPUT_HIGH_WATER:
                self.output_full = True
                return ev.NEED_DATA
            progressed = self._step_data() if self._state is ServerState.DATA else self._step_command()
            if not progressed:
                break
        if self._events:
            return self._events.popleft()
        return ev.PAUSED if self._paused() else ev.NEED_DATA

    def respond(self, reply: Reply | None = None) -> None:
        """Answer the pending decision event (``None``: accept with the default reply)."""
        pending, self._pending = self._pending, None
        if pending is None:
            raise LocalProtocolError(f"respond() is not allowed in state {self._state}: no decision is pending")
        if isinstance(pending, ev.MailFrom):
            reply = reply or Reply(250, "2.1.0", f"<{pending.path.address}>... Sender ok")
            if reply.is_positive:
                self.transaction = InboundTransaction(pending.path)
                self._enter("MAIL accepted")
        elif isinstance(pending, ev.RcptTo):
            reply = reply or Reply(250, "2.1.5", f"<{pending.path.address}>... Recipient ok")
            if reply.is_positive and self.transaction is not None:
                self.transaction.recipients.append(pending.path)
                self._enter("RCPT accepted")
        elif isinstance(pending, ev.DataRequested):
            reply = reply or R.START_DATA
            if reply.code == 354 and self._unauth_pipelining("DATA"):
                return  # message text arrived while the 354 was being decided
            if reply.code == 354:
                lim = self.limits
                self._reader = DataReader(max_line=lim.max_text_line, max_size=lim.max_message_size,
                                          normalise=lim.normalise_bare_line_endings,
                                          reject_nul=lim.reject_nul_in_data)
                self._enter("354 sent")
        elif isinstance(pending, ev.DataComplete):
            reply = reply or R.OK
            self.transaction = None
            self._enter("message answered")
        elif isinstance(pending, ev.StartTLS):
            reply = reply or R.READY_FOR_TLS
            if reply.code == 220:
                self._send(reply)
                self._drop_input()  # CVE-2011-0411: pipelined plaintext after STARTTLS is never run
                self._enter("220 to STARTTLS")
                return
        self._send(reply)

    def tls_started(self) -> None:
        """The handshake succeeded: a fresh session over TLS (RFC 3207 §4.2)."""
        if self._state is ServerState.AUTH:
            self._events.append(AuthCancelled("TLS started"))
        self._enter("TLS started")
        self.tls_active = True
        self._auth_forget()
        self.blocked = None
        self.refusing = None
        self.helo = None
        self.extended = False
        self.transaction = None
        self._pending = None
        self._drop_input()

    def refuse_commands(self, reply: Reply) -> None:
        """sendmail's "nullserver" mode (srvrsmtp.c), entered after a failed tls_client
        check at STARTTLS: QUIT, HELO, EHLO, NOOP, RSET and unknown commands are served as
        usual, every other command gets ``reply`` (counted as an error), and EHLO offers
        only ENHANCEDSTATUSCODES (as sendmail 8.17 does after a tls_client refusal at
        STARTTLS; sendmail cf/README, STARTTLS: tls_client)."""
        self.refusing = reply

    def block(self, reply: Reply | None) -> None:
        """Answer every MAIL and RCPT with ``reply`` (a tls_client check failed at MAIL,
        without STARTTLS: sendmail 8.17's check_mail rejects them)."""
        self.blocked = reply

    def timeout(self) -> None:
        self._close(R.timed_out(self.hostname), "timeout")

    def shutdown(self) -> None:
        self._close(R.shutting_down(self.hostname), "shutdown")

    # ---- internals ----------------------------------------------------------------------
    def _enter(self, what: str) -> None:
        """Move to the state after ``what`` (the table: :data:`server_state.TRANSITIONS`)."""
        self._state = rules.next_state(what, self._state)

    def _send(self, reply: Reply) -> None:
        data = reply.to_bytes()
        self._out.append(data)
        self._out_size += len(data)

    def _close(self, reply: Reply | None, reason: str) -> None:
        if self._state is ServerState.CLOSED:
            return
        if reply is not None:
            self._send(reply)
        self._enter("closed")
        self._pending = None  # a decision still awaited is never answered
        self._drop_input()
        self._events.append(ev.CloseConnection(reason))

    def _error(self, command: str, reply: Reply) -> None:
        self._send(reply)
        self._events.append(ev.ProtocolError(command, reply))
        self.bad_commands += 1
        if self.bad_commands >= self.limits.max_bad_commands:
            self._close(R.too_many_errors(self.hostname), "too many errors")

    def _decide(self, event) -> None:
        self._pending = event
        self._events.append(event)

    def _reset_transaction(self, reason: str) -> None:
        if self.transaction is not None:
            self.transaction = None
            self._enter("transaction reset")
            self._events.append(ev.TransactionReset(reason))

    def _drop_input(self) -> None:
        self._inbuf = bytearray()
        self._pos = 0

    def _step_data(self) -> bool:
        if self._pos >= len(self._inbuf):
            return False
        data = bytes(memoryview(self._inbuf)[self._pos:])
        self._drop_input()
        reader = self._reader
        content, rest = reader.feed(data)
        if content:
            self._events.append(ev.DataChunk(content))
        if rest is None:
            return True
        self._inbuf = bytearray(rest)
        self._reader = None
        failure = (R.MESSAGE_TOO_BIG if reader.too_big else R.TEXT_LINE_TOO_LONG if reader.line_too_long
                   else R.BARE_LINE_ENDING_IN_DATA if reader.bare_line_ending
                   else NUL_IN_DATA if reader.nul else None)
        if failure is not None:
            self.transaction = None
            self._enter("message refused")
            self._events.append(ev.DataFailed(failure))
            self._error("DATA", failure)
        else:
            self._enter("end of data")
            self._decide(ev.DataComplete(reader.size))
        return True

    def _read_line(self) -> bytes | None:
        """The next complete command line, or None; overlong lines are answered and dropped."""
        limit = self._line_limit()
        while True:
            nl = self._inbuf.find(b"\n", self._pos)
            if nl < 0:
                if len(self._inbuf) - self._pos > limit:
                    if not self._discarding_long_line:
                        self._discarding_auth_line = self._auth_line_ahead()
                    self._drop_input()
                    self._discarding_long_line = True
                return None
            if not self._discarding_long_line and nl + 1 - self._pos > limit:
                self._discarding_auth_line = self._auth_line_ahead()
            line = bytes(self._inbuf[self._pos: nl + 1])
            self._pos = nl + 1
            if self._discarding_long_line or len(line) > limit:
                self._discarding_long_line = False
                if self._state is ServerState.AUTH:
                    self._enter("AUTH ended")
                    self._events.append(AuthCancelled("line too long"))
                    self._error("AUTH", AUTH_LINE_TOO_LONG)
                elif self._discarding_auth_line:   # an AUTH command, its initial response too long
                    self._error("AUTH", AUTH_LINE_TOO_LONG)
                else:
                    self._error("(too long)", R.LINE_TOO_LONG)
                if self._state is ServerState.CLOSED:
                    return None
                continue
            return line

    def _step_command(self) -> bool:
        raw = self._read_line()
        if raw is None:
            return False
        if raw.endswith(b"\r\n") and raw.count(b"\r") == 1:
            raw = raw[:-2]
        elif self.limits.normalise_bare_line_endings and b"\r" not in raw.rstrip(b"\r\n"):
            raw = raw.rstrip(b"\r\n")
        else:
            self._error("(bare line ending)", R.BARE_LINE_ENDING)
            return True
        if COMMAND_CONTROL.search(raw):
            self._error("(control characters)", R.BAD_CHARACTERS)
            return True
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._error("(invalid UTF-8)", Reply(500, "5.5.2", "Command is not valid UTF-8"))
            return True
        state = self._state
        if state is ServerState.AUTH:
            self._auth_line(line)
            return True
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if state is ServerState.REFUSED and not rules.served(verb, state):
            self._send(rules.NOT_SERVED_WHEN_REFUSED)  # not counted: the client did nothing wrong
            return True
        handler = _HANDLERS.get(verb)
        if handler is None:
            # the verb reaches the log only when it is a known one: an unknown "command" is
            # as often a credential sent out of turn (base64 after a 504 or 538)
            self._error(verb if verb in _KNOWN_UNSERVED else "(unrecognized)", R.SYNTAX_UNRECOGNIZED)
        elif self.refusing is not None and verb not in rules.SERVED_IN_NULLSERVER:
            self._error(verb, self.refusing)
        elif (self.blocked is not None and verb in rules.BLOCKED_BY_CHECK_MAIL
              and state is not ServerState.CONNECTED):
            self._send(self.blocked)  # not counted, as sendmail's check_mail rejection
        else:
            handler(self, arg)
        return True

    def _out_of_sequence(self, verb: str) -> bool:
        """Answer ``verb`` if the table does not serve it in this state (503, counted)."""
        refusal = rules.out_of_sequence(verb, self._state)
        if refusal is None:
            return False
        self._error(verb, refusal)
        return True

    # ---- commands -------------------------------------------------------------------------
    def _unauth_pipelining(self, after: str) -> bool:
        """Refuse and close if the client sent anything before the reply to ``after``
        ("CONNECT": the greeting, "DATA": the 354). RFC 2920 §3.1: DATA ends a command
        group; message text before the 354 is what SMTP smuggling and spam engines send,
        never a client that waits. Postfix's answer and close (smtpd_forbid_unauth_pipelining)."""
        seen = self._pending_input() if self.limits.forbid_unauth_pipelining else b""
        if not seen:
            return False
        self._events.append(ev.PipeliningViolation(after, seen))
        self._reset_transaction("pipelining")
        self._close(PIPELINING_SYNC, "pipelining")
        return True

    def _pending_input(self) -> bytes:
        """What the client has sent beyond the command being answered (at most 100 octets),
        for the log: an AUTH command's credentials in it are left out."""
        return without_credentials(bytes(self._inbuf[self._pos: self._pos + 100]))

    def _cmd_helo(self, arg: str, extended: bool = False) -> None:
        name = arg.strip()
        verb = "EHLO" if extended else "HELO"
        seen = self._pending_input() if self.limits.forbid_unauth_pipelining else b""
        if seen:
            # RFC 2920 §3.1: EHLO ends a group; a client that does not wait for its reply
            # cannot know what the server offers. sendmail 8.17 answers 554 and then
            # rejects every command but QUIT, HELO, EHLO, NOOP and RSET (its nullserver mode).
            self._events.append(ev.PipeliningViolation(verb, seen))
            self._error(verb, PROTOCOL_ERROR)
            self.refuse_commands(COMMAND_REJECTED)
            return
        if not name or " " in name:
            self._error(verb, Reply(501, "5.0.0", f"{verb} requires domain address"))
            return
        self._reset_transaction(verb)
        self._enter("HELO accepted")
        self.helo, self.extended = name, extended
        self._events.append(ev.Helo(name, extended))
        greeting = f"{self.hostname} Hello {self.client_desc}, pleased to meet you"
        if not extended:
            self._send(Reply(250, "", greeting))
            return
        if self.refusing is not None:  # sendmail: "offer ENHSC even for nullserver"
            self._send(Reply(250, "", (greeting, "ENHANCEDSTATUSCODES")))
            return
        keywords = ["ENHANCEDSTATUSCODES", "PIPELINING", "8BITMIME", f"SIZE {self.limits.max_message_size}",
                    "DSN", "SMTPUTF8"]
        if self.starttls_available and not self.tls_active:
            keywords.append("STARTTLS")
        if self.tls_active and self.limits.requiretls:
            keywords.append("REQUIRETLS")  # RFC 8689 §2: the option is used only over TLS
        keywords += self._ehlo_auth_keyword()
        keywords.append("HELP")
        self._send(Reply(250, "", (greeting, *keywords)))

    def _cmd_ehlo(self, arg: str) -> None:
        self._cmd_helo(arg, extended=True)

    def _cmd_mail(self, arg: str) -> None:
        if self._out_of_sequence("MAIL"):
            return
        refusal = self._mail_refusal()
        if refusal is not None:
            return self._error("MAIL", refusal)
        if arg[:5].upper() != "FROM:":
            return self._error("MAIL", Reply(501, "5.5.2", "Syntax error in parameters: expected MAIL FROM:<address>"))
        try:
            path = parse_path(arg[5:], kind="MAIL")
            check_mail_params(path, max_message_size=self.limits.max_message_size, tls_active=self.tls_active,
                              requiretls=self.limits.requiretls, auth=self.auth_available)
        except SyntaxProblem as problem:
            return self._error("MAIL", problem.reply)
        self._decide(ev.MailFrom(path))

    def _cmd_rcpt(self, arg: str) -> None:
        if self._out_of_sequence("RCPT"):
            return
        transaction = self.transaction
        if arg[:3].upper() != "TO:":
            return self._error("RCPT", Reply(501, "5.5.2", "Syntax error in parameters: expected RCPT TO:<address>"))
        try:
            path = parse_path(arg[3:], kind="RCPT", smtputf8=transaction.smtputf8)
            check_rcpt_params(path)
        except SyntaxProblem as problem:
            return self._error("RCPT", problem.reply)
        if len(transaction.recipients) >= self.limits.max_recipients:
            self._send(R.TOO_MANY_RECIPIENTS)  # not the client's fault: no error count
            return
        self._decide(ev.RcptTo(path))

    def _cmd_data(self, arg: str) -> None:
        if self._unauth_pipelining("DATA"):
            return
        if arg.strip():
            return self._error("DATA", Reply(501, "5.5.4", "DATA takes no parameters"))
        if self._out_of_sequence("DATA"):
            return
        self._decide(ev.DataRequested())

    def _cmd_rset(self, arg: str) -> None:
        self._reset_transaction("RSET")
        self._send(R.RESET)

    def _cmd_noop(self, arg: str) -> None:
        self._send(R.OK)

    def _cmd_quit(self, arg: str) -> None:
        self._close(R.closing(self.hostname), "quit")

    def _cmd_vrfy(self, arg: str) -> None:
        self._send(R.VRFY_NO_DISCLOSURE)

    def _cmd_expn(self, arg: str) -> None:
        self._send(Reply(502, "5.7.0", "Sorry, we do not allow this operation"))

    def _cmd_help(self, arg: str) -> None:
        self._send(R.HELP)

    def _cmd_starttls(self, arg: str) -> None:
        # Checks in the order sendmail 8.17 applies them (as observed: STARTTLS after STARTTLS,
        # without a certificate, with a parameter, inside a transaction).
        if self.tls_active:
            return self._error("STARTTLS", R.TLS_AFTER_START)
        if not self.starttls_available:
            return self._error("STARTTLS", R.TLS_NOT_AVAILABLE)
        if arg.strip():
            return self._error("STARTTLS", R.NO_PARAMS_ALLOWED)
        if self._out_of_sequence("STARTTLS"):
            return
        self._decide(ev.StartTLS())


# Commands of other SMTP extensions and of history that mailward does not serve: named in the
# log when a client sends one; any other unknown word is logged as "(unrecognized)".
_KNOWN_UNSERVED = frozenset({"BDAT", "ETRN", "TURN", "ATRN", "SEND", "SOML", "SAML", "VERB", "ONEX", "XCLIENT",
                             "XFORWARD", "XEXCH50", "X-EXPS", "X-LINK2STATE", "XUSR", "XAUTH", "GET", "POST",
                             "HEAD", "PUT", "CONNECT", "OPTIONS", "USER", "PASS", "CAPA", "STLS", "LHLO"})

_HANDLERS = {
    "HELO": ServerConnection._cmd_helo,
    "EHLO": ServerConnection._cmd_ehlo,
    "MAIL": ServerConnection._cmd_mail,
    "RCPT": ServerConnection._cmd_rcpt,
    "DATA": ServerConnection._cmd_data,
    "RSET": ServerConnection._cmd_rset,
    "NOOP": ServerConnection._cmd_noop,
    "QUIT": ServerConnection._cmd_quit,
    "VRFY": ServerConnection._cmd_vrfy,
    "EXPN": ServerConnection._cmd_expn,
    "HELP": ServerConnection._cmd_help,
    "STARTTLS": ServerConnection._cmd_starttls,
    "AUTH": ServerConnection._cmd_auth,
}
