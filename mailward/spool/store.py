"""The durable spool: where an accepted message lives until every recipient is done.

DURABILITY CONTRACT
-------------------
* A message is answered ``250`` only after its envelope and content are written to
  ``incoming/ID``, the file is fsynced (:meth:`Spool.sync_async`), renamed to ``queue/ID`` and
  the ``queue`` folder is fsynced (:meth:`Spool.publish`, or both in :meth:`Spool.commit`). A crash at any moment before that leaves at most a file in
  ``incoming/``, which :meth:`Spool.recover` deletes at start: a partly received message is
  never delivered, and the client, which got no 250, still owns it.
* Concurrent commits share their work (group commit): one thread fsyncs the data of every
  message waiting (up to four fdatasyncs in flight at once, so that ext4 covers them with one
  journal commit); the event loop then renames all that are ready and fsyncs the folder once
  for the batch, right before it sends their 250s.
* Bodies are streamed to disk chunk by chunk; memory does not grow with message size.
* Per-recipient delivery results are appended to ``queue/ID.status`` (one JSON line each,
  fsynced) before the delivery is considered done; the message files are removed only when
  every recipient is delivered or bounced; an attempt that makes every recipient final writes
  only the removal (no status line for a message about to go). A crash between delivery and
  the status line or removal can deliver a message twice (at-least-once), never zero times.
* ``queue/ID.hold`` marks a held message; the delivery side skips it.

File format of ``queue/ID``: the line ``MAILWARD-SPOOL 1``, one line of JSON (the envelope),
then the message exactly as received (CRLF line ends, dot-unstuffed, our Received: first).

THE LOG FORMAT (``spool.format = "log"``)
------------------------------------------
New messages go as records into an append-only segment of this process (``SPOOL/log/``,
:mod:`mailward.spool.segments`, :mod:`mailward.spool.logwriter`) instead of a file each: every
message waiting is appended and the batch made durable with one ``fdatasync`` — by
:meth:`Spool.publish` right before the 250s (``spool.log_sync = "loop"``, the default), or by
the commit thread (``"thread"``); no file is created, renamed or folder-fsynced per message.
The contract above holds with "written to its segment and fdatasynced" in place of "renamed
into ``queue/`` and the folder fsynced": the 250 still follows durability, and a record torn
by a crash was never answered. Status and hold stay per message in ``queue/ID.status`` and
``queue/ID.hold``; a removal is the queue id appended to the segment's journal,
``log/.removed-SEGMENT``, after which those files are unlinked at once
(:mod:`mailward.spool.logstore`; a segment whose messages are all removed is retired; old,
mostly empty segments are compacted). Reading always covers both formats, so switching ``spool.format``
either way strands nothing: messages already queued are delivered from where they are.

Failure behaviour: an OSError while receiving (ENOSPC, EIO) surfaces to the caller, which
answers 452 4.3.1 and calls :meth:`Incoming.abort`; nothing half-written remains.

ONE SERVER PER SPOOL
--------------------
A server holds an exclusive ``flock`` on ``SPOOL/mailward.pid`` (:class:`SpoolLock`) for its
whole life; with ``server.workers > 1`` the master takes it and every worker inherits the same
open file, so the lock lasts until the last process of that server exits — the kernel drops
it even after SIGKILL. ``mailward serve`` takes the lock and binds its sockets before it
recovers the spool or writes its PID: a second start on the same spool (the same config, or
another port) exits 75 with one line and leaves every file in the spool, the PID file
included, as it was; a message the running server is receiving is not disturbed. The PID
file names the lock holder; a PID file that nobody holds locked names no running server
(:func:`running_server`). Only the lock holder may call :meth:`Spool.recover`. (The lock
itself: :mod:`mailward.spool.lock`; its names are importable from here as before.)
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mailward.fsutil import fsync_dir
from mailward.spool.lock import EX_TEMPFAIL, PID_FILE, SpoolLock, SpoolLocked, running_server
from mailward.spool.segments import read_or_empty

__all__ = ["EX_TEMPFAIL", "PID_FILE", "Envelope", "Incoming", "Recipient", "Spool", "SpoolLock", "SpoolLocked",
           "new_queue_id", "running_server"]

MAGIC = b"MAILWARD-SPOOL 1\n"
_ID_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O: ids are read aloud


def new_queue_id() -> str:
    """14 characters, time-ordered, unique across restarts: 9 of microseconds, 5 random
    (one getrandom call: 34**5, about 45 million, per microsecond)."""
    base = len(_ID_ALPHABET)
    n = int(time.time() * 1_000_000)
    stamp = []
    for _ in range(9):
        n, r = divmod(n, base)
        stamp.append(_ID_ALPHABET[r])
    rnd = int.from_bytes(os.urandom(5), "big")
    tail = []
    for _ in range(5):
        rnd, r = divmod(rnd, base)
        tail.append(_ID_ALPHABET[r])
    return "".join(reversed(stamp)) + "".join(tail)


FINAL_STATES = ("delivered", "bounced")   # a recipient in one of these is done


@dataclass
class Recipient:
    address: str
    params: dict[str, str | None] = field(default_factory=dict)
    state: str = "queued"          # queued, deferred, delivered, bounced
    detail: str = ""
    attempts: int = 0

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass
class Envelope:
    queue_id: str
    sender: str
    sender_params: dict[str, str | None]
    recipients: list[Recipient]
    received_at: float
    client_name: str = ""
    client_addr: str = ""
    helo: str = ""
    tls: dict[str, Any] = field(default_factory=dict)
    # octets of the message as spooled (headers and body, without the spool's own header):
    # counted on arrival, and worked out from the file at load — the one meaning of "size"
    content_size: int = 0

    def to_json(self) -> bytes:
        data = {
            "queue_id": self.queue_id, "sender": self.sender, "sender_params": self.sender_params,
            "recipients": [{"address": r.address, "params": r.params} for r in self.recipients],
            "received_at": self.received_at, "client_name": self.client_name,
            "client_addr": self.client_addr, "helo": self.helo, "tls": self.tls,
        }
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> "Envelope":
        d = json.loads(raw)
        return cls(d["queue_id"], d["sender"], d["sender_params"],
                   [Recipient(r["address"], r["params"]) for r in d["recipients"]], d["received_at"],
                   d.get("client_name", ""), d.get("client_addr", ""), d.get("helo", ""), d.get("tls", {}))


class Incoming:
    """A message being received: write chunks, then Spool.commit() or abort()."""

    def __init__(self, spool: "Spool", envelope: Envelope):
        self.spool = spool
        self.envelope = envelope
        self.path = spool.incoming / envelope.queue_id
        self._file = open(self.path, "xb", buffering=1 << 16)
        self.content_size = 0
        try:
            self._file.write(MAGIC)
            self._file.write(envelope.to_json() + b"\n")
        except OSError:
            self.abort()
            raise

    def write(self, chunk: bytes) -> None:
        try:
            self._file.write(chunk)
        except OSError:
            self.abort()
            raise
        self.content_size += len(chunk)

    def abort(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class GroupCommitter:
    """One thread that makes the data of waiting messages durable, batch by batch.

    It only flushes and fdatasyncs; publishing (rename into ``queue/`` and the folder fsync)
    is :meth:`Spool.publish`, which the event loop calls right before it writes the 250s.
    Doing the rename there, not here, keeps the time between "stored" and "answered" to a
    rename and one folder fsync: a crash inside that window is what makes a client send a
    message twice. (Measured with the crash harness: 2.8 ms mean when the thread renamed and
    the loop answered later; the loop's own latency was most of it.)
    """

    PARALLEL = 4   # fdatasyncs in flight at once for a batch (ext4 then journals them in one commit)

    def __init__(self, fsync: bool = True):
        self.fsync = fsync
        self._waiting: list[tuple[Incoming, Future]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="spool-commit", daemon=True)
        self._thread.start()
        self._pool = None
        self.batches = 0
        self.commits = 0

    def submit(self, incoming: Incoming) -> Future:
        fut: Future = Future()
        with self._cond:
            self._waiting.append((incoming, fut))
            self._cond.notify()
        return fut

    def _sync(self, incomings: list[Incoming]) -> list[OSError | None]:
        out: list[OSError | None] = []
        for incoming in incomings:
            try:
                f = incoming._file
                f.flush()
                if self.fsync:
                    os.fdatasync(f.fileno())
                f.close()
            except OSError as err:
                out.append(err)
            else:
                out.append(None)
        return out

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting:
                    self._cond.wait()
                batch, self._waiting = self._waiting, []
            incomings = [inc for inc, _ in batch]
            k = min(self.PARALLEL, len(batch)) if self.fsync else 1
            if k > 1:
                # Each fdatasync of a new file waits for a journal commit; issued one after the
                # other they wait for one commit each, issued together they share one.
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor
                    self._pool = ThreadPoolExecutor(self.PARALLEL - 1, thread_name_prefix="spool-sync")
                parts = [self._pool.submit(self._sync, incomings[i::k]) for i in range(1, k)]
                results: list = [None] * len(batch)
                results[0::k] = self._sync(incomings[0::k])
                for i, part in enumerate(parts, start=1):
                    results[i::k] = part.result()
            else:
                results = self._sync(incomings)
            # every future of the batch at once: the loop publishes them with one folder fsync
            for (incoming, fut), err in zip(batch, results):
                if err is not None:
                    incoming.abort()
                    fut.set_exception(err)
                else:
                    fut.set_result(None)
            self.batches += 1
            self.commits += len(batch)


class Spool:
    """The queue (see the module's contract). ``format``: how new messages are written,
    ``"files"`` (a file each) or ``"log"`` (segments); either is read."""

    def __init__(self, directory: Path, fsync: bool = True, format: str = "files",
                 segment_size: int = 16 << 20, compact_after: float = 600.0, log_sync: str = "loop"):
        self.directory = Path(directory)
        self.incoming = self.directory / "incoming"
        self.queue = self.directory / "queue"
        for d in (self.directory, self.incoming, self.queue):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if format not in ("files", "log"):
            raise ValueError(f"spool.format: expected 'files' or 'log', not {format!r}")
        self.fsync = fsync
        self.format = format
        self._log_args = (segment_size, compact_after, log_sync)
        self._log_store = None
        self._committer: GroupCommitter | None = None
        self._q = os.path.join(str(self.queue), "")   # "SPOOL/queue/": paths as strings (hot paths)

    @classmethod
    def from_settings(cls, settings) -> "Spool":
        """The spool a ``[spool]`` section (:class:`mailward.config.settings.SpoolSettings`) describes."""
        return cls(settings.directory, fsync=settings.fsync, format=getattr(settings, "format", "files"),
                   segment_size=getattr(settings, "segment_size", 16 << 20),
                   compact_after=getattr(settings, "compact_after", 600.0),
                   log_sync=getattr(settings, "log_sync", "loop"))

    @property
    def log(self):
        """The log store (:mod:`mailward.spool.logstore`) when this spool writes or holds a log."""
        if self._log_store is None:
            from mailward.spool.logstore import LogStore

            if self.format == "log" or LogStore.present(self.directory):
                self._log_store = LogStore(self.directory, self.fsync, *self._log_args)
        return self._log_store

    def _logged(self, queue_id: str):
        """The log store when ``queue_id`` is not a file in ``queue/`` (then it can only be in
        the log); None for a file. A message the log's index already holds needs no stat, and
        a file needs none of ``log/``."""
        store = self._log_store
        if store is not None and queue_id in store.index.where:
            return store
        if os.path.exists(self._q + queue_id):
            return None
        return self.log

    @property
    def committer(self) -> GroupCommitter:
        if self._committer is None:
            self._committer = GroupCommitter(self.fsync)
        return self._committer

    # ---- receiving --------------------------------------------------------------------------
    def recover(self) -> int:
        """Delete partly received messages left by a crash; returns how many.

        Also drops status and hold files whose message is gone (a crash inside remove()), and
        with a log retires and compacts its segments."""
        removed = 0
        for path in self.incoming.iterdir():
            path.unlink(missing_ok=True)
            removed += 1
        log = self.log
        if log is not None:
            log.recover()
        for path in self.queue.iterdir():
            base, dot, suffix = path.name.partition(".")
            if dot and suffix in ("status", "hold") and not (self.queue / base).exists() \
                    and not (log is not None and log.knows(base)):
                path.unlink(missing_ok=True)
        return removed

    def sweep_incoming(self, older_than: float) -> int:
        """Remove partial messages nobody has written to for ``older_than`` seconds (left by
        a worker process that died); a live session writes far more often than that."""
        removed, limit = 0, time.time() - older_than
        for path in self.incoming.iterdir():
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def begin(self, envelope: Envelope) -> Incoming:
        if self.format == "log":
            return self.log.begin(envelope)
        return Incoming(self, envelope)

    def sync_async(self, incoming: Incoming) -> Future:
        """Make the message's data durable (in a thread, shared with concurrent messages);
        then :meth:`publish` it, then answer 250."""
        if not isinstance(incoming, Incoming):
            return self.log.sync_async(incoming)
        return self.committer.submit(incoming)

    def publish(self, incomings: list[Incoming]) -> list[OSError | None]:
        """Move synced messages into ``queue/`` and fsync the folder once for all of them.

        Returns, per message, None (now durable and queued: answer 250) or the error (the
        message is removed: answer 4xx)."""
        logged = [inc for inc in incomings if not isinstance(inc, Incoming)]
        errors = iter(self.log.publish(logged) if logged else ())
        results: list[OSError | None] = []
        moved = False
        for incoming in incomings:
            if not isinstance(incoming, Incoming):
                results.append(next(errors))   # a log record: durable once synced
                continue
            try:
                os.rename(incoming.path, self.queue / incoming.envelope.queue_id)
                results.append(None)
                moved = True
            except OSError as err:
                incoming.abort()
                results.append(err)
        if moved and self.fsync:
            try:
                fsync_dir(self.queue)
            except OSError as err:
                results = [r if r is not None else err for r in results]
        return results

    def commit(self, incoming: Incoming) -> None:
        """Both steps, blocking: for callers outside the event loop (generated messages)."""
        self.sync_async(incoming).result()
        (err,) = self.publish([incoming])
        if err is not None:
            raise err

    # ---- reading and delivery state -------------------------------------------------------
    def ids(self) -> list[str]:
        names = set(os.listdir(self.queue))
        files = {n for n in names if "." not in n}
        log = self.log
        if log is not None:
            files.update(log.ids(names))
        return sorted(files)

    def load(self, queue_id: str) -> Envelope:
        """The envelope with each recipient's latest state applied."""
        log = self._logged(queue_id)
        if log is not None:
            raw, size, status = log.envelope_and_status(queue_id)
            try:
                env = Envelope.from_json(raw)
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{log.folder}: message {queue_id}: not a mailward envelope") from None
            env.content_size = size
            return _apply_status(env, status)
        path = self._q + queue_id
        with open(path, "rb") as f:
            if f.readline() != MAGIC:
                raise ValueError(f"{path}: not a mailward spool file")
            env = Envelope.from_json(f.readline())
            header_end = f.tell()
            size = os.fstat(f.fileno()).st_size
        env.content_size = max(0, size - header_end)
        return _apply_status(env, self._status(queue_id))

    def _status(self, queue_id: str) -> bytes:
        """The content of ``queue/ID.status`` (b"" when there is none)."""
        return read_or_empty(self._q + queue_id + ".status")

    def content(self, queue_id: str, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        """The message bytes (after the envelope line), in chunks."""
        log = self._logged(queue_id)
        if log is not None:
            yield from log.content(queue_id, chunk_size)
            return
        with open(self._q + queue_id, "rb") as f:
            f.readline()
            f.readline()
            while chunk := f.read(chunk_size):
                yield chunk

    def record(self, queue_id: str, rcpt_index: int, state: str, detail: str = "", attempts: int = 0) -> None:
        """Durably note one recipient's result (appended and fsynced). On a full file system
        a log's reserve (:meth:`mailward.spool.logstore.LogStore.ensure_reserve`) is given up
        for it, so that delivery can go on and free the segments."""
        line = json.dumps({"rcpt": rcpt_index, "state": state, "detail": detail, "attempts": attempts,
                           "at": time.time()}, ensure_ascii=False) + "\n"
        path = self._q + queue_id + ".status"
        for last in (False, True):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    _write_all(fd, ("\n" if last else "").encode() + line.encode("utf-8"))  # ends a torn try
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                return
            except OSError as err:
                if last or err.errno != errno.ENOSPC or self.log is None or not self.log.drop_reserve():
                    raise

    def remove(self, queue_id: str) -> None:
        """Drop a message whose recipients are all final."""
        log = self._logged(queue_id)
        if log is not None:
            if log.locate(queue_id) is not None:    # (not in the log, or removed already: nothing to do)
                log.mark_removed(queue_id)
            return
        for suffix in ("", ".status", ".hold"):
            (self.queue / f"{queue_id}{suffix}").unlink(missing_ok=True)
        if self.fsync:
            fsync_dir(self.queue)

    def held(self, queue_id: str) -> bool:
        return os.path.exists(self._q + queue_id + ".hold")

    def hold(self, queue_id: str) -> None:
        (self.queue / f"{queue_id}.hold").touch()

    def release(self, queue_id: str) -> None:
        (self.queue / f"{queue_id}.hold").unlink(missing_ok=True)

    def exists(self, queue_id: str) -> bool:
        log = self._logged(queue_id)
        if log is None:
            return os.path.exists(self._q + queue_id)
        return log.locate(queue_id) is not None

    def last_attempt(self, queue_id: str) -> float | None:
        """When a result was last recorded for this message (None: never tried). The
        scheduler derives the next retry from it, so retry timing survives a restart."""
        for line in reversed(self._status(queue_id).splitlines()):
            try:
                return float(json.loads(line)["at"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash
        return None

    def history(self, queue_id: str) -> list[dict]:
        """Every recorded result of this message, oldest first (rcpt, state, detail, attempts, at)."""
        out = []
        for line in self._status(queue_id).splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def _apply_status(env: Envelope, status: bytes) -> Envelope:
    """The envelope with each recipient's latest recorded state (``status``: the lines of
    ``queue/ID.status``)."""
    for line in status.splitlines():
        try:
            rec = json.loads(line)
            r = env.recipients[rec["rcpt"]]
        except (ValueError, KeyError, IndexError, TypeError):
            continue  # a torn last line after a crash (or the removal line): no result there
        r.state, r.detail, r.attempts = rec["state"], rec.get("detail", ""), rec.get("attempts", 0)
    return env


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
