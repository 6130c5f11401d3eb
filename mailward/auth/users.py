"""The users file: who may authenticate with SMTP AUTH, and the backend that reads it.

Format (one user a line; ``#`` starts a comment line; blank lines are ignored)::

    NAME:ARGON2ID:SCRAM
    alice@example.org:$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA:SCRAM-SHA-256$4096:c2FsdA==$U3RvcmVk:U2VydmVy

* NAME: the login name as the client types it (case matters): printable UTF-8 without
  spaces, ``:`` or ``#`` at its start; at most 255 octets (RFC 4616 §2 asks servers to take
  that many).
* ARGON2ID: an argon2id hash in the PHC string form (RFC 9106; made by argon2-cffi) of the
  SASLprep'd password (RFC 4013), checked for PLAIN and LOGIN. May be empty: then only
  SCRAM-SHA-256 works for that user.
* SCRAM: the SCRAM-SHA-256 stored credentials (RFC 5802 §3: salt, iteration count,
  StoredKey, ServerKey, base64) in the layout PostgreSQL uses for its SCRAM verifiers,
  ``SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY``. May be empty: then that user cannot
  use SCRAM-SHA-256. Neither field lets anyone recover the password.

``mailward user add`` writes both fields; the password itself is never stored. The file must
not be writable by the group nor readable by others (mode 0600 or 0640; 0400/0440 too).

Failure behaviour: :func:`load_users` raises :class:`UsersFileError` with one line naming
``FILE:LINE`` (or the file and its mode). :class:`UsersFileBackend` refuses to start with such
an error; once running it re-reads the file when it changes (modification time, size or inode:
:class:`mailward.fsutil.ReloadingFile`) and a broken or unreadable version is logged and the
previous users stay in use. Checking an argon2id hash takes tens of milliseconds of CPU: it
runs in a worker thread, at most ``password_checks`` at a time; an unknown user costs the same
check against a decoy hash, so the reply time does not tell whether a name exists.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import argon2
from scramp import ScramMechanism

from mailward.auth import AuthBackend, AuthExchange, AuthUnavailable
from mailward.auth.mechanisms import LOCAL_MECHANISMS, SCRAM_SHA_256, ScramKeys, local_exchange
from mailward.fsutil import ReloadingFile

log = logging.getLogger("mailward.auth")

DEFAULT_ITERATIONS = 4096      # RFC 7677 §4: at least 4096
MAX_NAME_OCTETS = 255          # RFC 4616 §2: authcid "up to 255 octets" must be accepted
DEFAULT_MECHANISMS = ("SCRAM-SHA-256", "PLAIN", "LOGIN")


class UsersFileError(Exception):
    """A users file that cannot be used: one line, ``FILE:LINE: why`` or ``FILE: why``."""


@dataclass(frozen=True)
class ScramCredentials:
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def keys(self) -> ScramKeys:
        return self.salt, self.stored_key, self.server_key, self.iterations

    def __str__(self) -> str:
        b64 = lambda b: base64.b64encode(b).decode()   # noqa: E731
        return f"{SCRAM_SHA_256}${self.iterations}:{b64(self.salt)}${b64(self.stored_key)}:{b64(self.server_key)}"


@dataclass(frozen=True)
class UserEntry:
    name: str
    argon2: str = ""
    scram: ScramCredentials | None = None
    line: int = 0

    def __str__(self) -> str:
        return f"{self.name}:{self.argon2}:{self.scram or ''}"


def prepare_password(password: str) -> str:
    """SASLprep (RFC 4013) of a password, as PLAIN asks (RFC 4616 §2) and SCRAM does (RFC 5802
    §2.2); a password SASLprep refuses is taken as it is (the same at add and at check)."""
    from scramp.utils import saslprep

    try:
        return saslprep(password)
    except Exception:
        return password


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a user name in the file, or None."""
    if not name:
        return "an empty user name"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_OCTETS:
        return f"a user name over {MAX_NAME_OCTETS} octets"
    if ":" in name or name.startswith("#") or any(not ch.isprintable() or ch.isspace() for ch in name):
        return f"user name {name!r}: no ':', spaces or control characters, no '#' at its start"
    return None


