"""SMTP AUTH (RFC 4954) and submission (RFC 6409, RFC 8314) in the server core. No I/O.

:class:`AuthCommands` is mixed into :class:`mailward.smtp.server.ServerConnection`: it
carries out the AUTH command and the exchange that follows, and says what a submission
listener requires before MAIL. The SASL mechanisms themselves run outside the core: the core
emits :class:`AuthRequested` (the mechanism and the decoded initial response) and
:class:`AuthResponse` (each decoded answer to a 334) and pauses; the I/O layer runs the
backend's exchange and answers with :meth:`AuthCommands.auth_challenge` (``334`` + base64) or
:meth:`AuthCommands.auth_result` (``235``, ``535``, ``454``, or ``421`` and close).

What the client is told (RFC 4954 §4, §6; texts as sendmail 8.17 words them where it has one):

* AUTH before EHLO: ``503 5.5.1 Polite people say HELO first``; inside a transaction:
  ``503 5.5.0 AUTH not permitted during a mail transaction``; after a successful AUTH:
  ``503 5.5.1 Already authenticated``; the server has no AUTH: ``503 5.3.3 AUTH not available``.
* In clear (AUTH is offered only under TLS): ``538 5.7.11 Encryption required for requested
  authentication mechanism``; on a submission listener ``530 5.7.0 Must issue a STARTTLS
  command first`` (RFC 3207 §4), as for MAIL there.
* A mechanism not offered (or a name that is not RFC 4422 §3.1's ASCII): ``504 5.5.4
  Unrecognized authentication type``; an AUTH line over ``AUTH_LINE_LIMIT``: ``500 5.5.6
  Authentication Exchange line is too long``; an initial response
  or answer that is not base64: ``501 5.5.2 Cannot Base64-decode Client responses``; ``*``:
  ``501 5.0.0 AUTH aborted``.
* Submission (``require_auth``): MAIL before AUTH gets ``530 5.7.0 Authentication required``.

SECURITY
    Every line of the exchange is the client's; it leaves the core only decoded, in an event,
    and nobody logs it (it may hold a password). Lines of an AUTH exchange may be longer than
    commands: up to ``AUTH_LINE_LIMIT`` (RFC 4954 §4: 12288 octets); longer ones are answered
    ``500 5.5.6`` and dropped as they arrive. TLS starting (``tls_started``) forgets the
    authentication, as it forgets everything else (RFC 3207 §4.2). A refused AUTH is counted
    against ``max_bad_commands`` only when it was the client's mistake (syntax, sequence, bad
    base64), not for wrong credentials: those are bounded by the I/O layer's failure delay and
    per-address limit.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from mailward.smtp.errors import LocalProtocolError
from mailward.smtp.replies import Reply
from mailward.smtp.server_state import ServerState

AUTH_LINE_LIMIT = 12288   # RFC 4954 §4: AUTH command and responses, CRLF included
_MECHANISM_NAME = re.compile(r"[A-Za-z0-9_-]{1,20}")   # RFC 4422 §3.1 (case-insensitive on the wire)

AUTH_NOT_AVAILABLE = Reply(503, "5.3.3", "AUTH not available")
NEED_EHLO = Reply(503, "5.5.1", "AUTH needs EHLO first (RFC 4954 §3)")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
MUST_STARTTLS = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
BAD_BASE64 = Reply(501, "5.5.2", "Cannot Base64-decode Client responses")
AUTH_ABORTED = Reply(501, "5.0.0", "AUTH aborted")
AUTH_SYNTAX = Reply(501, "5.5.2", "Syntax error: AUTH mechanism [initial-response]")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication Exchange line is too long")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_TEMPORARY = Reply(454, "4.7.0", "Temporary authentication failure")


@dataclass(frozen=True)
class AuthRequested:  # decision: auth_challenge() or auth_result()
    """AUTH ``mechanism`` (upper case, one the core offered); ``initial``: the decoded initial
    response, ``b""`` for "=", None when there was none (RFC 4954 §4)."""
    mechanism: str
    initial: bytes | None


@dataclass(frozen=True)
class AuthResponse:  # decision: auth_challenge() or auth_result()
    """The client's decoded answer to the last 334 challenge."""
    data: bytes


@dataclass(frozen=True)
class AuthCancelled:
    """The exchange ended without a result (``*``, bad base64, TLS, close); the core has
    answered. The I/O layer drops the backend's exchange."""
    reason: str


