"""One delivery attempt of one queued message: every recipient not yet final is tried once.

For each such recipient:

* **local** (:func:`is_local`: ``local.domains``, ``<postmaster>``, or a ``local`` route;
  the receiving side asks the same function): an alias (``local.aliases``) is expanded into
  a new queued message to its targets (same sender, NOTIFY/ORCPT kept), and the recipient is
  done; otherwise the message goes into the Maildir that
  :meth:`mailward.deliver.maildir.Mailboxes.find` names — the decision RCPT made too. An
  address without a mailbox bounces with ``550 5.1.1``: RCPT refuses those, so this is a
  user or alias gone while the message was queued, or a message queued here for one (a DSN).
* **remote**: recipients are grouped by destination (route key or domain), the hops come
  from :mod:`mailward.deliver.routes`/:mod:`mailward.dns`, and :class:`Outbound` delivers,
  at most ``max_per_destination`` connections per destination at once.
* **lmtp** (an ``lmtp:`` route): grouped the same way and handed to the LMTP server
  (:mod:`mailward.deliver.lmtp`), whose per-recipient replies are the results (``mailer=lmtp``).
  Its hosts are not checked against our own addresses: an LMTP server on this machine is
  the usual case.

Results: 2xx → ``delivered``; 5xx → ``bounced``; 4xx → ``deferred``, or ``bounced`` with
``4.4.7`` once the message is older than ``give_up_after``. Each result is recorded in the
spool (fsynced) before anything depends on it, and logged as sendmail does
(``to=<u@x>, delay=..., xdelay=..., mailer=esmtp, relay=mx. [addr], dsn=5.1.1, stat=...``).
DSNs (:mod:`mailward.deliver.bounce`) go to the envelope sender: failures, expiry, an
optional delay warning, and success notices when NOTIFY asks and the next hop did not take
DSN (RFC 3461 §5.2.2) or the message was delivered here. Never to the null sender.

:func:`attempt` returns what is left (:class:`Remaining`; None: nothing left, held, or
gone); when to try again is the runner's decision alone. Results are classified by
:mod:`mailward.deliver.results` and recorded by :mod:`mailward.deliver.settle`. Failure behaviour: an OSError while recording leaves the recipient as it was
(tried again later: at-least-once); nothing a peer does raises here.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from mailward.deliver import lmtp, maildir
from mailward.deliver.aliases import AliasTable
from mailward.deliver.bounce import xtext_encode
from mailward.deliver.enqueue import enqueue
from mailward.deliver.outbound import Outbound, Outcome, PendingRecipient, Transfer
from mailward.deliver.results import Result, classify
from mailward.deliver.routes import RouteTable, drop_self, next_hops
from mailward.deliver.scheduler import Limits, RetryPolicy
from mailward.deliver.settle import Settling, head_section, record_attempt
from mailward.tlsrpt.results import is_report_envelope
from mailward.dns import DNSError, Resolver
from mailward.policy.local import domain_of, local_address
from mailward.smtp.replies import Reply
from mailward.spool.queue import Queue
from mailward.spool.store import Envelope

MAX_HOPS = 50                    # Received: headers before a loop is assumed (RFC 5321 §6.3; Postfix's limit)
ALIASED = "X-MAILWARD-ALIASED"   # private recipient parameter: already expanded, never sent on
DELAY_NOTED = " (delay DSN sent)"


@dataclass
class Context:
    spool: Queue
    hostname: str
    local_domains: frozenset[str]
    maildir_root: object
    outbound: Outbound
    resolver: Resolver
    routes: RouteTable
    aliases: AliasTable
    limits: Limits
    retry: RetryPolicy
    users: frozenset[str] = frozenset()
    smtp_port: int = 25
    fsync: bool = True
    bounce_max_content: int = 1 << 20
    delay_warning: float = 0.0
    own_addrs: frozenset[tuple[str, int]] = frozenset()   # (address, port) we listen on: MX loop check
    mailboxes: maildir.Mailboxes | None = None   # who exists, and where (None: from users and aliases)
    submit: Callable[[str], None] = lambda qid: None
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)


def is_local(ctx: Context, address: str) -> bool:
    """Delivered on this machine: ``<postmaster>``, a local domain, or a domain routed to
    ``local``. The one answer for both sides: RCPT asks it through the runner."""
    return local_address(address, ctx.local_domains, ctx.routes.route)


async def _local(ctx: Context, qid: str, env: Envelope, r: PendingRecipient) -> tuple[Reply, str]:
    """(reply, mailer) for one local recipient."""
    if ctx.mailboxes is None:
        ctx.mailboxes = maildir.Mailboxes(ctx.maildir_root, ctx.users, ctx.aliases)
    found = ctx.mailboxes.find(r.address)
    domain = domain_of(r.address) or ctx.hostname
    if found.alias and ALIASED not in r.params:
        local = maildir.local_part(r.address)
        targets = ctx.aliases.expand(local)
        if targets is not None and targets != [local]:
            keep = {k: v for k, v in r.params.items() if k.upper() in ("NOTIFY", "ORCPT")}
            if "ORCPT" not in keep:
                keep["ORCPT"] = f"rfc822;{xtext_encode(r.address)}"   # RFC 3461 §4.2
            rcpts = [(t if "@" in t else f"{t}@{domain}", {**keep, ALIASED: "1"}) for t in targets]
            try:
                new = await asyncio.to_thread(enqueue, ctx.spool, env.sender, rcpts, ctx.spool.content(qid),
                                              sender_params=env.sender_params, origin=ctx.hostname)
            except OSError as err:
                return Reply(451, "4.3.0", f"Cannot queue the alias expansion: {err.strerror or err}"), "alias"
            ctx.submit(new)
            return Reply(250, "2.0.0", f"Expanded to {len(targets)} address(es) in {new}"), "alias"
    if found.mailbox is None:
        return Reply(550, "5.1.1", f"<{r.address}>... User unknown"), "local"
    try:
        path = await asyncio.to_thread(maildir.deliver, ctx.maildir_root / found.mailbox, ctx.spool.content(qid),
                                       sender=env.sender, recipient=r.address, fsync=ctx.fsync,
                                       key=f"{int(env.received_at)}.Q{qid}R{r.index}")
    except OSError as err:
        return Reply(451, "4.3.0", f"Local delivery failed: {err.strerror or err}"), "local"
    return Reply(250, "2.0.0", f"Delivered to {found.mailbox}/new/{path.name}"), "local"


async def _remote(ctx: Context, qid: str, env: Envelope, destination: str, domain: str,
                  group: list[PendingRecipient], relaxed: str = "") -> dict[int, Outcome]:
    route = ctx.routes.route(domain)
    async with ctx.limits.slot(destination):
        if route is not None and route.kind == "lmtp" and route.socket:
            hops = []
        else:
            try:
                hops = await next_hops(route, domain, ctx.resolver, ctx.smtp_port)
            except DNSError as err:
                reply = Reply(err.code, err.status, err.text)
                return {r.index: Outcome(reply) for r in group}
        if route is not None and route.kind == "lmtp":
            return await lmtp.deliver(ctx.outbound, _transfer(ctx, qid, env, domain, group, route, relaxed),
                                      lmtp.Destination(route.socket, tuple(hops)))
        usable = drop_self(hops, frozenset({ctx.hostname.lower()}), ctx.own_addrs)
        if not usable:   # sendmail: "MX list for X points back to Y"
            reply = Reply(554, "5.3.5", f"Local configuration error: MX list for {domain} points back to "
                                        f"{ctx.hostname}")
            return {r.index: Outcome(reply) for r in group}
        hops = usable
        return await ctx.outbound.deliver(_transfer(ctx, qid, env, domain, group, route, relaxed), hops)


def _transfer(ctx: Context, qid: str, env: Envelope, domain: str, group: list[PendingRecipient], route,
              relaxed: str) -> Transfer:
    params = {k: v for k, v in env.sender_params.items()}
    group = [PendingRecipient(r.index, r.address, {k: v for k, v in r.params.items() if k != ALIASED})
             for r in group]
    size = env.content_size   # SIZE= wants the message's size (RFC 1870 §4)
    return Transfer(qid, env.sender, params, group, lambda: ctx.spool.content(qid), size, domain=domain,
                    by_mx=route is None, relaxed=relaxed, report=is_report_envelope(env))


def tls_required_no(head: bytes) -> str:
    """"TLS-Required: No" when the header section ``head`` says so (RFC 8689 §4.2.2: the
    recipient domain's DANE and MTA-STS policies are then not enforced), else ''."""
    for line in head.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"tls-required" and value.strip().lower() == b"no":
            return "TLS-Required: No"
    return ""


def hop_count(spool: Queue, qid: str) -> int:
    """How many Received: headers the message has (its header section only)."""
    return received_count(head_section(spool, qid))


def received_count(head: bytes) -> int:
    return sum(1 for line in head.split(b"\r\n") if line[:9].lower() == b"received:")


@dataclass(frozen=True)
class Remaining:
    """Recipients are left after this attempt: the runner decides when to try again."""
    received_at: float
    attempts: int


async def attempt(ctx: Context, qid: str) -> Remaining | None:
    """Try every recipient of ``qid`` not yet final, once; None when nothing is left (all
    final, held, or the message is gone)."""
    spool = ctx.spool
    if not spool.exists(qid) or spool.held(qid):
        return None
    env = spool.load(qid)
    pending = [PendingRecipient(i, r.address, r.params) for i, r in enumerate(env.recipients) if not r.final]
    start = ctx.clock()
    results: dict[int, Result] = {}
    head = head_section(ctx.spool, qid)   # read once: the hop count and TLS-Required
    hops = received_count(head)
    if hops > MAX_HOPS:  # RFC 5321 §6.3: a mail loop; bounce rather than pass it on forever
        reply = Reply(554, "5.4.6", f"Too many hops {hops} ({MAX_HOPS} max): routing loop")
        return await _settle_off_loop(ctx, qid, env, {r.index: classify(reply) for r in pending}, start)
    groups: dict[tuple[str, str], list[PendingRecipient]] = {}
    mailers: dict[tuple[str, str], str] = {}   # esmtp, or lmtp for an lmtp: route
    for r in pending:
        if is_local(ctx, r.address):
            reply, mailer = await _local(ctx, qid, env, r)
            results[r.index] = classify(reply, mailer=mailer)
        else:
            domain = domain_of(r.address)
            route = ctx.routes.route(domain)
            if route is not None and route.kind == "error" and route.reply is not None:
                results[r.index] = classify(route.reply, mailer="error")   # sendmail's error mailer
            elif route is not None and route.kind == "discard":
                results[r.index] = classify(Reply(250, "2.0.0", "discarded"), mailer="discard")
            else:
                group_key = (route.key if route else domain, domain)
                groups.setdefault(group_key, []).append(r)
                mailers[group_key] = "lmtp" if route is not None and route.kind == "lmtp" else "esmtp"
    relaxed = tls_required_no(head) if groups else ""
    remote = await asyncio.gather(*(_remote(ctx, qid, env, dest, domain, group, relaxed)
                                    for (dest, domain), group in groups.items()))
    for group_key, outcomes in zip(groups, remote):
        mailer = mailers[group_key]
        for index, o in outcomes.items():
            results[index] = classify(o.reply, o.relay, mailer, o.dsn_passed)
    return await _settle_off_loop(ctx, qid, env, results, start)


async def _settle_off_loop(ctx: Context, qid: str, env: Envelope, results: dict, start: float) -> Remaining | None:
    """Record results, queue DSNs and remove the message in a thread: each of those is an
    fsync, and done in the event loop they stalled every session and delivery (the benchmark's
    profile: 46% of the loop while draining the queue)."""
    new_ids: list[str] = []
    left = await asyncio.to_thread(record_attempt, _settling(ctx), qid, env, results, start, new_ids)
    for new in new_ids:
        ctx.submit(new)
    return Remaining(env.received_at, left) if left else None


def _settling(ctx: Context) -> Settling:
    return Settling(ctx.spool, ctx.hostname, ctx.retry.give_up_after, ctx.delay_warning, ctx.bounce_max_content,
                    ctx.clock)
