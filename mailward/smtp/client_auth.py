"""SMTP AUTH on the client side (RFC 4954): the SASL mechanisms PLAIN (RFC 4616) and LOGIN,
and the events the client core (:mod:`mailward.smtp.client`) gives for an AUTH exchange.

No I/O. A mechanism turns the server's challenges (already base64-decoded) into responses;
:meth:`mailward.smtp.client.ClientConnection.authenticate` sends ``AUTH``, answers every
``334`` with the mechanism's next response, and ends with :class:`AuthSucceeded` (``235``)
or :class:`AuthFailed` (any other reply, e.g. ``535 5.7.8``). A challenge that is not
base64, or one more than the mechanism expects, is answered with ``*`` (RFC 4954 §4: the
client cancels the exchange) and the server's reply to that is the failure.

* PLAIN sends ``authzid NUL authcid NUL password`` as the initial response (RFC 4954 §4),
  unless that would make the command longer than the 512 octets of an SMTP command line
  (RFC 5321 §4.5.3.1.4): then it waits for the empty ``334`` and sends it there. The
  authorization identity is sent only when it differs from the authentication identity;
  an empty one means "the same" (RFC 4616 §2).
* LOGIN answers the first challenge with the user name, the second with the password
  (the prompts' texts, "Username:"/"Password:", vary between servers and are not read).

Security: the password is only ever in the bytes the core sends. The mechanisms' ``repr``
leaves it out, so a mechanism in a log line or a traceback shows no secret; the events
carry only the server's reply.

:func:`choose` picks the mechanism: the first of the preferred list (sendmail's ``M:``
list of an ``AuthInfo:`` entry, or :data:`SUPPORTED`) that the server offers in its
``AUTH`` EHLO keyword and this module implements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailward.smtp.replies import Reply

SUPPORTED = ("PLAIN", "LOGIN")   # in the order tried when no list is given
MAX_COMMAND_LINE = 512            # octets with CRLF (RFC 5321 §4.5.3.1.4)


class AuthAbort(Exception):
    """The mechanism cannot answer this challenge: the core cancels with ``*``."""


@dataclass(frozen=True)
class AuthSucceeded:
    reply: Reply              # 235 (RFC 4954 §6)


@dataclass(frozen=True)
class AuthFailed:
    reply: Reply              # 535, 534, 538, 454, 501 after a cancel, 504 ...


@dataclass
class Plain:
    """PLAIN (RFC 4616): one message, sent as the initial response."""
    authcid: str
    password: str = field(repr=False)
    authzid: str = ""
    name: str = field(default="PLAIN", init=False)

    def initial_response(self) -> bytes | None:
        authzid = self.authzid if self.authzid and self.authzid != self.authcid else ""
        return b"\0".join(s.encode("utf-8") for s in (authzid, self.authcid, self.password))

    def respond(self, challenge: bytes) -> bytes:
        raise AuthAbort("PLAIN has nothing more to say")


@dataclass
class Login:
    """LOGIN (the draft-murchison-sasl-login mechanism): user name, then password."""
    authcid: str
    password: str = field(repr=False)
    name: str = field(default="LOGIN", init=False)
    _step: int = field(default=0, repr=False)

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        self._step += 1
        if self._step == 1:
            return self.authcid.encode("utf-8")
        if self._step == 2:
            return self.password.encode("utf-8")
        raise AuthAbort("LOGIN was asked a third question")


def offered(auth_keyword: str) -> tuple[str, ...]:
    """The mechanisms of an ``AUTH`` EHLO keyword's parameters, upper-cased (RFC 4954 §3)."""
    return tuple(m.upper() for m in auth_keyword.split())


def choose(preferred: tuple[str, ...], auth_keyword: str) -> str | None:
    """The first mechanism of ``preferred`` (default :data:`SUPPORTED`) that the server offers
    and this module implements; None when there is none."""
    server = set(offered(auth_keyword))
    for name in preferred or SUPPORTED:
        name = name.upper()
        if name in SUPPORTED and name in server:
            return name
    return None


def mechanism(name: str, authcid: str, password: str, authzid: str = ""):
    """A fresh mechanism object for one exchange (LOGIN keeps its step)."""
    name = name.upper()
    if name == "PLAIN":
        return Plain(authcid, password, authzid)
    if name == "LOGIN":
        return Login(authcid, password)
    raise ValueError(f"AUTH mechanism {name} is not implemented (only {', '.join(SUPPORTED)})")