def decode(text: str) -> bytes | None:
    """Base64 as RFC 4954 §4 sends it ("=" is empty); None when it is not base64."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


class AuthCommands:
    """The AUTH part of the server core; see the module docstring. Expects the attributes
    ServerConnection sets: ``auth_available`` (the server has a backend), ``auth_mechanisms``
    (offered now; set by the I/O layer once TLS is up), ``require_tls`` and ``require_auth``
    (a submission listener), ``authenticated`` (the user, once AUTH succeeded)."""

    auth_available = False
    auth_mechanisms: tuple[str, ...] = ()
    require_tls = False
    require_auth = False
    authenticated: str | None = None

    # ---- what the I/O layer calls --------------------------------------------------------
    def auth_challenge(self, data: bytes) -> None:
        """Send ``334`` with ``data`` base64-encoded; the next line is the client's answer."""
        self._take_auth_pending()
        self._send(Reply(334, "", base64.b64encode(data).decode("ascii")))

    def auth_result(self, reply: Reply, user: str | None = None, *, close: bool = False) -> None:
        """End the exchange with ``reply`` (235 with ``user``, 535, 454); ``close``: send it
        and close (421 after too many failures)."""
        self._take_auth_pending()
        if close:
            self._close(reply, "too many authentication failures")
            return
        self._enter("AUTH ended")
        if user is not None and reply.code == 235:
            self.authenticated = user
        self._send(reply)

    def _take_auth_pending(self) -> None:
        pending, self._pending = self._pending, None
        if not isinstance(pending, (AuthRequested, AuthResponse)):
            self._pending = pending
            raise LocalProtocolError(f"no AUTH step is pending (state {self._state})")

    # ---- the rules --------------------------------------------------------------------
    def _line_limit(self) -> int:
        if self._auth_line_ahead():
            return max(AUTH_LINE_LIMIT, self.limits.max_command_line)
        return self.limits.max_command_line

    def _auth_line_ahead(self) -> bool:
        """The unread input starts an AUTH command (or the exchange is under way)."""
        return self._state is ServerState.AUTH or (
            self.auth_available and self._inbuf[self._pos: self._pos + 5].upper() == b"AUTH ")

    def _mail_refusal(self) -> Reply | None:
        """What a submission listener says to MAIL before STARTTLS or AUTH (RFC 6409 §3.3)."""
        if self.require_tls and not self.tls_active:
            return MUST_STARTTLS
        if self.require_auth and self.authenticated is None:
            return AUTH_REQUIRED
        return None

    def _ehlo_auth_keyword(self) -> list[str]:
        """``AUTH mech ...`` under TLS only (never in clear), when a mechanism is offered."""
        if self.tls_active and self.auth_available and self.auth_mechanisms:
            return ["AUTH " + " ".join(self.auth_mechanisms)]
        return []

    def _auth_forget(self) -> None:
        self.authenticated = None
        self.auth_mechanisms = ()

    # ---- the command and its exchange ---------------------------------------------------
    def _cmd_auth(self, arg: str) -> None:
        if self.authenticated is not None:
            return self._error("AUTH", ALREADY_AUTHENTICATED)
        if self._out_of_sequence("AUTH"):
            return
        if not self.auth_available:
            return self._error("AUTH", AUTH_NOT_AVAILABLE)
        if not self.extended:   # the AUTH extension exists only for a client that said EHLO
            return self._error("AUTH", NEED_EHLO)
        if not self.tls_active:
            return self._error("AUTH", MUST_STARTTLS if self.require_tls else ENCRYPTION_REQUIRED)
        words = arg.split()
        if not 1 <= len(words) <= 2:
            return self._error("AUTH", AUTH_SYNTAX)
        mechanism = words[0].upper()
        # RFC 4422 §3.1: 1 to 20 of A-Z 0-9 - _ ; str.upper() would turn a dotless i into I
        if not _MECHANISM_NAME.fullmatch(words[0]) or mechanism not in self.auth_mechanisms:
            return self._error("AUTH", UNKNOWN_MECHANISM)
        initial = None
        if len(words) == 2:
            initial = decode(words[1])
            if initial is None:
                return self._error("AUTH", BAD_BASE64)
        self._enter("AUTH started")
        self._decide(AuthRequested(mechanism, initial))

    def _auth_line(self, line: str) -> None:
        """A line inside the exchange: the answer to our 334."""
        if line == "*":   # RFC 4954 §4: the client cancels
            self._enter("AUTH ended")
            self._send(AUTH_ABORTED)
            self._events.append(AuthCancelled("cancelled by the client"))
            return
        data = decode(line)
        if data is None:
            self._enter("AUTH ended")
            self._events.append(AuthCancelled("a response that is not base64"))
            self._error("AUTH", BAD_BASE64)
            return
        self._decide(AuthResponse(data))


def without_credentials(data: bytes) -> bytes:
    """Client bytes for a log line with everything from an AUTH command's initial response on
    left out (the response lines that follow it too): pipelined input may hold credentials."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        line = data[start:end]
        if line[:4].upper() == b"AUTH" and (len(line) == 4 or line[4:5] in b" \t\r\n"):
            words = line[4:].split(None, 1)
            kept = data[:start] + line[:4] + (b" " + words[0][:20] if words else b"")
            return kept + b" [rest not logged]"
        start = end
    return data


def xtext_decode(value: str) -> str | None:
    """RFC 3461 §4 xtext (``+XX`` hex escapes) to text; None when malformed."""
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "+":
            code = value[i + 1: i + 3]
            if len(code) != 2 or any(c not in "0123456789ABCDEF" for c in code):
                return None
            out.append(chr(int(code, 16)))
            i += 3
            continue
        out.append(ch)
        i += 1
    return "".join(out)
