"""The SMTP client protocol core: the counterpart of :mod:`mailward.smtp.server`. No I/O.

Bytes from the server go in with :meth:`ClientConnection.receive_data`; events come out of
:meth:`next_event`; command bytes come out of :meth:`data_to_send`. The I/O layer (the
delivery client, :mod:`mailward.deliver.outbound`) owns the socket, the TLS engine and the
timeouts, and answers events by calling the methods below.

The dialogue (RFC 5321 §3, §4.1):

* ``220`` greeting → the core sends ``EHLO``; a ``5xx`` to EHLO falls back to ``HELO``
  (RFC 5321 §3.2). Then :class:`Ready` carries the server's extensions.
* :meth:`start_tls` sends ``STARTTLS``; ``220`` gives :class:`TLSReady`: the I/O layer runs the
  handshake and calls :meth:`tls_started`, after which the core forgets what it knew and says
  EHLO again (RFC 3207 §4.2). Any other reply gives :class:`TLSRefused`.
* :meth:`send_transaction` sends ``MAIL``, every ``RCPT`` and ``DATA`` — in one group when the
  server offers PIPELINING (RFC 2920 §3.1: DATA ends the group), one at a time otherwise.
  ESMTP parameters are passed on only when the server announced their extension: SIZE
  (RFC 1870), BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), RET/ENVID/NOTIFY/ORCPT
  (RFC 3461 §4). On ``354`` comes :class:`SendContent`: the I/O layer feeds the message with
  :meth:`send_content` and ends it with :meth:`end_content`. The core dot-stuffs (RFC 5321
  §4.5.2) and terminates with ``CRLF.CRLF``; nothing else in the message changes.
  :class:`TransactionDone` carries one reply per recipient (:meth:`TransactionResult.outcome`).
  A transaction that ended before its content (MAIL refused, every RCPT refused) is closed
  with ``RSET`` so the connection can be reused for the next message.
* :meth:`authenticate` (RFC 4954), only inside TLS and only when the server offers AUTH:
  ``AUTH`` with the mechanism's initial response, each ``334`` answered by the mechanism
  (:mod:`mailward.smtp.client_auth`), then :class:`~mailward.smtp.client_auth.AuthSucceeded`
  or :class:`~mailward.smtp.client_auth.AuthFailed`. The credentials are only in the bytes
  sent; no event, error or ``repr`` holds them.
* :meth:`quit` sends ``QUIT``; :class:`Closed` reports the end (also on ``421`` at any time).

LMTP (RFC 2033), ``ClientConnection(name, lmtp=True)``: ``LHLO`` instead of ``EHLO`` (and no
HELO fallback: §4.1), and after the end of data one reply per recipient accepted at RCPT, in
the order of the RCPT commands (§4.2). :class:`LMTPResult` keeps them: its ``outcome(i)`` is
recipient ``i``'s own reply, so one message can be delivered to one mailbox and refused
(``550``) or deferred (``452``) for another.

States: :attr:`ClientConnection.state` is a :class:`~mailward.smtp.client_state.ClientState`;
the calls allowed in each state are one table in :mod:`mailward.smtp.client_state`.

Failure behaviour: a reply that is not SMTP raises :class:`RemoteProtocolError` (the next hop's
fault: try another host, defer); calling a method in the wrong state raises
:class:`LocalProtocolError` (our bug; the message names the state). Nothing else raises.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import deque
from dataclasses import dataclass, field

from mailward.smtp import client_state as rules
from mailward.smtp.client_events import (  # noqa: F401  (re-exported: the core's API)
    NEED_DATA,
    WAITING,
    Closed,
    Greeting,
    HeloFailed,
    Ready,
    SendContent,
    TLSReady,
    TLSRefused,
    Transaction,
    TransactionDone,
    TransactionResult,
    mail_params,
    rcpt_params,
    xtext_params,
)
from mailward.smtp.client_auth import AuthAbort, AuthFailed, AuthSucceeded, MAX_COMMAND_LINE
from mailward.smtp.client_state import ClientState
from mailward.smtp.errors import LocalProtocolError, RemoteProtocolError
from mailward.smtp.replies import Reply

MAX_REPLY_LINE = 4096  # generous: RFC 5321 §4.5.3.1.5 says 512 octets


# ---- reply parsing -------------------------------------------------------------------------
_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


def _make_reply(code: int, texts: list[str]) -> Reply:
    status = ""
    m = _STATUS.match(texts[0]) if texts else None
    if m and m.group(1) == str(code)[0]:
        status = m.group(0).strip()
        # RFC 2034 §3: the enhanced code starts every line of the reply
        texts = [t[len(status):].lstrip(" ") if t.startswith(status) else t for t in texts]
    return Reply(code, status, texts[0] if len(texts) == 1 else tuple(texts))


class ReplyReader:
    """Splits received bytes into complete replies (RFC 5321 §4.2.1: ``code-`` continues)."""

    def __init__(self) -> None:
        self._buf = b""
        self._lines: list[str] = []
        self._code: int | None = None

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        replies = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_REPLY_LINE:
                    raise RemoteProtocolError("reply line too long")
                return replies
            raw, self._buf = self._buf[:nl], self._buf[nl + 1:]
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
                raise RemoteProtocolError(f"not an SMTP reply: {line[:80]!r}")
            code = int(line[:3])
            if not 200 <= code < 600:
                raise RemoteProtocolError(f"reply code out of range: {line[:80]!r}")
            if self._code is not None and code != self._code:
                raise RemoteProtocolError(f"reply code changed inside a multi-line reply: {line[:80]!r}")
            self._code = code
            self._lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                replies.append(_make_reply(code, self._lines))
                self._lines, self._code = [], None

    @property
    def pending(self) -> bool:
        return bool(self._buf or self._lines)


def parse_ehlo(reply: Reply) -> dict[str, str]:
    """The EHLO keywords after the greeting line (RFC 5321 §4.1.1.1), upper-cased."""
    ext: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            ext[keyword.upper()] = params.strip()
    return ext


@dataclass
class LMTPResult(TransactionResult):
    """An LMTP transaction's result: ``data_rcpts[i]`` is the reply to the end of data for
    recipient ``i`` (None when it was refused at RCPT or no reply came, RFC 2033 §4.2)."""
    data_rcpts: list[Reply | None] = field(default_factory=list)

    def outcome(self, index: int) -> Reply:
        reply = self.data_rcpts[index] if index < len(self.data_rcpts) else None
        return reply if reply is not None else super().outcome(index)


# ---- the state machine --------------------------------------------------------------------
S = ClientState


class ClientConnection:
    def __init__(self, local_name: str, *, lmtp: bool = False):
        self.local_name = local_name
        self.lmtp = lmtp                # RFC 2033: LHLO, one reply per recipient after the data
        self.extensions: dict[str, str] = {}
        self.esmtp = False
        self.tls_active = False
        self.authenticated = False      # AUTH succeeded on this connection (RFC 4954 §6)
        self._mechanism = None          # the SASL mechanism of the exchange under way
        self._held_initial: bytes | None = None   # an initial response too long for the AUTH line
        self.transactions = 0           # completed on this connection (for reuse limits)
        self._state = S.GREETING
        self._reader = ReplyReader()
        self._out: list[bytes] = []
        self._events: deque = deque()
        self._replies: deque[Reply] = deque()
        self._expect: deque[tuple[str, int]] = deque()   # commands awaiting replies
        self._tx: Transaction | None = None
        self._result: TransactionResult | None = None
        self._unsent: deque[tuple[str, int]] = deque()   # non-pipelined commands still to send
        self._line_start = True
        self._tail = b""
        self._eof = False

    # ---- the I/O boundary -------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if self._state is S.CLOSED:
            return
        if not data:  # the peer closed the connection: replies already read still count
            self._eof = True
            return
        self._replies.extend(self._reader.feed(data))

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def next_event(self):
        while not self._events:
            if self._replies and self._state not in rules.REPLIES_NOT_READ:
                self._handle(self._replies.popleft())
            elif self._eof and self._state is not S.CLOSED:
                self._finish_closed(None)
            else:
                break
        if self._events:
            return self._events.popleft()
        if self._state in rules.WAITING_FOR_A_CALL:
            return WAITING
        return NEED_DATA

    @property
    def state(self) -> ClientState:
        """Where the dialogue is (:class:`mailward.smtp.client_state.ClientState`)."""
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is S.CLOSED

    @property
    def quitting(self) -> bool:
        """True when QUIT was queued or sent and its reply is awaited."""
        return self._state is S.QUIT

    @property
    def ready(self) -> bool:
        """True when a transaction (or STARTTLS, or QUIT) may be started."""
        return self._state is S.READY

    # ---- calls from the I/O layer -----------------------------------------------------
    def start_tls(self) -> None:
        rules.check_call("start_tls", self._state)
        if "STARTTLS" not in self.extensions or self.tls_active:
            raise LocalProtocolError("STARTTLS was not offered")
        self._command("STARTTLS", "STARTTLS")
        self._state = S.STARTTLS

    def tls_started(self) -> None:
        """The handshake succeeded: start over with EHLO (RFC 3207 §4.2)."""
        rules.check_call("tls_started", self._state)
        self.tls_active = True
        self.extensions = {}
        self._reader = ReplyReader()   # nothing received in clear is kept
        self._replies.clear()
        self._hello()

    def tls_refused_by_policy(self) -> None:
        """The handshake succeeded but the TLS policy refuses this server: say QUIT inside
        TLS at once, without a second EHLO (sendmail 8.17 after a tls_server refusal)."""
        rules.check_call("tls_refused_by_policy", self._state)
        self.tls_active = True
        self.extensions = {}
        self._reader = ReplyReader()
        self._replies.clear()
        self._command("QUIT", "QUIT")
        self._state = S.QUIT

    def send_transaction(self, tx: Transaction) -> None:
        """MAIL, RCPT for each recipient, DATA (pipelined when offered). A transaction
        without recipients is MAIL then RSET: what sendmail sends when tls_rcpt refused
        every recipient after MAIL was accepted."""
        rules.check_call("send_transaction", self._state)
        self._tx = tx
        none = [None] * len(tx.recipients)
        self._result = LMTPResult(rcpts=list(none), data_rcpts=list(none)) if self.lmtp else \
            TransactionResult(rcpts=none)
        ext = self.extensions
        commands = [(f"MAIL FROM:<{tx.sender}>{xtext_params(mail_params(tx, ext))}", "MAIL", -1)]
        if not tx.recipients:
            self._command(*commands[0][:2])
            self._state = S.TRANSACTION
            return
        for i, (address, params) in enumerate(tx.recipients):
            commands.append((f"RCPT TO:<{address}>{xtext_params(rcpt_params(params, ext))}", "RCPT", i))
        commands.append(("DATA", "DATA", -1))
        if "PIPELINING" in ext:
            for line, kind, index in commands:
                self._command(line, kind, index)
        else:
            line, kind, index = commands[0]
            self._command(line, kind, index)
            self._unsent = deque((c[0], c[1], c[2]) for c in commands[1:])
        self._state = S.TRANSACTION

    def send_content(self, chunk: bytes) -> None:
        """Part of the message; dot-stuffed here (RFC 5321 §4.5.2), nothing else changes."""
        rules.check_call("send_content", self._state)
        if not chunk:
            return
        stuffed = chunk.replace(b"\n.", b"\n..")
        if self._line_start and chunk.startswith(b"."):
            stuffed = b"." + stuffed
        self._line_start = chunk.endswith(b"\n")
        self._tail = (self._tail + chunk)[-2:]
        self._out.append(stuffed)

    def end_content(self) -> None:
        rules.check_call("end_content", self._state)
        # The end of data is CRLF.CRLF; a message not ending in CRLF gets one (§4.1.1.4).
        self._out.append(b".\r\n" if self._tail in (b"", b"\r\n") else b"\r\n.\r\n")
        assert self._result is not None
        accepted = [i for i, r in enumerate(self._result.rcpts) if r is not None and r.is_positive]
        if self.lmtp and accepted:   # RFC 2033 §4.2: one reply per accepted RCPT, in their order
            self._expect.extend(("DATA_END", i) for i in accepted)
        else:
            self._expect.append(("DATA_END", -1))
        self._state = S.DATA_END
        self._result.content_sent = True

    def authenticate(self, mechanism) -> None:
        """AUTH with ``mechanism`` (:mod:`mailward.smtp.client_auth`). Refused (our bug, not
        the server's) outside TLS: a password is never sent in clear by this core."""
        rules.check_call("authenticate", self._state)
        if not self.tls_active:
            raise LocalProtocolError("authenticate() outside TLS would send the credentials in clear")
        if "AUTH" not in self.extensions:
            raise LocalProtocolError("AUTH was not offered")
        self._mechanism = mechanism
        self._held_initial = None
        line = f"AUTH {mechanism.name}"
        initial = mechanism.initial_response()
        if initial is not None:
            encoded = base64.b64encode(initial).decode("ascii") or "="   # RFC 4954 §4: "=" is empty
            if len(line) + 1 + len(encoded) + 2 <= MAX_COMMAND_LINE:
                line += " " + encoded
            else:   # RFC 4954 §4: too long for the command line: wait for the empty 334
                self._held_initial = initial
        self._command(line, "AUTH")
        self._state = S.AUTH

    def quit(self) -> None:
        rules.check_call("quit", self._state)
        if self._state is S.CLOSED:
            return
        self._command("QUIT", "QUIT")
        self._state = S.QUIT

    # ---- internals ------------------------------------------------------------------------
    def _command(self, line: str, kind: str, index: int = -1) -> None:
        self._out.append(line.encode("utf-8") + b"\r\n")
        self._expect.append((kind, index))

    def _finish_closed(self, reply: Reply | None) -> None:
        if self._state is S.CLOSED:
            return
        if self._result is not None and self._state in rules.IN_TRANSACTION:
            # the transaction ends with whatever we know; missing replies count as 4xx
            lost = reply if reply is not None else Reply(451, "4.4.2", "Connection lost")
            self._result.interrupted = True
            if self._result.data is None and self._state is S.DATA_END:
                self._result.data = lost
            elif self._state is S.TRANSACTION:
                if self._result.mail is None:
                    self._result.mail = lost
                self._result.rcpts = [r if r is not None else lost for r in self._result.rcpts]
            self._events.append(TransactionDone(self._result))
            self._result = None
        self._state = S.CLOSED
        self._expect.clear()
        self._events.append(Closed(reply))

    def _handle(self, reply: Reply) -> None:
        if reply.code == 421 and self._state is not S.QUIT:  # RFC 5321 §3.8: the server is closing
            self._finish_closed(reply)
            return
        if self._state is S.GREETING:
            self._events.append(Greeting(reply))
            if reply.code == 220:
                self._hello()
            else:  # RFC 5321 §3.1: 554 greeting → QUIT and try elsewhere
                self._command("QUIT", "QUIT")
                self._state = S.QUIT
            return
        if not self._expect:
            raise RemoteProtocolError(f"unexpected reply: {reply}")
        kind, index = self._expect.popleft()
        getattr(self, f"_on_{kind.lower()}")(reply, index)

    def _hello(self) -> None:
        self._command(f"{'LHLO' if self.lmtp else 'EHLO'} {self.local_name}", "EHLO")
        self._state = S.EHLO

    def _on_ehlo(self, reply: Reply, index: int) -> None:
        if reply.code == 250:
            self.extensions, self.esmtp = parse_ehlo(reply), True
            self._state = S.READY
            self._events.append(Ready(dict(self.extensions), True, reply))
        elif reply.is_permanent and not self.tls_active and not self.lmtp:  # RFC 5321 §3.2: HELO
            self._command(f"HELO {self.local_name}", "HELO")
            self._state = S.HELO
        else:
            self._events.append(HeloFailed(reply))
            self._command("QUIT", "QUIT")
            self._state = S.QUIT

    def _on_helo(self, reply: Reply, index: int) -> None:
        if reply.code == 250:
            self.extensions, self.esmtp = {}, False
            self._state = S.READY
            self._events.append(Ready({}, False, reply))
        else:
            self._events.append(HeloFailed(reply))
            self._command("QUIT", "QUIT")
            self._state = S.QUIT

    def _on_starttls(self, reply: Reply, index: int) -> None:
        if reply.code == 220:
            self._state = S.TLS_HANDSHAKE
            self._events.append(TLSReady())
        else:
            self._state = S.READY
            self._events.append(TLSRefused(reply))

    def _send_next_unsent(self) -> None:
        if self._unsent:
            line, kind, index = self._unsent.popleft()
            self._command(line, kind, index)

    def _on_mail(self, reply: Reply, index: int) -> None:
        assert self._result is not None
        self._result.mail = reply
        if self._tx is not None and not self._tx.recipients:
            self._end_transaction()   # MAIL only: RSET if it was accepted
        elif reply.is_positive:
            self._send_next_unsent()
        elif self._unsent:  # not pipelined: nothing more to say for this message
            self._unsent.clear()
            self._end_transaction()

    def _on_rcpt(self, reply: Reply, index: int) -> None:
        assert self._result is not None
        self._result.rcpts[index] = reply
        if not self._unsent:
            return
        if self._unsent[0][1] == "DATA" and not any(r is not None and r.is_positive for r in self._result.rcpts):
            self._unsent.clear()  # no recipient accepted: do not send DATA
            self._end_transaction()
            return
        self._send_next_unsent()

    def _on_data(self, reply: Reply, index: int) -> None:
        assert self._result is not None
        accepted = any(r is not None and r.is_positive for r in self._result.rcpts)
        if reply.code == 354 and not accepted:
            # RFC 2920 §3.1: every RCPT failed but DATA was accepted: send only the end
            self._out.append(b".\r\n")
            self._expect.append(("DATA_END_EMPTY", -1))
            self._state = S.DATA_END
            return
        if reply.code == 354:
            self._state = S.CONTENT
            self._line_start, self._tail = True, b""
            self._events.append(SendContent())
            return
        self._result.data = reply if accepted else None
        self._end_transaction()

    def _on_data_end(self, reply: Reply, index: int) -> None:
        assert self._result is not None
        if index >= 0:   # LMTP: this recipient's own reply (RFC 2033 §4.2)
            self._result.data_rcpts[index] = reply
            if any(kind == "DATA_END" for kind, _ in self._expect):
                return   # more recipients' replies to come
        self._result.data = reply
        self.transactions += 1
        self._done()

    def _on_auth(self, reply: Reply, index: int) -> None:
        mechanism = self._mechanism
        if reply.code == 334 and mechanism is not None:
            try:
                if self._held_initial is not None:
                    answer, self._held_initial = self._held_initial, None
                else:
                    challenge = base64.b64decode(reply.lines[0].strip(), validate=True)
                    answer = mechanism.respond(challenge)
                line = base64.b64encode(answer).decode("ascii")
            except (binascii.Error, ValueError, AuthAbort):
                line = "*"   # RFC 4954 §4: cancel; the server answers 501
            self._out.append(line.encode("ascii") + b"\r\n")
            self._expect.append(("AUTH", -1))
            return
        self._mechanism = self._held_initial = None
        self._state = S.READY
        if reply.code == 235:
            self.authenticated = True
            self._events.append(AuthSucceeded(reply))
        else:
            self._events.append(AuthFailed(reply))

    def _on_data_end_empty(self, reply: Reply, index: int) -> None:
        self._done()

    def _end_transaction(self) -> None:
        """The transaction stopped before its content: RSET if the server holds one."""
        assert self._result is not None
        if self._result.mail is not None and self._result.mail.is_positive:
            self._command("RSET", "RSET")
            self._state = S.RSET
        else:
            self._done()

    def _on_rset(self, reply: Reply, index: int) -> None:
        self._done()

    def _done(self) -> None:
        if self._expect:  # pipelined replies still to come (e.g. DATA after a failed MAIL)
            return
        result, self._result, self._tx = self._result, None, None
        self._state = S.READY
        self._events.append(TransactionDone(result))

    def _on_quit(self, reply: Reply, index: int) -> None:
        self._finish_closed(reply)
