"""The queue runner: takes committed messages from the spool and delivers them, on time.

Contract (the seam the server uses): :func:`build_runner` returns an object with ``start()``,
``submit(qid)``, ``flush()``, ``async stop()`` and ``async idle()``. Which local addresses
exist is :class:`mailward.deliver.maildir.Mailboxes`' decision, which the composition root
(:mod:`mailward.service`) also hands to RCPT.

* ``start()`` reads the spool: every message already there is scheduled again at the time its
  history asks (never tried → now; deferred → last attempt + backoff), so a crash or restart
  loses nothing and does not reset retry timing.
* ``submit(qid)`` — a message was just accepted (or generated): try it now.
* ``flush()`` — ``mailward queue flush`` (SIGUSR1): every queued message now, held ones excepted.
* ``stop()`` — no new attempts; in-flight attempts get ``DELIVERY_GRACE`` (5) seconds to finish, the
  rest are cancelled: their recipients keep the state last recorded, so they are tried again
  after a restart (at-least-once, never lost).
* ``idle()`` — returns when nothing is in flight and nothing is due now.

One attempt is :func:`mailward.deliver.attempt.attempt`; timing is
:class:`~mailward.deliver.scheduler.RetryPolicy`; at most ``max_deliveries`` messages at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time

from mailward import log
from mailward.deliver.aliases import AliasTable
from mailward.deliver.attempt import Context, attempt, is_local
from mailward.deliver.maildir import Mailboxes
from mailward.deliver.outbound import Outbound, Pool
from mailward.deliver.routes import RouteTable
from mailward.deliver.scheduler import Limits, RetryPolicy, Schedule
from mailward.deliver.tls_sources import TlsSources
from mailward.dns import Resolver
from mailward.listen import parse_listen
from mailward.spool.queue import Queue

DELIVERY_GRACE = 5.0
STS_REFRESH_CHECK = 3600.0   # seconds between two looks for MTA-STS policies due a refresh (RFC 8461 §10.2)


class QueueRunner:
    def __init__(self, ctx: Context, *, max_deliveries: int = 20, clock=time.time, grace: float = DELIVERY_GRACE):
        # a copy of the context that submits to this runner (the caller's is not changed)
        self.ctx = ctx = dataclasses.replace(ctx, submit=self.submit)
        self.spool = ctx.spool
        self.schedule = Schedule()
        self.clock = clock
        self.max_deliveries = max_deliveries
        self.grace = grace
        self._inflight: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()      # submitted while in flight: try once more after
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._sts_task: asyncio.Task | None = None
        self._dane_check: asyncio.Task | None = None
        self._sts_next = 0.0

    # ---- the seam ------------------------------------------------------------------------
    def start(self) -> None:
        self._wake = asyncio.Event()
        now = self.clock()
        for qid in self.spool.ids():
            self.schedule.add(qid, self._due_from_history(qid, now))
        self._task = asyncio.get_running_loop().create_task(self._loop())
        secure = getattr(self.ctx.outbound.tls_sources, "dane_resolver", None)
        if secure is not None:
            self._dane_check = asyncio.get_running_loop().create_task(self._check_dane_resolver(secure))

    @staticmethod
    async def _check_dane_resolver(resolver) -> None:
        """One warning when dane.resolver does not mark the root zone's DNSKEY RRset as validated:
        such a resolver makes every DANE lookup ``insecure`` without any answer looking wrong."""
        try:
            ok = await resolver.validates()
        except Exception:
            ok = False
        if not ok:
            log.event(30, None, dane="resolver does not validate",
                      reason="no AD bit on the root zone's DNSKEY RRset from dane.resolver: every TLSA answer "
                             "will look insecure and DANE will not apply; use a validating resolver (docs/dane.md)")

    def submit(self, queue_id: str) -> None:
        if queue_id in self._inflight:
            self._again.add(queue_id)
        else:
            self.schedule.add(queue_id, self.clock())
        self._poke()

    def adopt(self) -> int:
        """Schedule messages in the spool the runner does not know yet (queued by another
        process whose notice was lost); returns how many."""
        now, found = self.clock(), 0
        for qid in self.spool.ids():
            if qid not in self.schedule and qid not in self._inflight:
                self.schedule.add(qid, self._due_from_history(qid, now))
                found += 1
        if found:
            self._poke()
        return found

    def is_local(self, address: str) -> bool:
        """Delivered on this machine: a local domain, or a domain the route file sends to `local`."""
        return is_local(self.ctx, address)

    def flush(self) -> None:
        """Retry every queued message now (``mailward queue flush``)."""
        for qid in self.spool.ids():
            self.submit(qid)

    async def stop(self) -> None:
        self._stopping = True
        self._poke()
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()), timeout=self.grace)
        for task in list(self._inflight.values()):
            task.cancel()
        for task in (self._sts_task, self._dane_check):
            if task is not None:
                task.cancel()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, *self._inflight.values(), return_exceptions=True)
        await self.ctx.outbound.pool.close_all()

    async def idle(self) -> None:
        while True:
            nxt = self.schedule.next_time()
            if not self._inflight and not self._again and (nxt is None or nxt > self.clock()):
                return
            await asyncio.sleep(0.02)

    # ---- internals --------------------------------------------------------------------------
    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _due_from_history(self, qid: str, now: float) -> float:
        try:
            last = self.spool.last_attempt(qid)
            if last is None:
                return now
            env = self.spool.load(qid)
        except (OSError, ValueError):
            return now
        if all(r.final for r in env.recipients):
            return now  # done but not yet removed when the server stopped: remove it now
        attempts = max((r.attempts for r in env.recipients if not r.final), default=1)
        return self.ctx.retry.next_attempt(env.received_at, min(last, now), attempts, self.ctx.rng)

    async def _loop(self) -> None:
        while not self._stopping:
            now = self.clock()
            # only as many as there are free slots leave the timetable; the rest wait there
            # (re-adding them all at every wake-up made each accepted message cost O(queue))
            for qid in self.schedule.due(now, max(0, self.max_deliveries - len(self._inflight))):
                self._start(qid)
            nxt = self.schedule.next_time()
            wait = 30.0 if nxt is None else max(0.0, min(30.0, nxt - self.clock()))
            if nxt is not None and nxt <= now and len(self._inflight) >= self.max_deliveries:
                wait = 30.0  # woken when a slot frees
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
            await self.ctx.outbound.pool.expire()
            self._refresh_sts()

    def _refresh_sts(self) -> None:
        """Refresh cached MTA-STS policies in the background (MtaSts.refresh_due never raises):
        at most every STS_REFRESH_CHECK seconds (and a quarter of mta_sts.refresh_after), one at a time."""
        sts = getattr(self.ctx.outbound.tls_sources, "mta_sts", None)
        now = self.clock()
        if sts is None or now < self._sts_next or (self._sts_task is not None and not self._sts_task.done()):
            return
        self._sts_next = now + min(STS_REFRESH_CHECK, max(60.0, getattr(sts, "refresh_after", 86400.0) / 4))
        self._sts_task = asyncio.get_running_loop().create_task(sts.refresh_due())

    def _start(self, qid: str) -> None:
        task = asyncio.get_running_loop().create_task(self._attempt(qid))
        self._inflight[qid] = task

    async def _attempt(self, qid: str) -> None:
        again = None
        try:
            left = await attempt(self.ctx, qid)
            if left is not None:   # when to try again: decided here, and only here
                again = self.ctx.retry.next_attempt(left.received_at, self.clock(), left.attempts, self.ctx.rng)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # one bad message must not stop the runner
            log.event(40, qid, stat=f"delivery failed: {err!r}")
            again = self.clock() + self.ctx.retry.first
        finally:
            self._inflight.pop(qid, None)
            if qid in self._again:
                self._again.discard(qid)
                again = self.clock()
            if again is not None and not self._stopping:
                self.schedule.add(qid, again)
            self._poke()


def _client_tls_context(config):
    """The delivery side's TLS context: client certificate (confCLIENT_CERT/KEY), CA to verify with."""
    from mailward.config import ConfigError
    from mailward.tls.context import TLSConfigError, TLSFiles, client_context

    d, t = config.delivery, config.tls
    if not d.starttls:
        return None
    if bool(d.client_cert_file) != bool(d.client_key_file):
        raise ConfigError(f"{config.path}: delivery.client_cert_file and delivery.client_key_file go together")
    files = TLSFiles(cert_file=d.client_cert_file, key_file=d.client_key_file, ca_file=t.ca_file,
                     ca_path=t.ca_path, min_version=t.min_version, ciphers=t.ciphers)
    try:
        return client_context(files)
    except TLSConfigError as err:
        raise ConfigError(str(err)) from None


