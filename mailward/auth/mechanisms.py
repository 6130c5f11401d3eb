"""The SASL mechanisms a local backend runs: PLAIN, LOGIN, SCRAM-SHA-256 and EXTERNAL.

Each mechanism is a small state machine behind :class:`~mailward.auth.AuthExchange`: it parses
what the client sent and decides; the only thing it waits for is its :class:`Credentials`
(the users file checks an argon2id hash in a thread). Nothing here touches a socket.

* PLAIN (RFC 4616 §2): ``[authzid] NUL authcid NUL passwd`` in UTF-8. Without an initial
  response the server sends an empty challenge. An authzid other than empty or the authcid
  is refused unless :meth:`Credentials.may_act_as` allows it (proxy authorization).
* LOGIN (draft-murchison-sasl-login, the de-facto form): challenges ``Username:`` and
  ``Password:``; an initial response is taken as the user name.
* SCRAM-SHA-256 (RFC 7677, RFC 5802) through the ``scramp`` library, with the stored
  credentials (salt, iteration count, StoredKey, ServerKey) of the users file. An unknown user
  gets a decoy salt derived from the name with a key random per process, so the exchange
  looks the same as for a known user and fails only at the proof (RFC 5802 §5.1, "the server
  SHOULD ... continue as if it had found the user"). SMTP has no "additional data with
  success" (RFC 4954 §4), so the server-final message ``v=...`` is sent as a 334 challenge and
  the client's empty answer completes the exchange. scramp refuses a GS2 authzid (``n,a=x,``)
  and channel binding (-PLUS) is not offered: both fail the exchange.
* EXTERNAL (RFC 4422 Appendix A): succeeds as the identity the session established (the
  client certificate), when the client asks for no authzid or for exactly that identity, and
  — when the credentials can tell (``user_exists``, the users file) — that identity is a user:
  a certificate that verified proves a name, and tls.ca_file may trust CAs (public roots)
  that sign names for anyone.

Failure behaviour: anything malformed, an unknown user, a wrong password or proof is a failed
:class:`~mailward.auth.AuthStep` (535); :class:`~mailward.auth.AuthUnavailable` from the
credentials is a temporary failure (454). No exception leaves :meth:`step`: an unexpected one
is logged with its traceback and fails the exchange. ``reason`` names the user (escaped,
shortened) but never holds the password.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Callable, Protocol

from scramp import ScramException, ScramMechanism
from scramp.utils import ServerError

from mailward.auth import AuthStep, AuthUnavailable, challenge, failure, printable, printable_text, success

log = logging.getLogger("mailward.auth")

SCRAM_SHA_256 = "SCRAM-SHA-256"
LOCAL_MECHANISMS = ("SCRAM-SHA-256", "PLAIN", "LOGIN", "EXTERNAL")
ScramKeys = tuple[bytes, bytes, bytes, int]   # salt, StoredKey, ServerKey, iteration count (scramp's auth_fn)


class Credentials(Protocol):
    async def check_password(self, authcid: str, password: str) -> bool:
        """True when ``password`` is ``authcid``'s; False otherwise, unknown users included (in
        the same time). Raises AuthUnavailable when it cannot tell."""
        ...

    def scram_keys(self, authcid: str) -> ScramKeys | None:
        """The SCRAM-SHA-256 stored credentials of ``authcid``, or None (unknown, or none stored)."""
        ...

    def may_act_as(self, authcid: str, authzid: str) -> bool:
        """Whether ``authcid`` may act as another identity ``authzid`` (proxy authorization)."""
        ...


class Exchange:
    """Common frame: one step at a time, never raises, finished after success or failure."""

    mechanism = ""

    def __init__(self) -> None:
        self._done = False

    async def step(self, response: bytes | None) -> AuthStep:
        if self._done:
            return failure(f"{self.mechanism}: exchange already finished")
        try:
            result = await self._step(response)
        except AuthUnavailable as err:
            result = failure(f"{self.mechanism}: {err}", temporary=True)
        except Exception:  # a bug here must cost one AUTH command, not the session
            log.exception("AUTH=%s: unexpected error", self.mechanism)
            result = failure(f"{self.mechanism}: internal error")
        if result.challenge is None:
            self._done = True
        return result

    async def _step(self, response: bytes | None) -> AuthStep:
        raise NotImplementedError


class Refused(Exchange):
    """An exchange that fails at once (a mechanism that is not offered)."""

    def __init__(self, mechanism: str, reason: str) -> None:
        super().__init__()
        self.mechanism, self._reason = mechanism, reason

    async def _step(self, response: bytes | None) -> AuthStep:
        return failure(f"{printable(self.mechanism, 20)}: {self._reason}")


def _utf8(data: bytes, what: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed(f"{what} is not UTF-8") from None
    if "\0" in text:
        raise _Malformed(f"{what} holds a NUL")
    return text


class _Malformed(Exception):
    pass


def parse_plain(message: bytes) -> tuple[str, str, str]:
    """(authzid, authcid, passwd) of a PLAIN message (RFC 4616 §2); raises ValueError saying
    what is wrong (never quoting the password)."""
    parts = message.split(b"\0")
    if len(parts) != 3:
        raise ValueError(f"{len(parts) - 1} NUL separators, expected 2")
    try:
        authzid, authcid, passwd = (_utf8(p, name) for p, name in zip(parts, ("authzid", "authcid", "password")))
    except _Malformed as err:
        raise ValueError(str(err)) from None
    if not authcid:
        raise ValueError("empty authcid")
    if not passwd:
        raise ValueError(f"authcid={printable(authcid)}: empty password")
    return authzid, authcid, passwd


async def _verify(creds: Credentials, mech: str, authcid: str, password: str, authzid: str = "") -> AuthStep:
    who = f"authcid={printable(authcid)}"
    if not await creds.check_password(authcid, password):
        return failure(f"{mech}: {who}: unknown user or wrong password")
    if authzid and authzid != authcid and not creds.may_act_as(authcid, authzid):
        return failure(f"{mech}: {who}: may not act as authzid={printable(authzid)}")
    return success(authcid, authzid)


class Plain(Exchange):
    mechanism = "PLAIN"

    def __init__(self, creds: Credentials) -> None:
        super().__init__()
        self._creds, self._asked = creds, False

    async def _step(self, response: bytes | None) -> AuthStep:
        if response is None:
            if self._asked:
                return failure("PLAIN: no response")
            self._asked = True
            return challenge(b"")  # RFC 4616 §2: the client sends its message after an empty challenge
        try:
            authzid, authcid, passwd = parse_plain(response)
        except ValueError as err:
            return failure(f"PLAIN: malformed message: {err}")
        return await _verify(self._creds, "PLAIN", authcid, passwd, authzid)


class Login(Exchange):
    mechanism = "LOGIN"

    def __init__(self, creds: Credentials) -> None:
        super().__init__()
        self._creds, self._state, self._user = creds, "start", b""

    async def _step(self, response: bytes | None) -> AuthStep:
        if self._state == "start" and response is None:
            self._state = "username"
            return challenge(b"Username:")
        if self._state in ("start", "username"):   # an initial response, or the answer to Username:
            self._user, self._state = response or b"", "password"
            return challenge(b"Password:")
        try:
            authcid = _utf8(self._user, "user name")
            password = _utf8(response or b"", "password")
        except _Malformed as err:
            return failure(f"LOGIN: {err}")
        if not authcid:
            return failure("LOGIN: empty user name")
        if not password:
            return failure(f"LOGIN: authcid={printable(authcid)}: empty password")
        return await _verify(self._creds, "LOGIN", authcid, password)


class External(Exchange):
    mechanism = "EXTERNAL"

    def __init__(self, identity: str | None, known: Callable[[str], bool] | None = None) -> None:
        """``known``: whether an identity is an account of the backend (None: not checked)."""
        super().__init__()
        self._identity, self._asked, self._known = identity, False, known

    async def _step(self, response: bytes | None) -> AuthStep:
        if not self._identity:
            return failure("EXTERNAL: no identity from a client certificate")
        if self._known is not None and not self._known(self._identity):
            # a CA vouches for a name, not for an account (tls.ca_file may hold public roots)
            return failure(f"EXTERNAL: identity={printable(self._identity)}: unknown user")
        if response is None:
            if self._asked:
                return failure("EXTERNAL: no response")
            self._asked = True
            return challenge(b"")
        try:
            authzid = _utf8(response, "authzid")
        except _Malformed as err:
            return failure(f"EXTERNAL: {err}")
        if authzid and authzid != self._identity:   # RFC 4422 Appendix A.1
            return failure(f"EXTERNAL: identity={printable(self._identity)} may not act as "
                           f"authzid={printable(authzid)}")
        return success(self._identity, authzid)


_DECOY_KEY = secrets.token_bytes(32)


def decoy_keys(authcid: str, iterations: int) -> ScramKeys:
    """Stored credentials for a user who has none: the salt is the same on every attempt for a
    name (an observer cannot tell a decoy by a changing salt) and no password matches the keys."""
    digest = hmac.new(_DECOY_KEY, authcid.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return digest, secrets.token_bytes(32), secrets.token_bytes(32), iterations


class Scram(Exchange):
    mechanism = SCRAM_SHA_256

    def __init__(self, creds: Credentials, *, decoy_iterations: int = 4096) -> None:
        super().__init__()
        self._creds, self._decoy_iterations = creds, decoy_iterations
        self._server = ScramMechanism(SCRAM_SHA_256).make_server(self._lookup)
        self._stage, self._authcid, self._known = 0, "", False

    def _lookup(self, authcid: str) -> ScramKeys:
        self._authcid = authcid
        keys = self._creds.scram_keys(authcid)
        self._known = keys is not None
        return keys if keys is not None else decoy_keys(authcid, self._decoy_iterations)

    def _who(self) -> str:
        return f"authcid={printable(self._authcid)}" if self._authcid else "no authcid"

    async def _step(self, response: bytes | None) -> AuthStep:
        mech = SCRAM_SHA_256
        if self._stage == 0:
            if response is None:
                self._stage = 1
                return challenge(b"")   # RFC 4422 §5: the client sends client-first after an empty challenge
            self._stage = 1
        if self._stage == 1:
            if response is None:
                return failure(f"{mech}: no client-first message")
            try:
                self._server.set_client_first(_utf8(response, "client-first message"))
                server_first = self._server.get_server_first()
            except ScramException as err:
                if err.server_error is ServerError.NO_RESOURCES:   # scram_keys raised AuthUnavailable
                    return failure(f"{mech}: {self._who()}: credentials unavailable", temporary=True)
                return failure(f"{mech}: {self._who()}: bad client-first message: {_first_line(err)}")
            except _Malformed as err:
                return failure(f"{mech}: {err}")
            self._stage = 2
            return challenge(server_first.encode())
        if self._stage == 2:
            try:
                self._server.set_client_final(_utf8(response or b"", "client-final message"))
                server_final = self._server.get_server_final()
            except ScramException as err:
                if err.server_error is ServerError.INVALID_PROOF:
                    what = "wrong password" if self._known else "unknown user (or no SCRAM keys stored)"
                    return failure(f"{mech}: {self._who()}: {what}")
                return failure(f"{mech}: {self._who()}: bad client-final message: {_first_line(err)}")
            except _Malformed as err:
                return failure(f"{mech}: {self._who()}: {err}")
            if not self._known:  # cannot happen: no password matches decoy keys
                return failure(f"{mech}: {self._who()}: unknown user")
            self._stage = 3
            return challenge(server_final.encode())
        # stage 3: the client's answer to server-final must be empty (RFC 4954 §4)
        if response:
            return failure(f"{mech}: {self._who()}: data after the server-final message")
        return success(self._authcid)


def _first_line(err: Exception) -> str:
    return printable_text(str(err).splitlines()[0]) if str(err) else type(err).__name__


def local_exchange(mechanism: str, creds: Credentials, offered: list[str], *,
                   external_identity: str | None = None, decoy_iterations: int = 4096) -> Exchange:
    """The exchange for ``mechanism`` (upper-cased) if it is among ``offered``."""
    mech = mechanism.upper()
    if mech not in offered:
        return Refused(mech, "mechanism not offered")
    if mech == "PLAIN":
        return Plain(creds)
    if mech == "LOGIN":
        return Login(creds)
    if mech == SCRAM_SHA_256:
        return Scram(creds, decoy_iterations=decoy_iterations)
    if mech == "EXTERNAL":
        return External(external_identity, getattr(creds, "user_exists", None))
    return Refused(mech, "mechanism not implemented")
