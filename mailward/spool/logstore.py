"""The log spool's bookkeeping: which logged messages are still queued, retiring and compacting segments.

Used by :class:`mailward.spool.store.Spool` whenever ``SPOOL/log`` exists (any process reads
both formats; ``spool.format`` only decides how new messages are written).

* A message in the log is *queued* until its queue id is a line of the removal journal of
  its segment, ``log/.removed-SEGMENT`` (:meth:`LogStore.mark_removed`: appended and
  fdatasynced, then the message's status and hold files are unlinked at once, so that
  ``queue/`` keeps only the files of messages still queued — on ext4 creating a file in a
  folder that keeps thousands costs ~2 ms of kernel time, against ~0.2 ms when each goes at
  once). The segments themselves are never rewritten. A ``removed`` line in the status file,
  as written before the journal existed, still counts.
* A sealed segment (:mod:`mailward.spool.segments`) whose every message is removed is
  *retired*: the removals of messages that a compaction copied into another segment carried
  into that segment's journal, the segment unlinked and ``log/`` fsynced, removals journaled
  meanwhile by another process carried too, and only then its journal and any status and
  hold files of its messages deleted. A removal that finds one of its segments gone looks
  for copies again, and :meth:`LogStore.recover` carries what a journal without a segment
  (a crash inside a retirement) still holds before deleting it: a removal racing a
  compaction, in this process or another, reaches the copy. A journal created by root (the
  queue commands) is handed to the owner of ``log/``.
* Compaction (:meth:`LogStore.compact`): a sealed segment older than ``compact_after`` seconds
  whose live messages fill less than half of it has them copied into this process's current
  segment (fdatasynced), and is then retired: one long-deferred message does not keep a
  whole segment, or the ones after it, on disk. Only a process running as the owner of
  ``log/`` compacts (a root CLI must not leave segments the server cannot read).

Failure behaviour: OSError from the file system surfaces to the caller of the operation that
needed it; a full file system gives up ``log/.reserve`` once for a journal line; retiring and
compacting are best effort (an error leaves the segment for later) and never fail a removal
that is already durable.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Iterator

from mailward.fsutil import fsync_dir
from mailward.spool.logwriter import LogIncoming, LogWriter
from mailward.spool.segments import TMP_PREFIX, Location, LogIndex, is_locked, read_or_empty

REMOVED = b'{"removed": true'   # a status file's removal line, as written before the journal (still read)
JOURNAL_PREFIX = ".removed-"     # log/.removed-SEGMENT: the queue ids removed from SEGMENT, one per line
RESERVE_NAME = ".reserve"
RESERVE = 64 * 1024     # octets kept in reserve: room for several hundred removal lines


class LogStore:
    def __init__(self, directory: Path, fsync: bool = True, segment_size: int = 16 << 20,
                 compact_after: float = 600.0, sync_in: str = "loop"):
        self.folder = Path(directory) / "log"
        self.queue = Path(directory) / "queue"
        self.incoming = Path(directory) / "incoming"
        self.fsync, self.segment_size, self.compact_after = fsync, segment_size, compact_after
        self.sync_in = sync_in
        self.index = LogIndex(self.folder)
        self._q = os.path.join(str(self.queue), "")
        self._writer: LogWriter | None = None
        self._removed: set[str] = set()
        self._journal_read: dict[str, int] = {}  # segment -> octets of its journal read so far
        self._journal_lock = threading.Lock()
        self._journal_named: set[str] = set()   # journals whose folder entry this process fsynced
        # Held while a removal picks its segments and journals it, and while a retirement
        # carries removals forward and unlinks the segment and its journal: a removal racing
        # a compaction's copy is then journaled where the copy lies.
        self._remove_lock = threading.RLock()
        self._left: dict[str, set[str]] = {}   # sealed segment -> its messages not yet seen removed
        self._left_lock = threading.Lock()      # removals are settled by several threads at once
        self._last_compact = time.monotonic()

    @staticmethod
    def present(directory: Path) -> bool:
        return (Path(directory) / "log").is_dir()

    # ---- receiving ---------------------------------------------------------------------------
    @property
    def writer(self) -> LogWriter:
        if self._writer is None:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            self._writer = LogWriter(self.folder, self.index, self.fsync, self.segment_size)
            self.ensure_reserve()
        return self._writer

    def begin(self, envelope) -> LogIncoming:
        return LogIncoming(self.incoming, envelope)

    def sync_async(self, incoming: LogIncoming) -> Future:
        """``sync_in = "thread"``: the commit thread appends and syncs the batch. ``"loop"``:
        nothing yet (a done future); :meth:`publish` appends and syncs the batch right before
        the 250s, in the caller's thread, as the file spool's folder fsync is done."""
        if self.sync_in == "thread":
            return self.writer.submit(incoming)
        incoming.pending = True
        done: Future = Future()
        done.set_result(None)
        return done

    def publish(self, incomings: list[LogIncoming]) -> list[OSError | None]:
        pending = [inc for inc in incomings if inc.pending]
        if pending:
            self.writer.commit(pending)
            for inc in pending:
                inc.pending = False
        return [inc.error for inc in incomings]

    # ---- reading -------------------------------------------------------------------------------
    def removed(self, qid: str, status_names: set[str] | None = None) -> bool:
        """Is ``qid`` removed? With ``status_names`` (a listing of ``queue/``) the journals are
        taken as read (:meth:`ids` reads them all first); without, the journals of the
        segments holding ``qid`` are read up to date."""
        if qid in self._removed:
            return True
        if status_names is None:
            self._read_journals_of(qid)
            if qid in self._removed:
                return True
        elif f"{qid}.status" not in status_names:
            return False
        return self._removed_in(qid, read_or_empty(self._q + qid + ".status"))

    def _read_journal(self, name: str) -> set[str]:
        """Take in what was appended to ``log/.removed-NAME`` since the last look (returned);
        a line torn by a crash (the append's fdatasync never returned) is not a queue id."""
        path = self.folder / (JOURNAL_PREFIX + name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return set()
        except PermissionError:
            return set()    # root's queue command between its create and its fchown: read next time
        try:
            with self._journal_lock:
                done = self._journal_read.get(name, 0)
                size = os.fstat(fd).st_size
                if size <= done:
                    return set()
                new = os.pread(fd, size - done, done)
                end = new.rfind(b"\n") + 1      # a line still being written is read next time
                self._journal_read[name] = done + end
                got = {line.decode("ascii", "replace") for line in new[:end].split(b"\n") if len(line) == 14}
                self._removed |= got
                return got
        finally:
            os.close(fd)

    def _listing(self) -> list[str]:
        """The names in ``log/`` ([] when there is none yet)."""
        try:
            return os.listdir(self.folder)
        except FileNotFoundError:
            return []

    def _read_journals_of(self, qid: str) -> None:
        for name in list(self.index.copies.get(qid, ())):
            self._read_journal(name)

    def _drop_journal(self, name: str) -> None:
        """Delete ``log/.removed-NAME`` (its segment is gone) and forget it."""
        try:
            os.unlink(self.folder / (JOURNAL_PREFIX + name))
        except FileNotFoundError:
            pass
        with self._journal_lock:
            self._journal_read.pop(name, None)
        self._journal_named.discard(name)

    def _read_journals(self) -> None:
        for n in self._listing():
            if n.startswith(JOURNAL_PREFIX):
                self._read_journal(n[len(JOURNAL_PREFIX):])

    def _removed_in(self, qid: str, status: bytes) -> bool:
        if REMOVED in status:
            self._removed.add(qid)
            return True
        return False

    def queued(self, qid: str) -> tuple[Location, bytes] | None:
        """Where ``qid`` lies and its status file's content (one read of it), when it is
        queued in the log; None when removed or not in the log."""
        if qid in self._removed:
            return None
        loc = self._find(qid)
        if loc is None:
            return None
        self._read_journals_of(qid)
        if qid in self._removed:
            return None
        status = read_or_empty(self._q + qid + ".status")
        if self._removed_in(qid, status):
            return None
        return loc, status

    def ids(self, queue_names: set[str] | None = None) -> list[str]:
        self.index.refresh()
        if queue_names is None:
            queue_names = set(os.listdir(self.queue))
        self._read_journals()
        # list(): the commit thread of this process may add records meanwhile
        return [q for q in list(self.index.where) if not self.removed(q, queue_names)]

    def locate(self, qid: str) -> Location | None:
        loc = self._find(qid)
        if loc is None or self.removed(qid):
            return None
        return loc

    def _find(self, qid: str) -> Location | None:
        loc = self.index.locate(qid)
        if loc is not None and not (self.folder / loc.segment).exists():
            self.index.refresh()        # retired meanwhile by another process
            loc = self.index.where.get(qid)
        return loc

    def envelope(self, qid: str) -> tuple[bytes, int]:
        """(the envelope's JSON, content length); FileNotFoundError when not queued."""
        raw, size, _ = self.envelope_and_status(qid)
        return raw, size

    def envelope_and_status(self, qid: str) -> tuple[bytes, int, bytes]:
        """(the envelope's JSON, content length, the status file's content), the status file
        read once; FileNotFoundError when not queued."""
        found = self.queued(qid)
        if found is None:
            raise FileNotFoundError(f"{self.folder}: no message {qid}")
        loc, status = found
        try:
            return self.index.read_envelope(loc), loc.content_len, status
        except FileNotFoundError:
            self.index.refresh()
            loc = self.locate(qid)
            if loc is None:
                raise
            return self.index.read_envelope(loc), loc.content_len, status

    def content(self, qid: str, chunk_size: int) -> Iterator[bytes]:
        """The message's content. Whether it is still queued is not looked at here (the
        caller has loaded it): its record stays readable until its segment is retired."""
        loc = self._find(qid)
        if loc is None:
            raise FileNotFoundError(f"{self.folder}: no message {qid}")
        return self.index.read_content(loc, chunk_size)

    # ---- removing, retiring, compacting ------------------------------------------------------
    def mark_removed(self, qid: str) -> None:
        """Note that ``qid`` is done: its id appended to the journal of every segment holding
        it and fdatasynced, then its status and hold files unlinked (no fsync of ``queue/``
        needed: a file the crash brings back belongs to a removed message and goes when its
        segment is retired)."""
        with self._remove_lock:
            names = sorted(self.index.copies.get(qid, ()))
            if not names:
                self.index.refresh()
                names = sorted(self.index.copies.get(qid, ()))
            try:
                for name in names:
                    self._journal_append(name, [qid])
                if any(not os.path.exists(self.folder / n) for n in names):
                    # another process retired one meanwhile: a compaction copy may lie elsewhere
                    self.index.refresh()
                    for name in sorted(self.index.copies.get(qid, set()) - set(names)):
                        self._journal_append(name, [qid])
            except OSError as err:
                if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                if self.drop_reserve():
                    return self.mark_removed(qid)   # (its line starts anew: a torn try is skipped)
                # A full file system: the line cannot be written, but retiring the segment
                # frees room. If the segment must stay, the removal is not durable.
                self._removed.add(qid)
                for name in names:
                    self._retire_quietly(name)
                if qid in self.index.copies:
                    raise
                return
            self._removed.add(qid)
        for suffix in (".status", ".hold"):
            try:
                os.unlink(self._q + qid + suffix)
            except FileNotFoundError:
                pass
        # The removal is durable: what follows frees room and never fails the removal.
        for name in names:
            self._retire_quietly(name)
        if time.monotonic() - self._last_compact > max(60.0, self.compact_after / 4):
            try:
                self.compact()
            except OSError:
                pass

    def _retire_quietly(self, name: str) -> None:
        try:
            self.retire(name)
        except OSError:
            pass      # left for a later removal or the next start

    def _journal_append(self, name: str, qids: list[str]) -> None:
        """Append ``qids`` to ``log/.removed-NAME``, durably. Each id is written between two
        newlines, so that an append torn by a crash spoils no later line."""
        data = b"".join(b"\n" + q.encode("ascii") + b"\n" for q in qids)
        try:
            self._journal_write(name, data)
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT) or not self.drop_reserve():
                raise
            self._journal_write(name, data)    # (a torn first try spoils no line: see above)

    def _journal_write(self, name: str, data: bytes) -> None:
        fd = os.open(self.folder / (JOURNAL_PREFIX + name), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            if os.geteuid() == 0:      # root's `mailward queue delete`: the server must append to it later
                owner, st = os.stat(self.folder), os.fstat(fd)
                if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                    os.fchown(fd, owner.st_uid, owner.st_gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fdatasync(fd)
                if name not in self._journal_named:    # (maybe) new: its name must last as well
                    fsync_dir(self.folder)
                    self._journal_named.add(name)
        finally:
            os.close(fd)

    def retire(self, name: str, status_names: set[str] | None = None) -> bool:
        """Unlink a sealed segment whose messages are all removed (or copied to another
        segment by compaction); then the status and hold files of the removed ones."""
        path = self.folder / name
        index = self.index
        index.refresh_segment(name)
        if not index.settled(name):
            index.refresh_segment(name)   # it grew since the last look: now it settles if sealed
            if not index.settled(name):
                return False              # a writer still appends
        # Which messages are left is kept per sealed segment (its set of messages is final), so
        # that each removal looks at the next one still queued, not at the whole segment again.
        with self._left_lock:
            left = self._left.get(name)
            if left is None:
                left = self._left[name] = set(index.by_segment.get(name, ()))
            while left:
                q = next(iter(left))
                if self.removed(q, status_names) or index.copies.get(q, set()) - {name}:
                    left.discard(q)      # removed, or copied forward by compaction: for good
                    continue
                return False             # a message is queued only here
        if is_locked(path):
            return False
        with self._remove_lock:
            index.refresh()      # a copy another process made (the queue command's index may be old)
            qids = set(index.by_segment.get(name, ()))
            # A removed message that a compaction copied into another segment (its removal
            # may have been journaled here only, while the copy was made) stays removed there.
            try:
                carried = self._carry(name, qids, set())
            except OSError:
                return False
            self._left.pop(name, None)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                return False
            if self.fsync:
                fsync_dir(self.folder)
            # another process may have journaled a removal here meanwhile (it finds this
            # segment gone and journals the copy too, but only after its append)
            keep_journal = False
            try:
                self._carry(name, qids, carried)
            except OSError:
                keep_journal = True      # the next start carries it (recover)
            self.index.forget(name)
            if not keep_journal:
                self._drop_journal(name)
        self.ensure_reserve()
        for q in qids:
            if q not in self.index.copies and not os.path.exists(self._q + q):
                for suffix in (".status", ".hold"):
                    try:
                        os.unlink(self._q + q + suffix)
                    except FileNotFoundError:
                        pass
                self._removed.discard(q)
        return True

    def _carry(self, name: str, qids: set[str], done: set[str]) -> set[str]:
        """Journal, in the other segments holding them, the removals of ``qids`` that are
        journaled in ``name`` (all but ``done``); returns the ids carried, ``done`` included."""
        self._read_journal(name)
        carried: dict[str, list[str]] = {}
        for q in sorted(qids - done):
            others = self.index.copies.get(q, set()) - {name}
            if others and self.removed(q):
                for other in others:
                    carried.setdefault(other, []).append(q)
        for other, moved in carried.items():
            self._journal_append(other, moved)
        return done | {q for moved in carried.values() for q in moved}

    def compact(self, now: float | None = None) -> int:
        """Copy the live messages of old, mostly empty segments forward; returns segments retired."""
        self._last_compact = time.monotonic()
        try:
            if os.stat(self.folder).st_uid != os.geteuid():
                return 0
        except FileNotFoundError:
            return 0
        now = time.time() if now is None else now
        self.index.refresh()
        names = set(os.listdir(self.queue))
        self._read_journals()
        done = 0
        for name in self.index.segments():
            path = self.folder / name
            if self._writer is not None and name == self._writer.active():
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if now - st.st_mtime < self.compact_after or is_locked(path):
                continue
            live = [q for q in set(self.index.by_segment.get(name, ())) if not self.removed(q, names)]
            moved = [q for q in live if self.index.copies.get(q, set()) - {name}]
            keep = [(q, self.index.where[q]) for q in live if q not in moved and q in self.index.where]
            if sum(loc.env_len + loc.content_len for _, loc in keep) * 2 > st.st_size:
                continue
            if keep and not self._copy_forward(name, keep):
                continue
            if self.retire(name, names):
                done += 1
        return done

    def _copy_forward(self, name: str, keep: list[tuple[str, Location]]) -> bool:
        import zlib

        items = []
        try:
            with open(self.folder / name, "rb") as f:
                for qid, loc in keep:
                    f.seek(loc.offset)
                    env = f.read(loc.env_len)
                    content = f.read(loc.content_len)
                    items.append((qid, env, zlib.crc32(content, zlib.crc32(env)), len(content), content))
            with self.writer.lock:
                self.writer.append(items)
        except OSError:
            return False
        return True

    # ---- room to remove messages on a full file system ----------------------------------------
    def ensure_reserve(self) -> None:
        """Keep ``log/.reserve`` (RESERVE octets, allocated): when the file system fills up, a
        removal deletes it to make room for its journal line, so delivery can go on freeing
        segments instead of being stuck behind the full disk."""
        path = self.folder / RESERVE_NAME
        if path.exists():
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE)
            finally:
                os.close(fd)
        except OSError:
            path.unlink(missing_ok=True)

    def drop_reserve(self) -> bool:
        try:
            (self.folder / RESERVE_NAME).unlink()
        except OSError:
            return False
        return True

    # ---- start ----------------------------------------------------------------------------------
    def recover(self) -> None:
        """At start (lock holder only): drop unfinished segment files, retire and compact."""
        if not self.folder.is_dir():
            return
        entries = self._listing()
        for n in entries:
            if n.startswith(TMP_PREFIX) and not is_locked(self.folder / n):
                (self.folder / n).unlink(missing_ok=True)
        self.ensure_reserve()
        self.index.refresh()
        for n in entries:
            if n.startswith(JOURNAL_PREFIX) and n[len(JOURNAL_PREFIX):] not in entries:
                # its segment was retired: a removal in it of a message copied elsewhere is
                # journaled there first (a crash inside a retirement), then it goes
                orphan = n[len(JOURNAL_PREFIX):]
                with self._journal_lock:
                    self._journal_read.pop(orphan, None)      # all of its lines, read or not
                try:
                    self._carry(orphan, self._read_journal(orphan) & set(self.index.copies), set())
                except OSError:
                    continue     # kept: its ids stay removed (every journal is read); carried next start
                self._drop_journal(orphan)
        names = set(os.listdir(self.queue))
        self._read_journals()
        for name in self.index.segments():
            self.retire(name, names)
        self.compact()

    def knows(self, qid: str) -> bool:
        """Is there a record of ``qid`` in a segment (removed or not)?"""
        return qid in self.index.copies
