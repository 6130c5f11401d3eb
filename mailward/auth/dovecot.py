"""SMTP AUTH through Dovecot: a client of Dovecot's authentication protocol (version 1).

Dovecot's auth service answers on a UNIX socket (a ``unix_listener`` of ``service auth``)
in the line protocol of "Dovecot Authentication Protocol" (Dovecot's developer
documentation), the protocol Postfix and Exim use for "Dovecot SASL":

* handshake: the client sends ``VERSION 1 2`` and ``CPID <pid>``; the server sends
  ``VERSION``, one ``MECH <name> [flags]`` per mechanism, ``SPID``, ``CUID``, ``COOKIE`` and
  ``DONE``. A major version other than 1 is refused.
* per exchange, with an id unique on the connection: ``AUTH <id> <mech> service=smtp
  [secured] [valid-client-cert] [lip=] [rip=] [resp=<base64>]`` (``secured``: under TLS;
  ``valid-client-cert``: the session accepted a client certificate; ``resp`` last, and
  ``resp=`` empty is an empty initial response from minor version 2 on), then ``CONT <id> <base64>`` both ways, ending in
  ``OK <id> user=...`` or ``FAIL <id> [reason=...] [temp] [authz] [code=...]``. Fields use
  Dovecot's tab-escaping (``\\x01`` then ``0 1 t r n``). Every field is TAB-separated.

One connection is shared by every exchange of the process; replies are matched by id. An id
Dovecot never answered (after our timeout) is forgotten and a late answer ignored.

A line longer than Dovecot takes (16384 octets) is not sent: Dovecot would drop the
connection, and every exchange on it; that exchange fails instead.

Failure behaviour: cannot connect, a handshake that fails, the connection lost while an
exchange waits, no answer within ``timeout`` seconds, or a ``FAIL`` with ``temp``: the step
is a temporary failure (454 4.7.0) and the next exchange connects again. A mechanism
Dovecot did not announce is never sent (Dovecot would drop the connection): the exchange
fails. :meth:`DovecotBackend.mechanisms` offers the configured mechanisms Dovecot announced
at the last handshake (none before the first one; ``private`` mechanisms never). EXTERNAL is
not sent to Dovecot: it is decided here from the certificate identity the session gives
(:mod:`mailward.auth.mechanisms`). Connection state changes are logged once each, not per
exchange. Dovecot answers a failure after its ``auth_failure_delay`` (2 s by default) and
delays clients that failed before (its auth penalty, up to 15 s by remote address): keep
``auth.timeout`` above that.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from dataclasses import dataclass, field

from mailward.auth import AuthBackend, AuthExchange, AuthStep, challenge, failure, printable, printable_text, success
from mailward.auth.mechanisms import Exchange, External, Refused

log = logging.getLogger("mailward.auth")

MAX_LINE = 65536               # longest line read from Dovecot
MAX_SEND = 16384 - 256         # Dovecot drops a client whose line exceeds 16384 (AUTH_CLIENT_MAX_LINE_LENGTH)
_PID_SPAN = 1 << 22            # Linux pid_max ceiling: CPIDs pid + k*_PID_SPAN never meet a real pid
_cpids_in_use: set[int] = set()


class DovecotUnavailable(Exception):
    """Dovecot cannot be asked now (no socket, no handshake, connection lost, timeout)."""


def escape(value: str) -> str:
    """Dovecot's tab-escaping of one field."""
    return (value.replace("\x01", "\x011").replace("\0", "\x010").replace("\t", "\x01t")
            .replace("\r", "\x01r").replace("\n", "\x01n"))


def unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\x01" and i + 1 < len(value):
            out.append({"0": "\0", "1": "\x01", "t": "\t", "r": "\r", "n": "\n"}.get(value[i + 1], value[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_params(fields: list[str]) -> dict[str, str]:
    """Optional parameters: ``name=value`` or a bare boolean name (value "")."""
    params = {}
    for item in fields:
        name, _, value = item.partition("=")
        params[name] = unescape(value)
    return params


@dataclass
class Handshake:
    """What the server said before DONE."""

    major: int = 0
    minor: int = 0
    mechanisms: dict[str, set[str]] = field(default_factory=dict)   # name -> flags (plaintext, private, ...)
    spid: str = ""


def parse_handshake_line(line: str, hs: Handshake) -> bool:
    """Take one server handshake line into ``hs``; True at DONE. Raises DovecotUnavailable."""
    parts = line.split("\t")
    if parts[0] == "VERSION":
        try:
            hs.major, hs.minor = int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            raise DovecotUnavailable(f"bad VERSION line {printable(line)}") from None
        if hs.major != 1:
            raise DovecotUnavailable(f"protocol version {hs.major}.{hs.minor}; mailward speaks 1.x")
    elif parts[0] == "MECH" and len(parts) > 1:
        hs.mechanisms[parts[1].upper()] = set(parts[2:])
    elif parts[0] == "SPID" and len(parts) > 1:
        hs.spid = parts[1]
    elif parts[0] == "DONE":
        if hs.major != 1:
            raise DovecotUnavailable("DONE before VERSION")
        return True
    return False   # CUID, COOKIE and anything newer: not needed by an auth client


class DovecotConnection:
    """The one connection to the auth socket; requests are matched by id."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self.handshake: Handshake | None = None
        self.known_mechanisms: dict[str, set[str]] = {}   # of the last handshake, kept while disconnected
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self._lock = asyncio.Lock()
        self._cpid = 0
        self._last_error = ""

    @property
    def connected(self) -> bool:
        return self._writer is not None and self.handshake is not None

    async def ensure(self) -> None:
        """Connect and read the handshake unless connected. Raises DovecotUnavailable."""
        if self.connected:
            return
        async with self._lock:
            if self.connected:
                return
            try:
                await asyncio.wait_for(self._connect(), self.timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError,
                    DovecotUnavailable) as err:
                await self._drop()
                why = _why(err)
                if why != self._last_error:
                    log.warning("dovecot auth %s: %s", self.path, why)
                    self._last_error = why
                raise DovecotUnavailable(why) from None
            if self._last_error:
                log.info("dovecot auth %s: connected again", self.path)
            self._last_error = ""

    async def _connect(self) -> None:
        reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_LINE)
        self._reader, self._writer = reader, writer
        self._cpid = _take_cpid()
        writer.write(f"VERSION\t1\t2\nCPID\t{self._cpid}\n".encode())
        hs = Handshake()
        while True:
            raw = await reader.readline()
            if not raw.endswith(b"\n"):
                raise DovecotUnavailable("connection closed during the handshake")
            if parse_handshake_line(raw.decode("utf-8", "replace").rstrip("\r\n"), hs):
                break
        self.handshake, self.known_mechanisms = hs, dict(hs.mechanisms)
        self._task = asyncio.get_running_loop().create_task(self._read_replies())

    async def _read_replies(self) -> None:
        reader = self._reader
        try:
            while True:
                raw = await reader.readline()
                if not raw.endswith(b"\n"):
                    break
                parts = raw.decode("utf-8", "replace").rstrip("\r\n").split("\t")
                if len(parts) < 2 or parts[0] not in ("OK", "CONT", "FAIL"):
                    continue   # unknown commands are ignored (the protocol allows new ones)
                try:
                    future = self._pending.pop(int(parts[1]), None)
                except ValueError:
                    continue
                if future is not None and not future.done():
                    future.set_result(parts)
        except (OSError, ValueError):
            pass
        if self._last_error != "connection lost":
            log.warning("dovecot auth %s: connection lost", self.path)
            self._last_error = "connection lost"
        self._task = None
        await self._drop()

    async def request(self, line_fields: list[str], request_id: int) -> list[str]:
        """Send one line and wait for the reply to ``request_id``. Raises DovecotUnavailable."""
        if not self.connected:
            raise DovecotUnavailable("not connected")
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(("\t".join(line_fields) + "\n").encode())
            return await asyncio.wait_for(future, self.timeout)
        except asyncio.TimeoutError:
            raise DovecotUnavailable(f"no answer within {self.timeout:g} s") from None
        except (OSError, ConnectionError) as err:
            raise DovecotUnavailable(_why(err)) from None
        finally:
            if self._pending.get(request_id) is future:
                del self._pending[request_id]

    def new_id(self) -> int:
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        return self._next_id

    async def _drop(self) -> None:
        writer, self._writer, self._reader, self.handshake = self._writer, None, None, None
        _cpids_in_use.discard(self._cpid)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("connection to Dovecot lost"))
        self._pending.clear()
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ConnectionError):
                pass

    async def close(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._last_error = "closed"
        await self._drop()


def _take_cpid() -> int:
    """A client pid Dovecot has not seen on another open connection (it refuses a duplicate)."""
    k = 0
    while os.getpid() + k * _PID_SPAN in _cpids_in_use and k < 1000:
        k += 1
    cpid = os.getpid() + k * _PID_SPAN
    _cpids_in_use.add(cpid)
    return cpid


def _why(err: BaseException) -> str:
    if isinstance(err, asyncio.TimeoutError):
        return "no answer (timeout)"
    if isinstance(err, OSError) and err.strerror:
        return f"cannot connect: {err.strerror}"
    return str(err) or type(err).__name__


class DovecotExchange(Exchange):
    """One AUTH command carried to Dovecot."""

    def __init__(self, conn: DovecotConnection, mechanism: str, params: list[str]) -> None:
        super().__init__()
        self.mechanism = mechanism
        self._conn, self._params, self._id = conn, params, 0

    async def _step(self, response: bytes | None) -> AuthStep:
        mech = self.mechanism
        try:
            if self._id == 0:
                await self._conn.ensure()
                hs = self._conn.handshake
                if hs is None or mech not in hs.mechanisms:
                    return failure(f"{mech}: Dovecot does not offer this mechanism")
                self._id = self._conn.new_id()
                fields = ["AUTH", str(self._id), mech, *self._params]
                if response is not None:
                    fields.append("resp=" + base64.b64encode(response).decode())   # resp must come last
            else:
                fields = ["CONT", str(self._id), base64.b64encode(response or b"").decode()]
            if sum(len(f) + 1 for f in fields) > MAX_SEND:   # would cost every exchange on the connection
                return failure(f"{mech}: response too long for Dovecot ({len(response or b'')} octets)")
            reply = await self._conn.request(fields, self._id)
        except DovecotUnavailable as err:
            return failure(f"{mech}: Dovecot: {err}", temporary=True)
        return _reply_step(mech, reply)


def _reply_step(mech: str, reply: list[str]) -> AuthStep:
    kind = reply[0]
    if kind == "CONT":
        try:
            return challenge(base64.b64decode(reply[2] if len(reply) > 2 else "", validate=True))
        except (binascii.Error, ValueError):
            return failure(f"{mech}: Dovecot sent a CONT that is not base64", temporary=True)
    params = parse_params(reply[2:])
    user = params.get("user", "")
    if kind == "OK":
        if not user:
            return failure(f"{mech}: Dovecot said OK without user=", temporary=True)
        return success(user)
    who = f"user={printable(user)}: " if user else ""
    reason = params.get("reason", "")
    code = params.get("code", "")
    temporary = "temp" in params or code == "temp_fail"
    what = "authorization failed" if "authz" in params or code == "authz_fail" else (
        "temporary failure" if temporary else "authentication failed")
    detail = "; ".join(x for x in (printable_text(reason) if reason else "", f"code={printable(code, 40)}"
                                   if code else "") if x)
    return failure(f"{mech}: Dovecot: {who}{what}" + (f" ({detail})" if detail else ""), temporary=temporary)


class DovecotBackend(AuthBackend):
    """AuthBackend asking Dovecot (see the module docstring)."""

    def __init__(self, socket_path, *, mechanisms: tuple[str, ...] | list[str] = ("SCRAM-SHA-256", "PLAIN", "LOGIN"),
                 timeout: float = 30.0, service: str = "smtp") -> None:
        if any(ch in service for ch in "\t\r\n\x01") or not service:
            raise ValueError(f"service {service!r}: a non-empty word without tabs or line ends")
        self.socket_path = str(socket_path)
        self.service = service
        self._mechanisms = [m.upper() for m in mechanisms]
        self._conn = DovecotConnection(self.socket_path, timeout)
        self._connecting: asyncio.Task | None = None

    def mechanisms(self, *, external_identity: str | None) -> list[str]:
        if self._conn.handshake is None:
            self._connect_soon()
        offered = self._conn.known_mechanisms
        out = []
        for mech in self._mechanisms:
            if mech == "EXTERNAL":
                if external_identity:
                    out.append(mech)
            elif mech in offered and "private" not in offered[mech]:
                out.append(mech)
        return out

    def _connect_soon(self) -> None:
        """Reconnect in the background (mechanisms() is not async), one attempt at a time."""
        if self._connecting is not None and not self._connecting.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._connecting = loop.create_task(self._try_connect())

    async def _try_connect(self) -> None:
        try:
            await self._conn.ensure()
        except DovecotUnavailable:
            pass   # logged by the connection; the next exchange tries again

    def begin(self, mechanism: str, *, external_identity: str | None = None, remote_addr: str = "",
              local_addr: str = "", secured: bool = True) -> AuthExchange:
        mech = mechanism.upper()
        if mech not in self._mechanisms:
            return Refused(mech, "mechanism not offered")
        if mech == "EXTERNAL":
            return External(external_identity)
        params = [f"service={escape(self.service)}"]
        if secured:
            params.append("secured")
        if external_identity:   # the session accepted a client certificate (Dovecot: ssl_require_client_cert)
            params.append("valid-client-cert")
        if local_addr:
            params.append(f"lip={escape(local_addr)}")
        if remote_addr:
            params.append(f"rip={escape(remote_addr)}")
        return DovecotExchange(self._conn, mech, params)

    async def start(self) -> None:
        await self._try_connect()

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        await self._conn.close()
