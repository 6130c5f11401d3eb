"""Sending the daily reports (RFC 8460 §3, §5): DNS, build, gzip, deliver — once per destination.

For each (day, policy domain) that :meth:`TlsRptStore.due` lists, :meth:`ReportSender.send_one`:

1. looks up ``_smtp._tls.<domain>`` TXT (:meth:`mailward.dns.Resolver.txt`) and applies §3
   (:func:`mailward.tlsrpt.record_txt.select`). A temporary DNS failure keeps the day for
   another try after ``tls_rpt.retry_interval``; no (valid) record finishes the day: nothing is
   sent, the counts are dropped.
2. builds the report (:mod:`.report`) and gzips it (the report-id is derived from submitter,
   domain and day, so a retry sends the same report).
3. delivers it to every ``rua`` not yet served for that day:

   * ``mailto:`` — all mailto addresses get one multipart/report message (:mod:`.message`,
     §5.3), written into mailward's own spool with the spool's durability contract (fsync,
     rename, fsync the folder) and handed to the queue runner (``on_queued(queue_id)``), so it
     is delivered, retried and bounced like any mail. Its envelope names ``tls-rpt`` as
     client and HELO (:func:`mailward.tlsrpt.results.is_report_envelope`): delivery is to
     leave its sessions out of the counts and not let a TLS failure stop it (§5.3).
   * ``https:`` — a POST of the gzipped JSON (§5.2) with ``Content-Type:
     application/tlsrpt+gzip`` (§5.4), over TLS verified against the WebPKI
     (``tls_rpt.ca_file``, else the system's trust store; the host name is checked). The
     host's addresses come from mailward's resolver (``delivery.resolver``), as every other
     lookup. A 2xx answer is success; anything else (refused, TLS failure, timeout, another
     status) keeps that destination for another try (§5.5).

   Each destination served is remembered durably (:meth:`TlsRptStore.mark_sent`), so a retry
   or a restart never sends a destination the same report twice; when all are served the day
   is finished (:meth:`TlsRptStore.mark_done`).

Log lines (one per destination)::

    tlsrpt=sent, day=2026-11-30, domain=example.net, rua=https://..., report_id=..., status=200
    QID: tlsrpt=queued, day=2026-11-30, domain=example.net, rua=mailto:tlsrpt@example.net, report_id=...
    tlsrpt=deferred, day=..., domain=..., rua=..., error=...
    tlsrpt=no record, day=..., domain=..., record=_smtp._tls.example.net

Stopping: :meth:`ReportSender.stop` lets the report at hand finish (its POST answered, its
mail queued, each marked sent) and starts no other; a task cancelled in the middle of a report
(after the stop's grace, :meth:`mailward.tlsrpt.wiring.TlsRpt.stop`) may send that report to
a destination again after the restart — at least once, never lost.

Failure behaviour: nothing raises out of :meth:`ReportSender.send_due` for a peer's fault (DNS,
HTTP, a bad record); an OSError writing the spool defers that report. :meth:`ReportSender.run`
logs and survives anything else.
"""

from __future__ import annotations

import asyncio
import email.utils
import http.client
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from mailward import __version__, log
from mailward.dns import DNSError, Resolver
from mailward.spool.store import Envelope, Recipient, new_queue_id
from mailward.tlsrpt.message import GZIP_TYPE, gzip_report, report_message
from mailward.tlsrpt.record_txt import record_name, select
from mailward.tlsrpt.report import build_report, report_json
from mailward.tlsrpt.results import REPORT_ORIGIN
from mailward.tlsrpt.store import TlsRptStore


@dataclass(frozen=True)
class SendSettings:
    organization: str
    contact: str
    submitter: str           # the sending MTA's name (server.hostname): §5.1 file name, §5.3 headers
    from_address: str
    ca_file: str = ""
    http_timeout: float = 30.0
    send_hour: int = 1
    retry_interval: float = 3600.0
    check_interval: float = 300.0
    fsync: bool = True

    @classmethod
    def from_config(cls, config) -> "SendSettings":
        t, host = config.tls_rpt, config.server.hostname
        return cls(organization=t.organization or host, contact=t.contact or f"postmaster@{host}",
                   submitter=host, from_address=t.from_address or f"postmaster@{host}",
                   ca_file=str(t.ca_file or ""), http_timeout=t.http_timeout, send_hour=t.send_hour,
                   retry_interval=t.retry_interval, check_interval=t.check_interval, fsync=config.spool.fsync)


