"""The access map in use, and its atomic reload.

:class:`AccessMapHolder` owns the current :class:`~mailward.policy.accessmap.AccessMap`.
``holder.current`` is a complete map, always: a reload parses the whole file into a new
map and then swaps one reference, so a check running meanwhile keeps the snapshot it
took. A file with a syntax error (or one that cannot be read) never replaces the map in
use: the error is logged as ``access map FILE:LINE: why; keeping the previous map (N
entries)`` and :meth:`reload` returns False.

The server calls :meth:`maybe_reload` about once a second and :meth:`reload` on SIGHUP.
``maybe_reload`` costs one ``stat``; it reloads when modification time, size or inode
changed, and does not retry a broken file until it changes again.

At start-up (:meth:`AccessMapHolder.open`) there is no previous map: an error is raised
as :class:`~mailward.policy.accessmap.AccessMapError`, so the server refuses to start with
a one-line message. No path (``policy.access_map = ""``) means an empty map.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from mailward.policy.accessmap import EMPTY, AccessMap, AccessMapError

log = logging.getLogger("mailward.policy")
_SHARED: dict[str, "AccessMapHolder"] = {}
_SHARED_LOCK = threading.Lock()


class AccessMapHolder:
    def __init__(self, path: str | Path | None, amap: AccessMap = EMPTY) -> None:
        self.path = Path(path) if path else None
        self._map = amap
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path | None) -> "AccessMapHolder":
        """Load the map for start-up; raise AccessMapError if the file is unusable."""
        holder = cls(path)
        if holder.path is not None:
            stamp = holder._stat()
            holder._map = AccessMap.load(holder.path)
            holder._stamp = stamp
            holder._log_loaded(holder._map)
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
        return self._map

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

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
        if self.path is None:
            return False
        with self._lock:
            stamp = self._stat()
            try:
                amap = AccessMap.load(self.path)
            except AccessMapError as err:
                self._stamp = stamp  # do not retry until the file changes again
                log.error("access map %s; keeping the previous map (%d entries)", err, len(self._map))
                return False
            self._map = amap  # one reference swap: readers see the old or the new map
            self._stamp = stamp
        self._log_loaded(amap)
        return True

    def maybe_reload(self) -> bool:
        """Reload if the file changed since the last attempt. True if a new map is in use."""
        if self.path is None:
            return False
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        if stamp is None:
            self._stamp = None
            log.error("access map %s: cannot read the file; keeping the previous map (%d entries)",
                      self.path, len(self._map))
            return False
        return self.reload()
