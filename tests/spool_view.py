"""What a test sees in a mailward spool, whatever ``spool.format`` wrote it ("files" or "log").

Tests assert what the spool holds through :class:`mailward.spool.store.Spool`, the API the
server and ``mailward queue`` read it with, not through the file layout, so that each
assertion holds for both formats and for a switch of the default:

* :func:`queued` — the queue ids still queued (a ``queue/ID`` file, or a record in ``log/``
  not marked removed); :func:`leftovers` — those and any status or hold file left behind;
* :func:`envelope`, :func:`stored_envelope`, :func:`content` — one message as the spool holds it;
* :func:`partial_files` — the files of messages being received (or left half-received by a
  crash). Both formats keep them in ``SPOOL/incoming/ID``: "files" from the first octet, "log"
  once the message outgrows what it holds in memory (:data:`SPILL`, ``mailward.spool.logwriter``);
  a test that needs a partial message on disk sends :func:`partial_body` of more than that;
* :func:`message_files` — the files on disk that hold an accepted message (for ownership and
  permission checks): ``queue/ID``, or the log segment(s) holding its record;
* :func:`queue_message` — put a message into the spool in a given format, as an earlier run of
  the server left it; :func:`spool_format` — the format a server's config file names.

Reading never writes (only :func:`queue_message` does): a spool folder that does not exist yet reads as empty.

Failure behaviour: what :class:`Spool` raises (FileNotFoundError for a message not queued,
ValueError for a damaged envelope) goes to the test as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

from mailward.spool.logwriter import SPILL
from mailward.spool.store import Envelope, Spool

__all__ = ["SPILL", "content", "envelope", "leftovers", "message_files", "partial_body", "partial_files", "queue_message",
           "queued", "spool_format", "spool_of", "stored_envelope"]


def _directory(where) -> Path:
    """``where``: a test server (anything with a ``spool`` folder, e.g. tests.conftest.MTA) or the folder."""
    return Path(getattr(where, "spool", where))


def spool_of(where) -> Spool:
    """A reading view of the spool (a fresh one each time: it sees everything written so far)."""
    return Spool(_directory(where), fsync=False)


def queued(where) -> list[str]:
    """The queue ids of every message still queued, sorted."""
    if not (_directory(where) / "queue").is_dir():
        return []
    return spool_of(where).ids()


def leftovers(where) -> list[str]:
    """What is left of messages: every queued id, and every file in ``queue/`` that belongs to
    no message of the log (a message's status and hold files go with it; a crash may bring
    those of a removed log message back until its segment is retired). Empty: nothing left
    behind."""
    if not (_directory(where) / "queue").is_dir():
        return []
    spool = spool_of(where)
    log = spool.log
    files = {p.name for p in spool.queue.iterdir()
             if p.name != "mailward.pid" and not (log is not None and log.knows(p.name.partition(".")[0]))}
    return sorted(files | set(spool.ids()))


def envelope(where, qid: str) -> Envelope:
    """The envelope of ``qid`` with each recipient's latest state."""
    return spool_of(where).load(qid)


def stored_envelope(where, qid: str) -> dict:
    """The envelope as the spool stores it (its JSON object: sender, sender_params, recipients
    with their params, client, helo, tls)."""
    return json.loads(envelope(where, qid).to_json())


def content(where, qid: str) -> bytes:
    """The message as spooled: our Received: first, CRLF line ends, dot-unstuffed."""
    return b"".join(spool_of(where).content(qid))


def partial_files(where) -> list[Path]:
    """Files of messages being received, or left half-received (``SPOOL/incoming``)."""
    incoming = _directory(where) / "incoming"
    return sorted(incoming.iterdir()) if incoming.is_dir() else []


def partial_body(octets: int = SPILL + 64 * 1024) -> bytes:
    """The first part of a message (headers, then 80-octet lines, no final dot) of at least
    ``octets``: by default more than the log spool holds in memory, so that either format has
    it on disk in ``incoming/``."""
    head = b"Subject: in flight\r\n\r\n"
    return head + (b"y" * 78 + b"\r\n") * (octets // 80 + 1)


def message_files(where, qid: str) -> list[Path]:
    """The files that hold the accepted message ``qid`` (FileNotFoundError: not queued)."""
    spool = spool_of(where)
    path = spool.queue / qid
    if path.exists():
        return [path]
    log = spool.log
    if log is not None and log.locate(qid) is not None:
        return sorted(log.folder / name for name in log.index.copies.get(qid, ()))
    raise FileNotFoundError(f"{spool.directory}: no message {qid} queued")


def spool_format(mta) -> str:
    """The ``spool.format`` the server's config file names (or its default)."""
    from mailward.config import load

    return load(mta.config).spool.format


def queue_message(where, envelope: Envelope, data: bytes, format: str) -> None:
    """Put an accepted message into the spool as a server writing ``format`` does (for what an
    earlier run left), then let go of its log segment as a server that stops does."""
    spool = Spool(_directory(where), fsync=False, format=format)
    incoming = spool.begin(envelope)
    incoming.write(data)
    spool.commit(incoming)
    if format == "log":
        with spool.log.writer.lock:
            spool.log.writer.seal()
