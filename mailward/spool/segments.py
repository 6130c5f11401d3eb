"""Segment files of the log spool (``spool.format = "log"``): their format, and reading them.

A segment, ``SPOOL/log/NAME``, is written by one process only (:mod:`mailward.spool.logwriter`),
which holds an exclusive ``flock`` on it while it may still append; once that process closes
it (the segment is full, or the process exits, even by SIGKILL) the segment is *sealed* and
never written again. Names are ``WRITERID-SEQ``, WRITERID a fresh queue-id-like stamp per
writer, so names sort by age; a segment is created as ``.tmp-NAME``, locked, given its head and
then renamed into place, so a visible segment that nobody holds locked is sealed.

FORMAT
------
* Head, 32 octets: ``MAILWARD-LOG 1\\n\\0`` and a 16-octet random nonce.
* Records, one per message, back to back: a 50-octet header (``MWLG``, the segment's nonce,
  the 14-character queue id, the envelope's length (u32 LE), the content's length (u64 LE),
  a CRC-32 (u32 LE)), the envelope as the file spool writes it (one JSON object) and the
  message exactly as received. The CRC covers envelope, content and the header's first 46
  octets, in that order (``zlib.crc32``).

A reader stops at the first record that does not check out (short, wrong magic, another
segment's nonce, bad CRC): that is the end of what was written, or a write torn by a crash
before its fdatasync, which was never acknowledged. The same queue id may appear in two
segments while a compaction copies a live message forward: both copies are identical, the
index keeps one.

Whether a message is still queued is not in the segments: ``remove`` appends its queue id
to the segment's removal journal, ``log/.removed-NAME`` (see :mod:`mailward.spool.logstore`). Failure behaviour: reading never
raises for a damaged segment (the damaged part is the end of it); OSError from the file
system surfaces to the caller, except a segment that vanished (retired meanwhile), which is
simply gone.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

HEAD_MAGIC = b"MAILWARD-LOG 1\n\0"
HEAD = struct.Struct("<16s16s")
RECORD = struct.Struct("<4s16s14sIQI")
RECORD_MAGIC = b"MWLG"
TMP_PREFIX = ".tmp-"


def record_header(nonce: bytes, queue_id: str, env_len: int, content_len: int, body_crc: int) -> bytes:
    """The header of a record whose envelope+content CRC-32 is ``body_crc``."""
    prefix = RECORD.pack(RECORD_MAGIC, nonce, queue_id.encode("ascii"), env_len, content_len, 0)[:-4]
    return prefix + struct.pack("<I", zlib.crc32(prefix, body_crc))


@dataclass(frozen=True)
class Location:
    segment: str
    offset: int          # where the envelope starts
    env_len: int
    content_len: int

    @property
    def end(self) -> int:
        return self.offset + self.env_len + self.content_len


def scan(fd: int, start: int, nonce: bytes | None) -> tuple[bytes | None, list[tuple[str, int, int, int]], int]:
    """Read records from ``start`` (0: from the head) of an open segment.

    Returns (nonce, [(queue id, envelope offset, env_len, content_len)], offset after the last
    good record). A missing or bad head gives (None, [], 0)."""
    if start == 0:
        head = os.pread(fd, HEAD.size, 0)
        if len(head) < HEAD.size:
            return None, [], 0
        magic, nonce = HEAD.unpack(head)
        if magic != HEAD_MAGIC:
            return None, [], 0
        start = HEAD.size
    found = []
    pos = start
    while True:
        raw = os.pread(fd, RECORD.size, pos)
        if len(raw) < RECORD.size:
            break
        magic, rnonce, qid, env_len, content_len, crc = RECORD.unpack(raw)
        if magic != RECORD_MAGIC or rnonce != nonce:
            break
        body = pos + RECORD.size
        c, off, left = 0, body, env_len + content_len
        while left > 0:
            chunk = os.pread(fd, min(left, 1 << 20), off)
            if not chunk:
                break
            c = zlib.crc32(chunk, c)
            off += len(chunk)
            left -= len(chunk)
        if left or zlib.crc32(raw[:-4], c) != crc:
            break
        try:
            found.append((qid.decode("ascii"), body, env_len, content_len))
        except UnicodeDecodeError:
            break
        pos = body + env_len + content_len
    return nonce, found, pos


def read_or_empty(path: str) -> bytes:
    """A small file's content, b"" when it does not exist (the status files beside the log)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    try:
        parts = []
        while chunk := os.read(fd, 1 << 16):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Does a writer hold this segment (or is it gone)? True when in doubt."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)     # also drops the lock we may have got
    return False


