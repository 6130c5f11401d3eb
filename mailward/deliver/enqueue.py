"""Messages the delivery side creates itself: bounces (DSNs) and alias expansions.

:func:`enqueue` writes a new message into the spool with the same durability as a received
one (:meth:`mailward.spool.store.Spool.commit`: fsync, rename, fsync the folder) and
returns its queue id; the caller records the original recipient as done only afterwards, so
a crash in between sends the notice twice at worst, never zero times.

Failure behaviour: OSError from the spool propagates (the caller defers and tries again).
"""

from __future__ import annotations

import time
from typing import Iterable

from mailward.spool.store import Envelope, Recipient, Spool, new_queue_id


def enqueue(spool: Spool, sender: str, recipients: list[tuple[str, dict]], content: Iterable[bytes] | bytes,
            *, sender_params: dict | None = None, origin: str = "localhost") -> str:
    qid = new_queue_id()
    env = Envelope(qid, sender, dict(sender_params or {}), [Recipient(a, dict(p)) for a, p in recipients],
                   time.time(), client_name=origin, client_addr="127.0.0.1", helo=origin)
    incoming = spool.begin(env)
    try:
        for chunk in ([content] if isinstance(content, bytes) else content):
            incoming.write(chunk)
    except BaseException:
        incoming.abort()
        raise
    spool.commit(incoming)
    return qid