@dataclass(frozen=True)
class Outcome:
    """What happened to one destination (or to the whole day, with ``rua`` "")."""
    day: str
    domain: str
    rua: str
    status: str              # sent, queued, deferred, no record, nothing to send
    detail: str = ""
    queue_id: str = ""

    def line(self) -> str:
        text = f"{self.day} {self.domain}: {self.status}"
        if self.rua:
            text += f" {self.rua}"
        if self.queue_id:
            text += f" (queue id {self.queue_id})"
        return text + (f": {self.detail}" if self.detail else "")


class _HTTPSTo(http.client.HTTPSConnection):
    """HTTPS to a given address, the certificate checked against the URL's host name."""

    def __init__(self, host: str, port: int, address: str, **kw):
        super().__init__(host, port, **kw)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post_report(url: str, body: bytes, context: ssl.SSLContext, timeout: float, address: str) -> int:
    """POST ``body`` to an https URL at ``address``; returns the HTTP status. Raises OSError,
    ssl.SSLError or http.client.HTTPException when no answer came. Blocking: run it in a thread."""
    u = urllib.parse.urlsplit(url)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    conn = _HTTPSTo(u.hostname, u.port or 443, address, timeout=timeout, context=context)
    try:
        conn.request("POST", path, body=body, headers={
            "Content-Type": GZIP_TYPE, "User-Agent": f"mailward/{__version__} (RFC 8460 TLS report)"})
        response = conn.getresponse()
        response.read(65536)
        return response.status
    finally:
        conn.close()


def https_context(ca_file: str = "") -> ssl.SSLContext:
    """WebPKI validation: the named CA file or the system's trust store, host name checked."""
    return ssl.create_default_context(cafile=ca_file or None)


