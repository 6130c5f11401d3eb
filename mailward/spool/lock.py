"""One server per spool: the exclusive lock on ``SPOOL/mailward.pid`` (see ONE SERVER PER SPOOL
in :mod:`mailward.spool.store`, which re-exports these names).

Failure behaviour: :meth:`SpoolLock.acquire` raises :class:`SpoolLocked` (one line, exit 75)
when another process holds the lock, OSError when the folder or file cannot be made or opened;
:func:`running_server` never raises for a missing PID file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

PID_FILE = "mailward.pid"
EX_TEMPFAIL = 75   # sysexits.h: "temporary failure ... the user is invited to retry later"


class SpoolLocked(Exception):
    """Another server holds the spool's lock: str(err) is the one line; exit 75 (EX_TEMPFAIL)."""

    exit_code = EX_TEMPFAIL


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


class SpoolLock:
    """The exclusive lock of one spool, an ``flock`` on ``SPOOL/mailward.pid`` (see the module's
    ONE SERVER PER SPOOL). Keep the object alive as long as the server runs; pass
    :meth:`fileno` to child processes that must keep the spool locked after the parent dies."""

    ATTEMPTS = 10      # a `queue flush` may hold a shared lock for an instant: try for ~1 s
    PAUSE = 0.1

    def __init__(self, fd: int, path: Path):
        self._fd, self.path = fd, path

    @classmethod
    def acquire(cls, directory: Path | str) -> "SpoolLock":
        """Create the spool folder and its PID file if missing (contents untouched) and lock it.

        Raises :class:`SpoolLocked` when another process holds it, OSError when the folder or
        the file cannot be made or opened."""
        directory = Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / PID_FILE
        writable = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except PermissionError:
            # not ours to write (a server running as server.user owns it): still say who holds it
            fd, writable = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), False
        for attempt in range(cls.ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
            else:
                if writable:
                    return cls(fd, path)
                os.close(fd)
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            if attempt + 1 < cls.ATTEMPTS:
                time.sleep(cls.PAUSE)
        pid = _read_pid(fd)
        os.close(fd)
        holder = f"the mailward server with pid {pid}" if pid else "another mailward process"
        raise SpoolLocked(f"{directory}: this spool is in use by {holder} (its lock is {path}); "
                          f"fix: stop that server first, or give this one its own spool.directory")

    def write_pid(self, pid: int) -> None:
        """Name the holder in the PID file (through the locked descriptor, so it also works
        after the process has given up the privileges it opened the file with)."""
        data = f"{pid}\n".encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def fileno(self) -> int:
        return self._fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)   # closing the last descriptor drops the flock
            self._fd = -1


def running_server(directory: Path | str) -> int | None:
    """The PID of the server that holds the spool's lock, or None when no server holds it
    (a PID file left by a server that is gone names nobody). 0: locked, PID not yet written."""
    path = Path(directory) / PID_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        return None     # we got the lock, so nobody holds it; closing drops ours at once
    finally:
        os.close(fd)
