"""Small file-system helpers shared by the spool, Maildir delivery and the CA tool."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Generic, TypeVar


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a create, a rename, an unlink) durable. Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


T = TypeVar("T")


class ReloadingFile(Generic[T]):
    """A parsed file that is parsed again when it changes (one stat per look).

    A change that does not parse keeps the previous contents; ``on_error`` is told why.
    ``load`` raises ``error_type`` for a file that does not parse.
    """

    def __init__(self, path: Path | str | None, load: Callable[[Path], T], empty: T,
                 error_type: type[Exception], on_error: Callable[[Exception], None]):
        self.path = Path(path) if path else None
        self._load, self._error_type, self._on_error = load, error_type, on_error
        self.table: T = empty
        self._stamp = None
        if self.path is not None:
            self.table = load(self.path)  # at start, a broken file is the caller's error
            self._stamp = self._stat()

    def _stat(self):
        try:
            st = os.stat(self.path)
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return None

    def current(self) -> T:
        if self.path is not None:
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.table = self._load(self.path)
                except self._error_type as err:
                    self._on_error(err)
        return self.table
