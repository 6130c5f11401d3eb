"""Writing the log spool (``spool.format = "log"``): one segment per process, one fdatasync per batch.

:class:`LogIncoming` holds a message being received: in memory up to ``SPILL`` octets, then in
``incoming/ID`` (memory does not grow with message size). :class:`LogWriter` is the group
commit: one thread takes every message waiting, appends their records to this process's
segment (:mod:`mailward.spool.segments`) and makes them durable with **one** ``fdatasync``
for the whole batch, where the file spool needs a file creation, an fdatasync per message, a
rename and a folder fsync. Only then are the messages' futures resolved, so the 250 still
follows durability (the store's DURABILITY CONTRACT).

The segment is created as ``.tmp-NAME``, locked (``flock``, held while this process may append),
given its head, renamed into place and the ``log/`` folder fsynced before any record goes in.
When it reaches ``segment_size``, or nothing was appended for ``IDLE_SEAL`` seconds, it is
closed (sealed) and the next batch starts a new one.

Failure behaviour: an OSError while appending or syncing fails every message of that batch
(each caller answers 4xx and calls :meth:`LogIncoming.abort`) and seals the segment, so a
torn record can only ever be the last one of a segment, where readers stop.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import zlib
from concurrent.futures import Future
from pathlib import Path

from mailward.fsutil import fsync_dir
from mailward.spool.segments import HEAD, HEAD_MAGIC, TMP_PREFIX, Location, LogIndex, record_header

SPILL = 256 * 1024    # octets of a message kept in memory before it goes to incoming/ID
IDLE_SEAL = 30.0      # seconds without an append after which the current segment is closed


class LogIncoming:
    """A message being received into the log spool: write chunks, then commit or abort."""

    def __init__(self, incoming_dir: Path, envelope):
        """``envelope``: a :class:`mailward.spool.store.Envelope` (its ``to_json`` and ``queue_id``)."""
        self.envelope = envelope
        self.path = incoming_dir / envelope.queue_id     # used only once the message spills
        self.env = envelope.to_json()
        self.crc = zlib.crc32(self.env)
        self.buf = bytearray()
        self.spill = None
        self.content_size = 0
        self.error: OSError | None = None
        self.pending = False      # spool.log_sync = "loop": written and synced by publish()

    def write(self, chunk: bytes) -> None:
        self.crc = zlib.crc32(chunk, self.crc)
        self.content_size += len(chunk)
        if self.spill is None:
            self.buf += chunk
            if len(self.buf) <= SPILL:
                return
            try:
                self.spill = open(self.path, "xb+")
            except OSError:
                self.abort()
                raise
            chunk, self.buf = bytes(self.buf), bytearray()
        try:
            self.spill.write(chunk)
        except OSError:
            self.abort()
            raise

    def abort(self) -> None:
        self.buf = bytearray()
        if self.spill is not None:
            try:
                self.spill.close()
            except OSError:
                pass
            self.spill = None
            self.path.unlink(missing_ok=True)

    def close_spill(self) -> None:
        if self.spill is not None:
            self.spill.close()
            self.spill = None
            self.path.unlink(missing_ok=True)


class LogWriter:
    """The group commit of the log spool for one process (a thread, started on first use)."""

    def __init__(self, folder: Path, index: LogIndex, fsync: bool, segment_size: int):
        self.folder, self.index, self.fsync, self.segment_size = folder, index, fsync, segment_size
        self.writer_id = _writer_id()   # names sort by age: the time in microseconds, then 8 random
        self._seq = 0
        self._fd = -1
        self._name = ""
        self._nonce = b""
        self._end = 0
        self._last = time.monotonic()
        self._waiting: list[tuple[LogIncoming, Future]] = []
        self._cond = threading.Condition()
        self.lock = threading.Lock()          # held while appending (batches and compaction)
        self._thread = threading.Thread(target=self._run, name="spool-log-commit", daemon=True)
        self._thread.start()
        self.batches = 0
        self.commits = 0

    # ---- the segment ---------------------------------------------------------------------
    def _open_segment(self) -> None:
        self._seq += 1
        name = f"{self.writer_id}-{self._seq:04d}"
        tmp = self.folder / f"{TMP_PREFIX}{name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            nonce = os.urandom(16)
            os.write(fd, HEAD.pack(HEAD_MAGIC, nonce))
            os.rename(tmp, self.folder / name)
            if self.fsync:
                os.fdatasync(fd)
                fsync_dir(self.folder)
        except OSError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        self._fd, self._name, self._nonce, self._end = fd, name, nonce, HEAD.size

    def seal(self) -> None:
        """Close the current segment (its lock goes with it): nothing more is appended to it."""
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    def active(self) -> str:
        return self._name if self._fd >= 0 else ""

    def append(self, items: list[tuple[str, bytes, int, int, object]]) -> list[Location]:
        """Append records (queue id, envelope, content CRC-32 over envelope+content, content
        length, content source: bytes or a readable file) and fdatasync once. Caller holds
        :attr:`lock`. Raises OSError (the segment is then sealed)."""
        if self._fd < 0:
            self._open_segment()
        fd, start = self._fd, self._end
        out = []
        try:
            pos = start
            for qid, env, crc, content_len, source in items:
                header = record_header(self._nonce, qid, len(env), content_len, crc)
                if isinstance(source, (bytes, bytearray)):
                    _write_all(fd, [header, env, source], pos)
                else:
                    _write_all(fd, [header, env], pos)
                    _copy_from(source, fd, pos + len(header) + len(env), content_len)
                out.append(Location(self._name, pos + len(header), len(env), content_len))
                pos += len(header) + len(env) + content_len
            if self.fsync:
                os.fdatasync(fd)
        except OSError:
            self.seal()
            raise
        self._end = pos
        self._last = time.monotonic()
        if self.index.reading:     # a process that only receives keeps no index (it would only grow)
            for (qid, *_), loc in zip(items, out):
                self.index.add(qid, loc)
            self.index.noted(self._name, self._nonce, pos)
        if pos >= self.segment_size:
            self.seal()
        return out

    # ---- group commit ----------------------------------------------------------------------
    def submit(self, incoming: LogIncoming) -> Future:
        fut: Future = Future()
        with self._cond:
            self._waiting.append((incoming, fut))
            self._cond.notify()
        return fut

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting:
                    if not self._cond.wait(IDLE_SEAL) and self._fd >= 0 \
                            and time.monotonic() - self._last >= IDLE_SEAL:
                        with self.lock:
                            self.seal()      # idle: let its messages' segment be retired once done
                batch, self._waiting = self._waiting, []
            err = self.commit([inc for inc, _ in batch])
            for inc, fut in batch:
                if err is not None:
                    fut.set_exception(err)
                else:
                    fut.set_result(None)

    def commit(self, incomings: list[LogIncoming]) -> OSError | None:
        """Append these messages and fdatasync once, in the calling thread; None, or the error
        that failed them all (each is then aborted, with ``error`` set)."""
        items = []
        for inc in incomings:
            if inc.spill is not None:
                try:
                    inc.spill.flush()
                except OSError:
                    pass
            items.append((inc.envelope.queue_id, inc.env, inc.crc, inc.content_size,
                          inc.spill if inc.spill is not None else inc.buf))
        try:
            with self.lock:
                self.append(items)
        except OSError as err:
            for inc in incomings:
                inc.abort()
                inc.error = err
            return err
        finally:
            self.batches += 1
            self.commits += len(incomings)
        for inc in incomings:
            inc.buf = bytearray()
            try:
                inc.close_spill()
            except OSError:
                pass
        return None


def _writer_id() -> str:
    return f"{time.time_ns() // 1000:016X}{os.urandom(4).hex().upper()}"


def _write_all(fd: int, parts: list, pos: int) -> None:
    data = b"".join(parts)
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view = view[n:]
        pos += n


def _copy_from(source, fd: int, pos: int, length: int) -> None:
    """Copy ``length`` octets of a spill file (from its start) to ``fd`` at ``pos``."""
    src = source.fileno()
    off = 0
    while off < length:
        chunk = os.pread(src, min(1 << 20, length - off), off)
        if not chunk:
            raise OSError(f"{getattr(source, 'name', 'spill file')}: shorter than the message")
        _write_all(fd, [chunk], pos + off)
        off += len(chunk)