def _parse_scram(text: str) -> ScramCredentials:
    try:
        mech, rest = text.split("$", 1)
        iter_salt, keys = rest.split("$", 1)
        iterations, salt = iter_salt.split(":", 1)
        stored, server = keys.split(":", 1)
        creds = ScramCredentials(int(iterations), base64.b64decode(salt, validate=True),
                                 base64.b64decode(stored, validate=True), base64.b64decode(server, validate=True))
    except (ValueError, binascii.Error):
        raise ValueError("SCRAM field: expected SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY (base64)") from None
    if mech.upper() != SCRAM_SHA_256:
        raise ValueError(f"SCRAM field: {mech!r} is not {SCRAM_SHA_256}")
    if not 4096 <= creds.iterations <= 10_000_000:
        raise ValueError(f"SCRAM field: iteration count {creds.iterations} outside 4096..10000000")
    if len(creds.salt) < 12 or len(creds.stored_key) != 32 or len(creds.server_key) != 32:
        raise ValueError("SCRAM field: salt under 12 octets, or a key that is not 32 octets (SHA-256)")
    return creds


def parse_entry(line: str, number: int = 0) -> UserEntry:
    """One line of the file; raises ValueError saying what is wrong."""
    fields = line.split(":", 2)
    if len(fields) != 3:
        raise ValueError("expected NAME:ARGON2ID:SCRAM (3 fields separated by ':')")
    name, hashed, scram = fields
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    if hashed:
        try:
            params = argon2.extract_parameters(hashed)
        except argon2.exceptions.InvalidHashError:
            raise ValueError("ARGON2ID field: not an argon2 hash in PHC form ($argon2id$v=19$m=...)") from None
        if params.type is not argon2.Type.ID:
            raise ValueError("ARGON2ID field: an argon2i or argon2d hash; only argon2id is accepted")
    creds = _parse_scram(scram) if scram else None
    if not hashed and creds is None:
        raise ValueError("neither an argon2id hash nor SCRAM credentials: the user could never log in")
    return UserEntry(name, hashed, creds, number)


def parse_users(text: str, source: str) -> dict[str, UserEntry]:
    """Every user of a users file's text; raises UsersFileError naming ``source:LINE``."""
    users: dict[str, UserEntry] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = parse_entry(line, number)
        except ValueError as err:
            raise UsersFileError(f"{source}:{number}: {err}") from None
        if entry.name in users:
            raise UsersFileError(f"{source}:{number}: user {entry.name!r} already on line {users[entry.name].line}")
        users[entry.name] = entry
    return users


def mode_problem(mode: int) -> str | None:
    """Why a users file with this mode is refused, or None (0600, 0640, 0400, 0440 pass)."""
    if stat.S_IMODE(mode) & 0o037:
        return (f"mode {stat.S_IMODE(mode):04o} lets other accounts read or change the password hashes; "
                f"fix: chmod 0640 (or 0600) the file")
    return None


def load_users(path: Path) -> dict[str, UserEntry]:
    """Read and check a users file; raises UsersFileError (unreadable, bad mode, bad line)."""
    try:
        with open(path, encoding="utf-8") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UsersFileError(f"{path}: not a regular file")
            problem = mode_problem(st.st_mode)
            if problem:
                raise UsersFileError(f"{path}: {problem}")
            text = f.read()
    except UnicodeDecodeError as err:
        raise UsersFileError(f"{path}: not UTF-8 ({err.reason} at octet {err.start})") from None
    except OSError as err:
        raise UsersFileError(f"{path}: cannot read: {err.strerror or err}") from None
    return parse_users(text, str(path))


