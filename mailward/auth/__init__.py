"""SMTP AUTH (RFC 4954) backends: where passwords live and the SASL mechanisms.

The SMTP session sees three things, and nothing else of this package:

* :class:`AuthBackend` (built by :func:`mailward.auth.build.backend_from_config`): which
  mechanisms to announce in EHLO (:meth:`~AuthBackend.mechanisms`) and one
  :class:`AuthExchange` per AUTH command (:meth:`~AuthBackend.begin`).
* :class:`AuthExchange`: ``await step(response)`` with the client's decoded answer (the first
  call gets the initial response of the AUTH command, None when there was none; RFC 4954 §4
  "=" is an empty initial response, ``b""``).
* :class:`AuthStep`: what the session does next. ``challenge`` not None: send ``334
  base64(challenge)`` and call ``step`` again with the decoded answer; ``user`` not None:
  ``235 2.7.0``; ``failed``: ``535 5.7.8`` (``454 4.7.0`` when ``temporary``). ``reason`` is
  for the log line only and never holds a password or any other secret.

The session, not this package, handles ``*`` (cancel, RFC 4954 §4: 501 5.7.0), bad base64
(501 5.5.2), which mechanisms may be offered without TLS (:data:`PLAINTEXT_MECHANISMS`), and
the limits on attempts. An exchange never raises for what the client sends: malformed input
is a failed step. ``begin`` with a mechanism not in ``mechanisms()`` returns an exchange whose
first step fails ("mechanism not offered"); the session answers 504 5.5.4 before that.

Backends: :mod:`mailward.auth.users` (the users file: argon2id hashes and SCRAM-SHA-256
stored keys) and :mod:`mailward.auth.dovecot` (Dovecot's auth-client socket).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Mechanisms that send the password itself: the session offers them only over TLS
# (RFC 4954 §4 and §14 ask the server not to accept them on an unprotected connection).
PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})


@dataclass(frozen=True)
class AuthStep:
    """The next thing the session does in an AUTH exchange (see the module docstring)."""

    challenge: bytes | None = None   # not None: 334 + base64(challenge), then step() with the answer
    user: str | None = None          # not None: success, the authenticated identity (${auth_authen})
    authzid: str = ""                # the authorization identity the client asked for, when any
    failed: bool = False             # 535 5.7.8, or 454 4.7.0 when temporary
    temporary: bool = False          # the backend could not answer (Dovecot down, file unreadable)
    reason: str = ""                 # for the log line; never a password or a secret


def challenge(data: bytes) -> AuthStep:
    return AuthStep(challenge=data)


def success(user: str, authzid: str = "") -> AuthStep:
    return AuthStep(user=user, authzid=authzid)


def failure(reason: str, *, temporary: bool = False) -> AuthStep:
    return AuthStep(failed=True, temporary=temporary, reason=reason)


class AuthUnavailable(Exception):
    """A backend cannot answer now (its file is unreadable, Dovecot is down): a temporary failure."""


class AuthExchange(Protocol):
    async def step(self, response: bytes | None) -> AuthStep:
        """The next step given the client's decoded answer (first call: the initial response)."""
        ...


class AuthBackend(Protocol):
    def mechanisms(self, *, external_identity: str | None) -> list[str]:
        """Mechanism names for the EHLO AUTH keyword, in order of preference; EXTERNAL is among
        them only when ``external_identity`` is given (and configured)."""
        ...

    def begin(self, mechanism: str, *, external_identity: str | None = None, remote_addr: str = "",
              local_addr: str = "", secured: bool = True) -> AuthExchange:
        """A new exchange for one AUTH command. ``secured``: the connection is under TLS."""
        ...

    async def start(self) -> None:
        """Once, in the event loop that will use the backend, before serving (Dovecot connects
        and learns its mechanisms). Never raises: a backend that cannot start logs why and tries
        again when used."""
        ...

    async def close(self) -> None:
        ...


def printable(text: str, limit: int = 64) -> str:
    """A client's word for a log line: control characters, spaces and backslashes as \\xNN,
    cut at ``limit`` characters (a user name, never a password)."""
    out = "".join(ch if ch.isprintable() and ch not in " \\" else f"\\x{ord(ch):02x}" for ch in text[:limit])
    return out + ("..." if len(text) > limit else "")


def printable_text(text: str, limit: int = 120) -> str:
    """A peer's free text (an error message) for a log line: spaces kept, control characters
    and backslashes as \\xNN, cut at ``limit`` characters."""
    out = "".join(ch if ch == " " or (ch.isprintable() and ch != "\\") else f"\\x{ord(ch):02x}"
                  for ch in text[:limit])
    return out + ("..." if len(text) > limit else "")