class LogIndex:
    """Where each message of ``SPOOL/log`` lies, for one process; :meth:`refresh` reads what
    was appended since (every byte is read once per process)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.where: dict[str, Location] = {}
        self.copies: dict[str, set[str]] = {}     # queue id -> segments holding it
        self.by_segment: dict[str, set[str]] = {}
        self._scanned: dict[str, tuple[bytes | None, int, int]] = {}  # name -> (nonce, offset, size)
        self._settled: set[str] = set()   # sealed and read to the end: never read again
        self.reading = False              # has this process read the log? (writers add only then)

    def segments(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.folder) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def refresh(self) -> None:
        self.reading = True
        names = self.segments()
        for gone in set(self._scanned) - set(names):
            self.forget(gone)
        for name in names:
            if name not in self._settled:
                self.refresh_segment(name)

    def settled(self, name: str) -> bool:
        """Is ``name`` sealed and read to its end (its set of messages final)?"""
        return name in self._settled

    def refresh_segment(self, name: str) -> None:
        """Read what was appended to ``name`` since the last look. A segment that did not grow
        and that no writer holds is sealed: read to its end once more, then never again."""
        if name in self._settled:
            return
        nonce, offset, size = self._scanned.get(name, (None, 0, -1))
        try:
            fd = os.open(self.folder / name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.forget(name)
            return
        try:
            now_size = os.fstat(fd).st_size
            if now_size == size:
                if is_locked(self.folder / name):
                    return
                self._settled.add(name)
            nonce, found, end = scan(fd, offset, nonce)
        finally:
            os.close(fd)
        self._scanned[name] = (nonce, end if nonce else 0, now_size)
        for qid, off, env_len, content_len in found:
            self.add(qid, Location(name, off, env_len, content_len))

    def add(self, qid: str, loc: Location) -> None:
        self.where.setdefault(qid, loc)
        self.copies.setdefault(qid, set()).add(loc.segment)
        self.by_segment.setdefault(loc.segment, set()).add(qid)

    def noted(self, name: str, nonce: bytes, end: int) -> None:
        """The writer of this process appended up to ``end`` (its records are :meth:`add`-ed)."""
        _, offset, _ = self._scanned.get(name, (None, 0, -1))
        if offset <= end:
            self._scanned[name] = (nonce, end, end)

    def forget(self, name: str) -> None:
        self._scanned.pop(name, None)
        self._settled.discard(name)
        for qid in self.by_segment.pop(name, set()):
            holders = self.copies.get(qid, set())
            holders.discard(name)
            if not holders:
                self.copies.pop(qid, None)
                self.where.pop(qid, None)
            elif self.where.get(qid) and self.where[qid].segment == name:
                other = next(iter(holders))
                self.where.pop(qid)
                self._relocate(qid, other)

    def _relocate(self, qid: str, name: str) -> None:
        """Find ``qid`` again in segment ``name`` (a compaction copy)."""
        try:
            fd = os.open(self.folder / name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            _, found, _ = scan(fd, 0, None)
        finally:
            os.close(fd)
        for q, off, env_len, content_len in found:
            if q == qid:
                self.where[qid] = Location(name, off, env_len, content_len)
                return

    def locate(self, qid: str) -> Location | None:
        loc = self.where.get(qid)
        if loc is None:
            self.refresh()
            loc = self.where.get(qid)
        return loc

    def read_envelope(self, loc: Location) -> bytes:
        fd = os.open(self.folder / loc.segment, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, loc.env_len, loc.offset)
        finally:
            os.close(fd)

    def read_content(self, loc: Location, chunk_size: int) -> Iterator[bytes]:
        with open(self.folder / loc.segment, "rb", buffering=0) as f:
            f.seek(loc.offset + loc.env_len)
            left = loc.content_len
            while left > 0:
                chunk = f.read(min(chunk_size, left))
                if not chunk:
                    raise OSError(f"{self.folder / loc.segment}: ends inside message content")
                left -= len(chunk)
                yield chunk
