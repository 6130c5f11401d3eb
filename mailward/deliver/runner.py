"""The queue runner: takes committed messages from the spool and delivers them.

This first runner delivers recipients in local domains into Maildir and leaves the others
queued (the outbound client and the retry scheduler are added by the delivery role).
Contract: a recipient is recorded ``delivered`` only after its Maildir file is durable; the
message leaves the spool only when every recipient is final. At start, every message already
in the spool is picked up again, so a crash between 250 and delivery loses nothing.
"""

from __future__ import annotations

import asyncio
import time

from mailward import log
from mailward.deliver import maildir
from mailward.spool.store import Spool


def _delay(seconds: float) -> str:
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    text = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{days}+{text}" if days else text


class QueueRunner:
    def __init__(self, spool: Spool, *, local_domains, maildir_root, fsync: bool = True, concurrency: int = 4):
        self.spool = spool
        self.local_domains = {d.lower() for d in local_domains}
        self.maildir_root = maildir_root
        self.fsync = fsync
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task] = []
        self._concurrency = concurrency
        self._inflight: set[str] = set()

    def is_local(self, address: str) -> bool:
        return address == "postmaster" or address.rpartition("@")[2].lower().rstrip(".") in self.local_domains

    def start(self) -> None:
        for qid in self.spool.ids():
            self.submit(qid)
        self._workers = [asyncio.get_running_loop().create_task(self._work()) for _ in range(self._concurrency)]

    def submit(self, queue_id: str) -> None:
        if queue_id not in self._inflight:
            self._inflight.add(queue_id)
            self._queue.put_nowait(queue_id)

    def flush(self) -> None:
        """Retry every queued message now (``mailward queue flush``)."""
        for qid in self.spool.ids():
            self.submit(qid)

    async def stop(self) -> None:
        """Let in-flight deliveries finish; undelivered messages simply stay in the spool."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def idle(self) -> None:
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            qid = await self._queue.get()
            try:
                await asyncio.shield(asyncio.to_thread(self._deliver, qid))
            except asyncio.CancelledError:
                raise
            except Exception as err:  # one bad message must not stop the runner
                log.event(40, qid, stat=f"delivery failed: {err!r}")
            finally:
                self._inflight.discard(qid)
                self._queue.task_done()

    def _deliver(self, qid: str) -> None:
        if not self.spool.exists(qid) or self.spool.held(qid):
            return
        env = self.spool.load(qid)
        for index, rcpt in enumerate(env.recipients):
            if rcpt.final or not self.is_local(rcpt.address):
                continue
            start = time.time()
            try:
                path = maildir.deliver(self.maildir_root / maildir.mailbox_name(rcpt.address),
                                       self.spool.content(qid), sender=env.sender, recipient=rcpt.address,
                                       fsync=self.fsync)
            except OSError as err:
                self.spool.record(qid, index, "deferred", f"451 4.3.0 {err.strerror}", rcpt.attempts + 1)
                log.info(qid, to=f"<{rcpt.address}>", delay=_delay(time.time() - env.received_at),
                         mailer="local", dsn="4.3.0", stat=f"Deferred: {err.strerror}")
                continue
            self.spool.record(qid, index, "delivered", f"250 2.0.0 {path.name}", rcpt.attempts + 1)
            rcpt.state = "delivered"
            log.info(qid, to=f"<{rcpt.address}>", delay=_delay(time.time() - env.received_at),
                     xdelay=_delay(time.time() - start), mailer="local", dsn="2.0.0", stat="Sent")
        if all(r.final for r in env.recipients):
            self.spool.remove(qid)


def build_runner(config, spool: Spool) -> QueueRunner:
    """The queue runner the server uses (the seam between receiving and delivery)."""
    return QueueRunner(spool, local_domains=config.local.domains, maildir_root=config.local.maildir_root,
                       fsync=config.spool.fsync)


def local_user_check(config):
    """A function telling whether a local address has a mailbox; RCPT answers 550 5.1.1 if not.

    An empty ``local.users`` accepts every local part.
    """
    users = {u.lower() for u in config.local.users}

    def exists(address: str) -> bool:
        local = address.rpartition("@")[0].lower() if "@" in address else address.lower()
        return not users or local == "postmaster" or local.split("+", 1)[0] in users
    return exists