def make_entry(name: str, password: str, *, iterations: int = DEFAULT_ITERATIONS,
               hasher: argon2.PasswordHasher | None = None) -> UserEntry:
    """A new entry for ``name``: the argon2id hash and the SCRAM-SHA-256 stored keys of the
    password (nothing from which the password can be read back)."""
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    prepared = prepare_password(password)
    hashed = (hasher or argon2.PasswordHasher()).hash(prepared)
    salt, stored_key, server_key, i = ScramMechanism(SCRAM_SHA_256).make_auth_info(password, iterations)
    return UserEntry(name, hashed, ScramCredentials(i, salt, stored_key, server_key))


class UsersFileBackend(AuthBackend):
    """AuthBackend over a users file (see the module docstring)."""

    def __init__(self, path: Path | str, *, mechanisms: tuple[str, ...] | list[str] = DEFAULT_MECHANISMS,
                 password_checks: int = 2, allow_proxy: bool = False) -> None:
        unknown = [m for m in mechanisms if m.upper() not in LOCAL_MECHANISMS]
        if unknown:
            raise ValueError(f"mechanisms {', '.join(unknown)} are not implemented by the users file "
                             f"(it knows {', '.join(LOCAL_MECHANISMS)})")
        self.path = Path(path)
        self._mechanisms = [m.upper() for m in mechanisms]
        self._allow_proxy = allow_proxy
        self._file: ReloadingFile[dict[str, UserEntry]] = ReloadingFile(
            self.path, load_users, {}, UsersFileError, self._log_error, self._log_loaded)
        # argon2id checks run on these threads; more wait in its queue, not on the event loop
        self._checks = ThreadPoolExecutor(max_workers=password_checks, thread_name_prefix="argon2")
        self._hasher = argon2.PasswordHasher()
        self._decoy: str | None = None
        self._decoy_lock = threading.Lock()

    @property
    def users(self) -> dict[str, UserEntry]:
        return self._file.current()

    def _log_error(self, err: Exception) -> None:
        log.error("users file %s; keeping the previous users (%d)", err, len(self._file.table))

    def _log_loaded(self, users: dict) -> None:
        log.info("users file %s: %d users loaded", self.path, len(users))

    # AuthBackend

    def mechanisms(self, *, external_identity: str | None) -> list[str]:
        return [m for m in self._mechanisms if m != "EXTERNAL" or external_identity]

    def begin(self, mechanism: str, *, external_identity: str | None = None, remote_addr: str = "",
              local_addr: str = "", secured: bool = True) -> AuthExchange:
        return local_exchange(mechanism, self, self.mechanisms(external_identity=external_identity),
                              external_identity=external_identity, decoy_iterations=DEFAULT_ITERATIONS)

    async def start(self) -> None:
        # the decoy hash now, so that the first unknown user is not slower than the rest
        await asyncio.get_running_loop().run_in_executor(self._checks, self._decoy_hash)

    async def close(self) -> None:
        self._checks.shutdown(wait=False, cancel_futures=True)

    # Credentials (mailward.auth.mechanisms)

    async def check_password(self, authcid: str, password: str) -> bool:
        entry = self.users.get(authcid)
        hashed = entry.argon2 if entry is not None and entry.argon2 else None
        ok = await asyncio.get_running_loop().run_in_executor(self._checks, self._check, hashed,
                                                              prepare_password(password))
        return ok and hashed is not None

    def _check(self, hashed: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(hashed or self._decoy_hash(), password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            raise AuthUnavailable("users file: an argon2id hash argon2 cannot read") from None

    def _decoy_hash(self) -> str:
        with self._decoy_lock:
            if self._decoy is None:
                self._decoy = self._hasher.hash(os.urandom(16).hex())
            return self._decoy

    def user_exists(self, name: str) -> bool:
        """Whether ``name`` is a user of the file (EXTERNAL's check of a certificate identity)."""
        return name in self.users

    def scram_keys(self, authcid: str) -> ScramKeys | None:
        entry = self.users.get(authcid)
        return entry.scram.keys() if entry is not None and entry.scram is not None else None

    def may_act_as(self, authcid: str, authzid: str) -> bool:
        return self._allow_proxy