class ReportSender:
    def __init__(self, store: TlsRptStore, resolver: Resolver, spool, settings: SendSettings, *,
                 on_queued: Callable[[str], None] | None = None, clock=time.time):
        self.store = store
        self.resolver = resolver
        self.spool = spool
        self.settings = settings
        self.on_queued = on_queued
        self.clock = clock
        self._not_before: dict[tuple[str, str], float] = {}   # retry times (in memory)
        self._context: ssl.SSLContext | None = None
        self._wake: asyncio.Event | None = None
        self.stopping = False      # set by :meth:`stop`: finish the report at hand, start no other

    # ---- one report ----------------------------------------------------------------------
    def report_for(self, day: str, domain: str) -> dict:
        s = self.settings
        return build_report(organization=s.organization, contact=s.contact, submitter=s.submitter,
                            domain=domain, day=day, policies=self.store.domains(day).get(domain, {}))

    async def send_one(self, day: str, domain: str) -> list[Outcome]:
        name = record_name(domain)
        try:
            record = select(await self.resolver.txt(name))
        except DNSError as err:
            return [self._defer(day, domain, "", f"DNS: {err}")]
        if record is None or not record.rua:
            self.store.mark_done(day, domain)
            log.info(None, tlsrpt="no record", day=day, domain=domain, record=name)
            return [Outcome(day, domain, "", "no record", f"no usable TLSRPT record at {name}")]
        report = self.report_for(day, domain)
        gzipped = gzip_report(report_json(report))
        rid = report["report-id"]
        done = self.store.sent_to(day, domain)
        outcomes: list[Outcome] = []
        mailto = [u for u in record.rua if u.lower().startswith("mailto:") and u not in done]
        if mailto:
            outcomes += await self._queue(day, domain, report, gzipped, mailto)
        for url in record.rua:
            if url.lower().startswith("https:") and url not in done:
                outcomes.append(await self._post(day, domain, rid, url, gzipped))
        if all(o.status in ("sent", "queued") for o in outcomes):
            self.store.mark_done(day, domain)
            self._not_before.pop((day, domain), None)
        return outcomes

    async def _queue(self, day, domain, report, gzipped, mailto: list[str]) -> list[Outcome]:
        rid = report["report-id"]
        addresses = [u.split(":", 1)[1] for u in mailto]
        content = report_message(report=report, gzipped=gzipped, domain=domain, submitter=self.settings.submitter,
                                 from_address=self.settings.from_address, recipients=addresses, day=day,
                                 when=self.clock())
        try:
            qid = await asyncio.to_thread(self._write_spool, addresses, content)
        except OSError as err:
            return [self._defer(day, domain, u, f"spool: {err.strerror or err}") for u in mailto]
        out = []
        for u in mailto:
            self.store.mark_sent(day, domain, u)
            log.info(qid, tlsrpt="queued", day=day, domain=domain, rua=u, report_id=rid)
            out.append(Outcome(day, domain, u, "queued", "", qid))
        if self.on_queued is not None:
            self.on_queued(qid)
        return out

    def _write_spool(self, addresses: list[str], content: bytes) -> str:
        qid, now = new_queue_id(), self.clock()
        host = self.settings.submitter
        received = (f"Received: by {host} (mailward {__version__}) with local id {qid};\r\n"
                    f"\t{email.utils.formatdate(now, usegmt=True)}\r\n").encode()
        sender = email.utils.parseaddr(self.settings.from_address)[1] or self.settings.from_address
        env = Envelope(qid, sender, {}, [Recipient(a, {}) for a in addresses], now, client_name=REPORT_ORIGIN,
                       client_addr="127.0.0.1", helo=REPORT_ORIGIN)
        incoming = self.spool.begin(env)
        try:
            incoming.write(received + content)
            self.spool.commit(incoming)
        except BaseException:
            incoming.abort()
            raise
        return qid

    async def _post(self, day, domain, rid, url, gzipped) -> Outcome:
        if self._context is None:
            try:
                self._context = https_context(self.settings.ca_file)
            except (OSError, ssl.SSLError) as err:
                return self._defer(day, domain, url, f"tls_rpt.ca_file {self.settings.ca_file}: {err}")
        host = urllib.parse.urlsplit(url).hostname or ""
        try:
            addresses = await self.resolver.addresses(host)
        except DNSError as err:
            return self._defer(day, domain, url, f"DNS: {err}")
        if not addresses:
            return self._defer(day, domain, url, f"DNS: {host} has no address")
        status, errors = 0, []
        for address in addresses:
            try:
                status = await asyncio.to_thread(post_report, url, gzipped, self._context,
                                                 self.settings.http_timeout, address)
                break
            except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as err:
                why = getattr(err, "verify_message", None) or getattr(err, "strerror", None) or str(err)
                errors.append(f"{address}: {type(err).__name__}: {why}")
        if not status:
            return self._defer(day, domain, url, "; ".join(errors))
        if not 200 <= status < 300:
            return self._defer(day, domain, url, f"HTTP status {status}")
        self.store.mark_sent(day, domain, url)
        log.info(None, tlsrpt="sent", day=day, domain=domain, rua=url, report_id=rid, status=status)
        return Outcome(day, domain, url, "sent", f"HTTP status {status}")

    def _defer(self, day: str, domain: str, rua: str, why: str) -> Outcome:
        self._not_before[(day, domain)] = self.clock() + self.settings.retry_interval
        log.event(30, None, tlsrpt="deferred", day=day, domain=domain, rua=rua or None, error=why)
        return Outcome(day, domain, rua, "deferred", why)

    # ---- all due reports -----------------------------------------------------------------
    async def send_due(self, *, ignore_retry_time: bool = False) -> list[Outcome]:
        """Every report whose day is over (``send_hour``) and whose retry time has come."""
        now = self.clock()
        outcomes: list[Outcome] = []
        for day, domain in self.store.due(now, self.settings.send_hour):
            if self.stopping:
                break
            if not ignore_retry_time and self._not_before.get((day, domain), 0) > now:
                continue
            outcomes += await self.send_one(day, domain)
        return outcomes

    def poke(self) -> None:
        """Look for due reports now (e.g. from a signal handler in the event loop)."""
        if self._wake is not None:
            self._wake.set()

    def stop(self) -> None:
        """Finish the report at hand (so no destination gets it twice), then leave :meth:`run`."""
        self.stopping = True
        self.poke()

    async def run(self) -> None:
        """Until :meth:`stop`: sync the counts, send what is due, sleep ``check_interval`` (or
        until :meth:`poke`)."""
        self._wake = asyncio.Event()
        while not self.stopping:
            try:
                self.store.sync()
                await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception as err:     # noqa: BLE001 - the loop must outlive any one report
                log.event(40, None, tlsrpt="send failed", error=f"{type(err).__name__}: {err}"[:200])
            self._wake.clear()
            if self.stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.check_interval)
            except asyncio.TimeoutError:
                pass
