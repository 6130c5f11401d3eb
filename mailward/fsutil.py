"""Small file-system helpers shared by the spool, Maildir delivery, the CA tool and start-up.

SECURITY (:func:`give_to`): it runs as root inside folders an unprivileged account can write
to, so it follows no symbolic link the account could have made (below the given path none at
all: each entry is opened O_NOFOLLOW relative to its folder's descriptor, and the owner is
changed on that descriptor, so a name swapped after the look is not what gets changed; the
given path itself only when root owns the link, the rule of Linux's protected_symlinks),
changes only what root owns, and leaves alone a file with more than one link (it could be a
hard link to a file elsewhere, /etc/shadow say).
"""

from __future__ import annotations

import os
import threading
import stat
from pathlib import Path
from typing import Callable, Generic, TypeVar


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a create, a rename, an unlink) durable. Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int | None = None,
                     owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` by ``data`` whole or not at all: a temporary file in the same folder
    given its mode and owner first (mkstemp's 0600 when ``mode`` is None), written and
    fsynced, renamed over ``path``, then the folder fsynced. Raises OSError (the temporary
    file removed)."""
    import tempfile

    path = Path(path)
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(folder)


_OPEN_ENTRY = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def give_to(path: Path | str, uid: int, gid: int, depth: int = 0, *, files: bool = True) -> int:
    """Give ``path`` and what lies up to ``depth`` levels below it to ``uid``:``gid`` where
    root owns it now (folders always, regular files when ``files``); returns how many
    changed. For handing over what an earlier run as root made. Raises OSError for ``path``
    itself (missing, a symbolic link, not accessible); entries below that vanish are skipped."""
    if os.path.islink(path) and os.lstat(path).st_uid == 0:
        path = os.path.realpath(path)    # an administrator's link (/var/spool/mailward -> /srv/...)
    fd = os.open(path, _OPEN_ENTRY)
    try:
        return _give_fd(fd, uid, gid, depth, files)
    finally:
        os.close(fd)


def _give_fd(fd: int, uid: int, gid: int, depth: int, files: bool) -> int:
    st = os.fstat(fd)
    is_dir = stat.S_ISDIR(st.st_mode)
    changed = 0
    if st.st_uid == 0 and (is_dir or (files and stat.S_ISREG(st.st_mode) and st.st_nlink == 1)):
        os.fchown(fd, uid, gid)
        changed += 1
    if is_dir and depth > 0:
        with os.scandir(fd) as entries:
            names = [e.name for e in entries if files or e.is_dir(follow_symlinks=False)]
        for name in names:
            try:
                child = os.open(name, _OPEN_ENTRY, dir_fd=fd)
            except OSError:
                continue  # gone, or a symbolic link (ELOOP): not ours to follow
            try:
                changed += _give_fd(child, uid, gid, depth - 1, files)
            finally:
                os.close(child)
    return changed


T = TypeVar("T")


class ReloadingFile(Generic[T]):
    """A parsed file that is parsed again when it changes (one stat per look): the access
    map, the route file and the aliases all reload through this one class.

    A change that does not parse keeps the previous contents and is not retried until the
    file changes again; ``on_error`` is told why. ``load`` raises ``error_type`` for a file
    that does not parse; at start that is the caller's error (it propagates). ``on_load``
    is told about every table put in use after the first. :meth:`refresh` is safe to call
    from several threads: readers always see a complete table (one reference swap).
    """

    def __init__(self, path: Path | str | None, load: Callable[[Path], T], empty: T,
                 error_type: type[Exception], on_error: Callable[[Exception], None],
                 on_load: Callable[[T], None] | None = None):
        self.path = Path(path) if path else None
        self._load, self._error_type, self._on_error = load, error_type, on_error
        self._on_load = on_load
        self._lock = threading.Lock()
        self.table: T = empty
        self._stamp = None
        if self.path is not None:
            stamp = self._stat()
            self.table = load(self.path)  # at start, a broken file is the caller's error
            self._stamp = stamp

    def _stat(self):
        try:
            st = os.stat(self.path)
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return None

    def refresh(self, force: bool = False) -> bool:
        """Re-read the file if it changed (always with ``force``: SIGHUP). True when a new
        table is in use."""
        if self.path is None:
            return False
        with self._lock:
            stamp = self._stat()
            if stamp == self._stamp and not force:
                return False
            self._stamp = stamp
            try:
                table = self._load(self.path)
            except self._error_type as err:
                self._on_error(err)
                return False
            self.table = table
        if self._on_load is not None:
            self._on_load(table)
        return True

    def current(self) -> T:
        self.refresh()
        return self.table
