"""Local delivery into Maildir (tmp → new), durable before it is reported delivered.

The message is written to ``USER/tmp/UNIQUE``, fsynced, hard-linked (rename) into
``USER/new/UNIQUE`` and the ``new`` folder is fsynced; only then does the caller record the
recipient as delivered. Lines end in LF inside Maildir, as mail readers expect; a
``Return-Path:`` and ``Delivered-To:`` are prepended (RFC 5321 §4.4 asks the final delivery
to add Return-Path). Unique names follow the Maildir convention ``TIME.MmicroPpid_n.HOST``.

Failure behaviour: OSError propagates; an ENOSPC/EIO is transient for the scheduler.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import time
from pathlib import Path
from typing import Iterable

from mailward.fsutil import fsync_dir

_counter = itertools.count()
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")


def mailbox_name(address: str) -> str:
    """The folder for a local address: the local part, lower case, sub-address dropped,
    with anything that could escape the Maildir root replaced."""
    local = address.rpartition("@")[0] if "@" in address else address
    local = local.strip('"').lower().split("+", 1)[0]
    safe = re.sub(r"[^a-z0-9._\-]", "_", local).lstrip(".")
    return safe or "_"


def ensure_maildir(path: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)


def deliver(maildir: Path, chunks: Iterable[bytes], *, sender: str, recipient: str, fsync: bool = True,
            key: str | None = None) -> Path:
    """Write one message into ``maildir``; returns the path in ``new/``.

    ``key`` (queue id and recipient index) makes the name stable for that delivery: if a crash
    came after the file reached ``new/`` but before the spool recorded it, the retry finds the
    file and does not deliver it twice (unless the reader already moved it to ``cur/``).
    """
    ensure_maildir(maildir)
    now = time.time()
    if key:
        unique = f"{key}.{_HOST}"
        if (maildir / "new" / unique).exists():
            return maildir / "new" / unique
    else:
        unique = f"{int(now)}.M{int((now % 1) * 1e6)}P{os.getpid()}_{next(_counter)}.{_HOST}"
    tmp = maildir / "tmp" / f"{unique}.{os.getpid()}_{next(_counter)}"
    final = maildir / "new" / unique
    with open(tmp, "xb") as f:  # tmp name unique per attempt; the rename makes it visible at once
        f.write(f"Return-Path: <{sender}>\nDelivered-To: {recipient}\n".encode("utf-8"))
        carry = b""
        for chunk in chunks:
            data = carry + chunk
            # keep a trailing CR: its LF may start the next chunk
            carry = b"\r" if data.endswith(b"\r") else b""
            if carry:
                data = data[:-1]
            f.write(data.replace(b"\r\n", b"\n"))
        f.write(carry)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.rename(tmp, final)
    if fsync:
        fsync_dir(final.parent)
    return final
