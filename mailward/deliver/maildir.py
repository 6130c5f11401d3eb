"""Local mailboxes: which local addresses exist, the Maildir each one goes to, delivery into
it, and the cleaning of what a crash leaves behind.

NAMES. :func:`mailbox_name` is the only way from an address to a folder under
``local.maildir_root``, and it never gives two different mailboxes one folder. The local part
is unquoted (RFC 5322 §3.2.4: a quoted-string is the same as its content, so ``"user"`` is
``user``), its ASCII letters are lower-cased (``User`` is ``user``), a sub-address is dropped
(``user+list`` is ``user``), and then every byte of its UTF-8 form outside ``a-z 0-9 . _ -``
is written ``%XX`` with upper-case hex digits (percent-encoding, RFC 3986 §2.1), as is a
leading dot. So ``user`` and ``first.last`` keep their names, ``üser`` is ``%C3%BCser``,
``"a b"`` is ``a%20b``, ``"a/b"`` is ``a%2Fb``, ``"."`` is ``%2E`` and ``".."`` is ``%2E.``;
a name is never empty, ``.`` or ``..``, never holds ``/`` and never starts with a dot, and
only ASCII reaches the file system, so case-insensitive or normalising file systems cannot
merge two names either. Non-ASCII letters are compared as sent (no Unicode case folding or
normalisation). The empty local part, and one whose name would be longer than a file name
may be (255 octets), have no mailbox: :func:`mailbox_name` returns None.

WHO EXISTS. :meth:`Mailboxes.find` is the one decision that RCPT (``550 5.1.1 User
unknown``) and delivery share: an address is an alias (a name in ``local.aliases``, expanded
before delivery) and/or has a mailbox. A mailbox exists for ``postmaster`` (RFC 5321 §4.5.1),
for the names in ``local.users``, for bare local targets of ``local.aliases``, for a folder
already under ``local.maildir_root``, and — only with ``local.accept_unknown_users`` — for
every local part that has a name. Postfix's ``local_recipient_maps`` is the model: mail for a
user who does not exist is refused while the client is still there, not bounced later.

DELIVERY. :func:`deliver` writes the message to ``USER/tmp/NAME``, fsyncs it, renames it into
``USER/new/`` and fsyncs that folder; only then does the caller record the recipient as
delivered. Lines end in LF inside Maildir, as mail readers expect; ``Return-Path:`` and
``Delivered-To:`` are prepended (RFC 5321 §4.4 asks the final delivery to add Return-Path).
Unique names follow the Maildir convention ``TIME.MmicroPpid_n.HOST`` (or the queue id and
recipient index, see :func:`deliver`); the name in ``tmp/`` adds this process's pid and a
token of this run.

CLEANING. A crash between the write and the rename leaves a file in ``tmp/``. :func:`sweep`
removes from every ``ROOT/*/tmp/`` the files this host wrote in an earlier run (the name
carries host, pid and run; the writer is no longer running, or its pid is now ours) and, as
the Maildir convention asks (maildir(5) of qmail), any file not accessed for 36 hours. It
runs at the first local delivery after the delivering process starts, and then at a
delivery at most every 6 hours; the message whose delivery a crash cut short is still
queued and is delivered again, so nothing is lost by removing its tmp file.

Failure behaviour: :func:`deliver` lets OSError propagate (the caller defers the recipient:
an ENOSPC/EIO is transient). Cleaning never fails a delivery: what it cannot read or remove
is logged and left. :meth:`Mailboxes.find` does no more than one stat and never raises for
any address.

SECURITY. The sweep may run as root in folders users can write to: it opens each folder
relative to its parent without following symbolic links and removes only regular files, by
name, in the folder it opened.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mailward import log
from mailward.deliver.aliases import AliasTable, fold_case
from mailward.fsutil import fsync_dir

POSTMASTER = "postmaster"
NAME_MAX = 255                   # longest file name on the usual file systems
TMP_MAX_AGE = 36 * 3600          # the Maildir convention: tmp/ files not accessed for 36 hours
SWEEP_EVERY = 6 * 3600

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789._-")
_counter = itertools.count()
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
_RUN = secrets.token_hex(4)      # this run of this process; in every tmp/ name it writes
_TMP_NAME = re.compile(r"(?P<head>.+)\.T(?P<pid>\d{1,10})_(?P<run>[0-9a-f]{8})_\d+\Z")


# ---- names ------------------------------------------------------------------------------------

def local_part(address: str) -> str:
    """The local part as the mailbox sees it: unquoted, ASCII letters lower-cased.

    ``address`` is ``local@domain`` as RCPT gave it, or a bare local part (``postmaster``)."""
    local = address.rpartition("@")[0] if "@" in address else address
    if len(local) >= 2 and local[0] == local[-1] == '"':
        local = re.sub(r"\\(.)", r"\1", local[1:-1])     # RFC 5321 §4.1.2 quoted-pairSMTP
    return fold_case(local)


def mailbox_name(address: str) -> str | None:
    """The folder under the Maildir root for ``address``; None when it cannot have one."""
    local = local_part(address)
    base = local.split("+", 1)[0]
    if base:                      # "+x" alone keeps its "+": it has no base to fall back to
        local = base
    if not local:
        return None
    out = []
    for i, byte in enumerate(local.encode("utf-8", "surrogatepass")):
        if byte in _SAFE and not (i == 0 and byte == 0x2E):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    name = "".join(out)
    return name if len(name) <= NAME_MAX else None


# ---- who exists ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Local:
    """What this machine has for one local address."""
    mailbox: str | None       # the folder under the Maildir root; None: no mailbox here
    alias: bool = False       # the local part names an alias, expanded before delivery

    @property
    def exists(self) -> bool:
        """RCPT's question: is there anyone here by that name?"""
        return self.alias or self.mailbox is not None