def _listen_addresses(config) -> frozenset[tuple[str, int]]:
    out = set()
    for item in config.server.listen:
        out.add(parse_listen(item))
    return frozenset(out)


def dane_resolver(config):
    """DANE is on when ``[dane] resolver`` names validating resolvers (RFC 7672 §2.1)."""
    from mailward.config import ConfigError
    section = getattr(config, "dane", None)
    servers = tuple(getattr(section, "resolver", ()) or ())
    if not servers:
        return None
    from mailward.dns import SecureResolver
    try:
        return SecureResolver(list(servers), timeout=getattr(section, "timeout", config.delivery.dns_timeout))
    except ValueError as err:
        raise ConfigError(f"{config.path}: dane.resolver: expected IP addresses ({err})") from None


def mta_sts(config, resolver):
    """MTA-STS (RFC 8461) when ``[mta_sts] enabled``; None otherwise."""
    section = getattr(config, "mta_sts", None)
    if section is None or not section.enabled:
        return None
    from mailward.mtasts.lookup import MtaSts
    return MtaSts.from_config(config, resolver)


_TLS_RPT_STORES: dict = {}


def tls_rpt_store(config):
    """The TLS-RPT counts (RFC 8460) when ``[tls_rpt] enabled``; None otherwise. One store per
    folder and process: a reload (which builds the runner again) and the report sender get the
    same one, which holds the folder's writer lock."""
    section = getattr(config, "tls_rpt", None)
    if section is None or not section.enabled:
        return None
    from pathlib import Path
    from mailward.tlsrpt.store import TlsRptStore
    folder = Path(section.state_dir or Path(config.spool.directory) / "tlsrpt")
    store = _TLS_RPT_STORES.get(folder)
    if store is None:
        store = _TLS_RPT_STORES[folder] = TlsRptStore(folder, sync_interval=section.sync_interval,
                                                      compact_bytes=section.compact_bytes,
                                                      keep_days=section.keep_days)
    return store


