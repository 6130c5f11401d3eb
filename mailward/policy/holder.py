"""The access map in use, and its atomic reload.

:class:`AccessMapHolder` owns the current :class:`~mailward.policy.accessmap.AccessMap`.
``holder.current`` is a complete map, always: a reload parses the whole file into a new
map and then swaps one reference, so a check running meanwhile keeps the snapshot it
took. A file with a syntax error (or one that cannot be read) never replaces the map in
use: the error is logged as ``access map FILE:LINE: why; keeping the previous map (N
entries)`` and :meth:`reload` returns False.

The server calls :meth:`maybe_reload` about once a second and :meth:`reload` on SIGHUP;
both are :class:`mailward.fsutil.ReloadingFile` (one ``stat``; reload when modification
time, size or inode changed; a broken file is not retried until it changes again).

At start-up (:meth:`AccessMapHolder.open`) there is no previous map: an error is raised
as :class:`~mailward.policy.accessmap.AccessMapError`, so the server refuses to start with
a one-line message. No path (``policy.access_map = ""``) means an empty map.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from mailward.fsutil import ReloadingFile
from mailward.policy.accessmap import EMPTY, AccessMap, AccessMapError

log = logging.getLogger("mailward.policy")
_SHARED: dict[str, "AccessMapHolder"] = {}
_SHARED_LOCK = threading.Lock()


class AccessMapHolder:
    def __init__(self, path: str | Path | None, amap: AccessMap = EMPTY) -> None:
        self._file: ReloadingFile[AccessMap] = ReloadingFile(
            None, AccessMap.load, amap, AccessMapError, self._log_error, self._log_loaded)
        self._file.path = Path(path) if path else None

    @property
    def path(self) -> Path | None:
        return self._file.path

    @classmethod
    def open(cls, path: str | Path | None) -> "AccessMapHolder":
        """Load the map for start-up; raise AccessMapError if the file is unusable."""
        holder = cls(None)
        if path is not None:
            holder._file = ReloadingFile(Path(path), AccessMap.load, EMPTY, AccessMapError, holder._log_error,
                                         holder._log_loaded)
            holder._log_loaded(holder._file.table)
        return holder

    @classmethod
    def shared(cls, path: str | Path) -> "AccessMapHolder":
        """One holder per file in this process (the receiving and the delivery side share
        the map, and its memory); opened on first use like :meth:`open`."""
        key = str(Path(path).resolve())
        with _SHARED_LOCK:
            holder = _SHARED.get(key)
            if holder is None:
                holder = _SHARED[key] = cls.open(key)
            return holder

    @property
    def current(self) -> AccessMap:
        """The map in use: take it once per check and pass it to the policy functions."""
        return self._file.table

    def _log_error(self, err: Exception) -> None:
        log.error("access map %s; keeping the previous map (%d entries)", err, len(self._file.table))

    def _log_loaded(self, amap: AccessMap) -> None:
        log.info("access map %s: %d entries loaded", amap.source, len(amap))
        for warning in amap.warnings:
            log.warning("access map %s", warning)
        for entry in amap.entries():
            if entry.key.startswith("srv_features:"):
                ignored = sorted(set("".join(entry.value.split())) - set("SVv"))
                if ignored:
                    log.warning("access map %s: Srv_Features letters %s ignored (mailward implements "
                                "S, V and v)", entry.where, "".join(ignored))

    def reload(self) -> bool:
        """Re-read the file now (SIGHUP). True if the new map is in use."""
        return self._file.refresh(force=True)

    def maybe_reload(self) -> bool:
        """Reload if the file changed since the last attempt. True if a new map is in use."""
        return self._file.refresh()