class Mailboxes:
    """Which local addresses exist, and where their mail goes (see the module's WHO EXISTS)."""

    def __init__(self, root: Path | str, users: Iterable[str], aliases: AliasTable | None = None, *,
                 accept_unknown: bool = False):
        self.root = Path(root)
        self.aliases = aliases if aliases is not None else AliasTable(None)
        self.accept_unknown = accept_unknown
        self.users = frozenset(filter(None, map(mailbox_name, users)))
        self._targets_of: tuple[object, frozenset[str]] = (None, frozenset())

    @classmethod
    def from_config(cls, config, aliases: AliasTable | None = None) -> "Mailboxes":
        """From ``[local]``: ``users``, ``aliases``, ``maildir_root``, ``accept_unknown_users``."""
        local = config.local
        if aliases is None:
            aliases = AliasTable(local.aliases or None)
        return cls(local.maildir_root, local.users, aliases, accept_unknown=local.accept_unknown_users)

    def _alias_targets(self) -> frozenset[str]:
        """Mailbox names of the bare (local) targets in the aliases file, per version of it."""
        table = self.aliases.current()
        seen, names = self._targets_of
        if seen is not table:
            names = frozenset(filter(None, (mailbox_name(t) for targets in table.values()
                                            for t in targets if "@" not in t)))
            self._targets_of = (table, names)
        return names

    def find(self, address: str) -> Local:
        local = local_part(address)
        alias = bool(local) and self.aliases.has(local)
        name = mailbox_name(address)
        if name is None:
            return Local(None, alias)
        if (name == POSTMASTER or self.accept_unknown or name in self.users or name in self._alias_targets()
                or os.path.isdir(self.root / name)):
            return Local(name, alias)
        return Local(None, alias)


# ---- delivery ---------------------------------------------------------------------------------

def ensure_maildir(path: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)