def build_runner(config, spool: Queue) -> QueueRunner:
    """The queue runner the server uses (the seam between receiving and delivery)."""
    from mailward.config import ConfigError
    from mailward.deliver.aliases import AliasError
    from mailward.deliver.routes import RouteError
    from mailward.policy.deliver import DeliveryPolicy

    d = config.delivery
    hostname = config.server.hostname
    try:
        routes = RouteTable(d.route_file or None)
        aliases = AliasTable(config.local.aliases or None)
        resolver = Resolver(list(d.resolver), timeout=d.dns_timeout)
    except (RouteError, AliasError) as err:
        raise ConfigError(str(err)) from None
    except ValueError as err:
        raise ConfigError(f"{config.path}: delivery.resolver: expected IP addresses ({err})") from None
    policy = DeliveryPolicy.from_config(config)
    secure = dane_resolver(config)
    if secure is not None:   # MX lookups must see the AD bit too (RFC 7672 §2.2.1)
        resolver = secure
    sources = TlsSources(policy, floor=d.tls_floor, dane_resolver=secure,
                         mta_sts=mta_sts(config, resolver), recorder=tls_rpt_store(config))
    outbound = Outbound(helo_name=d.helo_name or hostname, tls_context=_client_tls_context(config),
                        starttls=d.starttls, fallback_to_clear=d.tls_fallback_to_clear,
                        connect_timeout=d.connect_timeout, command_timeout=d.command_timeout,
                        policy=policy, pool=Pool(d.connection_idle, d.max_messages_per_connection),
                        tls_sources=sources)
    ctx = Context(spool=spool, hostname=hostname, local_domains=frozenset(x.lower() for x in config.local.domains),
                  maildir_root=config.local.maildir_root, outbound=outbound, resolver=resolver, routes=routes,
                  aliases=aliases, limits=Limits(d.max_deliveries, d.max_per_destination),
                  retry=RetryPolicy.from_config(d), users=frozenset(u.lower() for u in config.local.users),
                  smtp_port=d.smtp_port, fsync=config.spool.fsync, bounce_max_content=d.bounce_max_content,
                  delay_warning=d.delay_warning, own_addrs=_listen_addresses(config), rng=random.Random(),
                  mailboxes=Mailboxes.from_config(config, aliases))
    return QueueRunner(ctx, max_deliveries=d.max_deliveries)

