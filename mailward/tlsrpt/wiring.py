"""TLS-RPT as the server runs it: one recorder for delivery, one task sending due reports.

The composition root (:mod:`mailward.service`) builds :class:`TlsRpt` once, in the process
that delivers (the single server, or the master with ``server.workers > 1``):

* :attr:`TlsRpt.recorder` — what delivery calls ``record(...)`` on after each outbound
  session (:meth:`mailward.tlsrpt.store.TlsRptStore.record`). With ``tls_rpt.enabled =
  false`` it is a :class:`NullRecorder` whose ``record`` does nothing, so callers need no test.
* :meth:`TlsRpt.start` (inside the running event loop) starts the sender task; set
  :attr:`TlsRpt.on_queued` to the queue runner's ``submit`` first so a queued report message
  is delivered at once. ``await`` :meth:`TlsRpt.stop` at shutdown: the report at hand is
  finished, the task ends, the store is closed (fsync).
* :meth:`TlsRpt.poke` — look for due reports now.

One writable store per folder and process: when delivery has opened it already
(:func:`mailward.deliver.runner.tls_rpt_store`), pass that one to :meth:`TlsRpt.from_config`.

The state folder is ``tls_rpt.state_dir``, else ``SPOOL/tlsrpt`` (inside ``spool.directory``,
which start-up already hands to ``server.user``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

from mailward import log
from mailward.dns import Resolver
from mailward.tlsrpt.send import ReportSender, SendSettings
from mailward.tlsrpt.store import TlsRptStore


class NullRecorder:
    """``tls_rpt.enabled = false``: every call is accepted and forgotten."""

    def record(self, **fields) -> None:
        return None

    def sync(self) -> None:
        return None

    def close(self) -> None:
        return None


def state_dir(config) -> Path:
    return Path(config.tls_rpt.state_dir) if config.tls_rpt.state_dir else Path(config.spool.directory) / "tlsrpt"


def open_store(config, **kw) -> TlsRptStore:
    t = config.tls_rpt
    return TlsRptStore(state_dir(config), sync_interval=t.sync_interval, compact_bytes=t.compact_bytes,
                       keep_days=t.keep_days, **kw)


def build_sender(config, store: TlsRptStore, spool, on_queued: Callable[[str], None] | None = None) -> ReportSender:
    resolver = Resolver(list(config.delivery.resolver), timeout=config.delivery.dns_timeout)
    return ReportSender(store, resolver, spool, SendSettings.from_config(config), on_queued=on_queued)


class TlsRpt:
    def __init__(self, recorder, sender: ReportSender | None):
        self.recorder = recorder
        self.sender = sender
        self._task: asyncio.Task | None = None

    @classmethod
    def from_config(cls, config, spool, store: TlsRptStore | None = None) -> "TlsRpt":
        """``store``: the one the delivery side already opened in this process (there must be
        one writable store per folder and process: a second one would find the folder's lock
        held and count in memory only). None: open it here."""
        if not config.tls_rpt.enabled:
            return cls(NullRecorder(), None)
        store = store if store is not None else open_store(config)
        return cls(store, build_sender(config, store, spool))

    @property
    def on_queued(self) -> Callable[[str], None] | None:
        return self.sender.on_queued if self.sender else None

    @on_queued.setter
    def on_queued(self, fn: Callable[[str], None] | None) -> None:
        if self.sender is not None:
            self.sender.on_queued = fn

    def start(self) -> None:
        if self.sender is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.sender.run(), name="tls-rpt")
            log.event(10, None, tlsrpt="started", state=str(self.recorder.path))

    def poke(self) -> None:
        if self.sender is not None:
            self.sender.poke()

    async def stop(self, grace: float | None = None) -> None:
        """Let the report being sent finish (at most ``grace`` seconds, default
        ``tls_rpt.http_timeout`` + 5), then cancel the task; close the store (fsync)."""
        if self._task is not None:
            self.sender.stop()
            if grace is None:
                grace = self.sender.settings.http_timeout + 5
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except (asyncio.TimeoutError, Exception):   # noqa: BLE001 - stopping anyway
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.recorder.close()