def deliver(maildir: Path, chunks: Iterable[bytes], *, sender: str, recipient: str, fsync: bool = True,
            key: str | None = None) -> Path:
    """Write one message into ``maildir``; returns the path in ``new/``.

    ``key`` (queue id and recipient index) makes the name stable for that delivery: if a crash
    came after the file reached ``new/`` but before the spool recorded it, the retry finds the
    file and does not deliver it twice (unless the reader already moved it to ``cur/``).
    """
    maildir = Path(maildir)
    _sweep_if_due(maildir.parent)
    ensure_maildir(maildir)
    now = time.time()
    if key:
        unique = f"{key}.{_HOST}"
        if (maildir / "new" / unique).exists():
            return maildir / "new" / unique
    else:
        unique = f"{int(now)}.M{int((now % 1) * 1e6)}P{os.getpid()}_{next(_counter)}.{_HOST}"
    # unique per attempt, and says who wrote it (sweep); the rename makes the message visible at once
    tmp = maildir / "tmp" / f"{unique}.T{os.getpid()}_{_RUN}_{next(_counter)}"
    final = maildir / "new" / unique
    with open(tmp, "xb") as f:
        f.write(f"Return-Path: <{sender}>\nDelivered-To: {recipient}\n".encode("utf-8"))
        carry = b""
        for chunk in chunks:
            data = carry + chunk
            # keep a trailing CR: its LF may start the next chunk
            carry = b"\r" if data.endswith(b"\r") else b""
            if carry:
                data = data[:-1]
            f.write(data.replace(b"\r\n", b"\n"))
        f.write(carry)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.rename(tmp, final)
    if fsync:
        fsync_dir(final.parent)
    return final


# ---- cleaning ---------------------------------------------------------------------------------

_sweep_lock = threading.Lock()
_last_sweep: dict[str, float] = {}


def _sweep_if_due(root: Path) -> None:
    """Sweep ``root`` at this process's first delivery into it, then at most every SWEEP_EVERY."""
    key, now = str(root), time.monotonic()
    with _sweep_lock:
        last = _last_sweep.get(key)
        if last is not None and now - last < SWEEP_EVERY:
            return
        _last_sweep[key] = now      # claimed: concurrent deliveries go on without waiting
    try:
        sweep(root)
    except Exception as err:        # cleaning must never cost a delivery
        log.event(40, None, maildir=str(root), tmp="not cleaned", reason=repr(err))


def left_by_crash(name: str) -> bool:
    """Whether a tmp/ file name is one this host wrote in an earlier run that is gone."""
    m = _TMP_NAME.match(name)
    if not m or m["run"] == _RUN or not m["head"].endswith("." + _HOST):
        return False
    pid = int(m["pid"])
    if pid == os.getpid():
        return True                 # an earlier run had our pid (pids repeat, in containers at once)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):
        return False                # alive under another account, or not a pid we can ask about
    return False                    # still running: perhaps another server sharing this root


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def sweep(root: Path | str, now: float | None = None) -> int:
    """Remove crash leftovers from every ``root/*/tmp/`` (see CLEANING); returns how many."""
    now = time.time() if now is None else now
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return 0
    removed = 0
    try:
        with os.scandir(root_fd) as entries:
            boxes = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        for box in boxes:
            try:
                box_fd = os.open(box, _DIR_FLAGS, dir_fd=root_fd)
            except OSError:
                continue            # gone meanwhile, or not a folder we follow
            try:
                removed += _sweep_tmp(box_fd, f"{root}/{box}", now)
            finally:
                os.close(box_fd)
    finally:
        os.close(root_fd)
    return removed


def _sweep_tmp(box_fd: int, where: str, now: float) -> int:
    try:
        tmp_fd = os.open("tmp", _DIR_FLAGS, dir_fd=box_fd)
    except OSError:
        return 0                    # not a Maildir (yet), or tmp/ is a symbolic link: left alone
    removed, reasons = 0, set()
    try:
        with os.scandir(tmp_fd) as entries:
            names = [e.name for e in entries]
        for name in names:
            try:
                st = os.stat(name, dir_fd=tmp_fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if left_by_crash(name):
                    reason = "left by a crash"
                elif now - max(st.st_atime, st.st_mtime) > TMP_MAX_AGE:
                    reason = "older than 36 hours"
                else:
                    continue
                os.unlink(name, dir_fd=tmp_fd)
            except FileNotFoundError:
                continue
            except OSError as err:
                log.event(30, None, maildir=where, tmp=name, stat=f"cannot remove: {err.strerror or err}")
                continue
            removed += 1
            reasons.add(reason)
    finally:
        os.close(tmp_fd)
    if removed:
        log.info(None, maildir=where, tmp_removed=removed, reason=", ".join(sorted(reasons)))
    return removed
