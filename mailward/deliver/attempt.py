"""One delivery attempt of one queued message: every recipient not yet final is tried once.

For each such recipient:

* **local** (:func:`is_local`: ``local.domains``, ``<postmaster>``, or a ``local`` route;
  the receiving side asks the same function): an alias (``local.aliases``) is expanded into
  a new queued message to its targets (same sender, NOTIFY/ORCPT kept), and the recipient is
  done; otherwise the message goes into the Maildir that
  :meth:`mailward.deliver.maildir.Mailboxes.find` names — the decision RCPT made too. An
  address without a mailbox bounces with ``550 5.1.1`` (RCPT already refused it unless it
  is an alias target, or the user went away while the message was queued).
* **remote**: recipients are grouped by destination (route key or domain), the hops come
  from :mod:`mailward.deliver.routes`/:mod:`mailward.dns`, and :class:`Outbound` delivers,
  at most ``max_per_destination`` connections per destination at once.

Results: 2xx → ``delivered``; 5xx → ``bounced``; 4xx → ``deferred``, or ``bounced`` with
``4.4.7`` once the message is older than ``give_up_after``. Each result is recorded in the
spool (fsynced) before anything depends on it, and logged as sendmail does
(``to=<u@x>, delay=..., xdelay=..., mailer=esmtp, relay=mx. [addr], dsn=5.1.1, stat=...``).
DSNs (:mod:`mailward.deliver.bounce`) go to the envelope sender: failures, expiry, an
optional delay warning, and success notices when NOTIFY asks and the next hop did not take
DSN (RFC 3461 §5.2.2) or the message was delivered here. Never to the null sender.

:func:`attempt` returns when the message should be tried again (None: nothing left, held,
or gone). Failure behaviour: an OSError while recording leaves the recipient as it was
(tried again later: at-least-once); nothing a peer does raises here.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from mailward import log
from mailward.deliver import maildir
from mailward.deliver.aliases import AliasTable
from mailward.deliver.bounce import RecipientReport, build_dsn, header_block, wants_notice, xtext_encode
from mailward.deliver.enqueue import enqueue
from mailward.deliver.outbound import Outbound, Outcome, Recipient
from mailward.deliver.routes import RouteTable, drop_self, next_hops
from mailward.deliver.scheduler import Limits, RetryPolicy
from mailward.dns import DNSError, Resolver
from mailward.smtp.parse import printable_address
from mailward.smtp.replies import Reply
from mailward.spool.store import MAGIC, Envelope, Spool

MAX_HOPS = 50                    # Received: headers before a loop is assumed (RFC 5321 §6.3; Postfix's limit)
ALIASED = "X-MAILWARD-ALIASED"   # private recipient parameter: already expanded, never sent on
DELAY_NOTED = " (delay DSN sent)"


@dataclass
class Context:
    spool: Spool
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


def duration(seconds: float) -> str:
    """sendmail's delay= form: HH:MM:SS, with D+ for days."""
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    text = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{days}+{text}" if days else text


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".") if "@" in address else ""


def is_local(ctx: Context, address: str) -> bool:
    """Delivered on this machine: ``<postmaster>``, a local domain, or a domain routed to
    ``local``. The one answer for both sides: RCPT asks it through the runner."""
    return local_address(address, ctx.local_domains, ctx.routes.route)


def local_address(address: str, local_domains, route=None) -> bool:
    """:func:`is_local` over its parts (``route``: domain → route or None)."""
    if "@" not in address:
        return address.lower() == "postmaster"   # RFC 5321 §4.5.1: <postmaster>, any case
    domain = domain_of(address)
    if domain in local_domains:
        return True
    found = route(domain) if route is not None and domain else None
    return found is not None and found.kind == "local"


async def _local(ctx: Context, qid: str, env: Envelope, r: Recipient) -> tuple[Reply, str]:
    """(reply, mailer) for one local recipient."""
    if ctx.mailboxes is None:
        ctx.mailboxes = maildir.Mailboxes(ctx.maildir_root, ctx.users, ctx.aliases, accept_unknown=not ctx.users)
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
                  group: list[Recipient]) -> dict[int, Outcome]:
    route = ctx.routes.route(domain)
    async with ctx.limits.slot(destination):
        try:
            hops = await next_hops(route, domain, ctx.resolver, ctx.smtp_port)
        except DNSError as err:
            reply = Reply(err.code, err.status, err.text)
            return {r.index: Outcome(reply) for r in group}
        usable = drop_self(hops, frozenset({ctx.hostname.lower()}), ctx.own_addrs)
        if not usable:   # sendmail: "MX list for X points back to Y"
            reply = Reply(554, "5.3.5", f"Local configuration error: MX list for {domain} points back to "
                                        f"{ctx.hostname}")
            return {r.index: Outcome(reply) for r in group}
        hops = usable
        params = {k: v for k, v in env.sender_params.items()}
        group = [Recipient(r.index, r.address, {k: v for k, v in r.params.items() if k != ALIASED})
                 for r in group]
        # env.size is the spool file's; SIZE= wants the message's (RFC 1870 §4)
        size = max(0, env.size - len(MAGIC) - len(env.to_json()) - 1)
        return await ctx.outbound.deliver(qid, env.sender, params, group, hops,
                                          lambda: ctx.spool.content(qid), size)


def _head(spool: Spool, qid: str) -> bytes:
    """The message's header section (up to 1 MiB), without reading the body."""
    head = b""
    for chunk in spool.content(qid):
        head += chunk
        if b"\r\n\r\n" in head or len(head) > 1 << 20:
            break
    return head.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"


def hop_count(spool: Spool, qid: str) -> int:
    """How many Received: headers the message has (its header section only)."""
    head = _head(spool, qid)
    return sum(1 for line in head.split(b"\r\n") if line[:9].lower() == b"received:")


def _stat(reply: Reply, state: str, mailer: str) -> str:
    """sendmail's stat=: "Sent" (local), "Sent (remote reply)", "Deferred: ...", or the reason."""
    text = " ".join(" ".join(reply.lines).split())
    if state == "delivered":   # sendmail quotes the peer's whole reply, enhanced code included
        return "Sent" if mailer in ("local", "discard") else f"Sent ({' '.join(filter(None, (reply.status, text)))})"
    if state == "deferred":
        return f"Deferred: {reply.code} {reply.status} {text}".replace("  ", " ")
    return text


async def attempt(ctx: Context, qid: str) -> float | None:
    spool = ctx.spool
    if not spool.exists(qid) or spool.held(qid):
        return None
    env = spool.load(qid)
    pending = [Recipient(i, r.address, r.params) for i, r in enumerate(env.recipients) if not r.final]
    start = ctx.clock()
    outcomes: dict[int, tuple[Reply, str, str, bool]] = {}   # index → reply, relay, mailer, dsn_passed
    hops = hop_count(ctx.spool, qid)
    if hops > MAX_HOPS:  # RFC 5321 §6.3: a mail loop; bounce rather than pass it on forever
        reply = Reply(554, "5.4.6", f"Too many hops {hops} ({MAX_HOPS} max): routing loop")
        return await _settle_off_loop(ctx, qid, env, {r.index: (reply, "", "esmtp", False) for r in pending}, start)
    groups: dict[tuple[str, str], list[Recipient]] = {}
    for r in pending:
        if is_local(ctx, r.address):
            reply, mailer = await _local(ctx, qid, env, r)
            outcomes[r.index] = (reply, "", mailer, False)
        else:
            domain = domain_of(r.address)
            route = ctx.routes.route(domain)
            if route is not None and route.kind == "error" and route.reply is not None:
                outcomes[r.index] = (route.reply, "", "error", False)   # sendmail's error mailer
            elif route is not None and route.kind == "discard":
                outcomes[r.index] = (Reply(250, "2.0.0", "discarded"), "", "discard", False)
            else:
                groups.setdefault((route.key if route else domain, domain), []).append(r)
    results = await asyncio.gather(*(_remote(ctx, qid, env, dest, domain, group)
                                     for (dest, domain), group in groups.items()))
    for result in results:
        for index, o in result.items():
            outcomes[index] = (o.reply, o.relay, "esmtp", o.dsn_passed)
    return await _settle_off_loop(ctx, qid, env, outcomes, start)


async def _settle_off_loop(ctx: Context, qid: str, env: Envelope, outcomes: dict, start: float) -> float | None:
    """Record results, queue DSNs and remove the message in a thread: each of those is an
    fsync, and done in the event loop they stalled every session and delivery (the benchmark's
    profile: 46% of the loop while draining the queue)."""
    new_ids: list[str] = []
    result = await asyncio.to_thread(_settle, ctx, qid, env, outcomes, start, new_ids)
    for new in new_ids:
        ctx.submit(new)
    return result


def _settle(ctx: Context, qid: str, env: Envelope, outcomes: dict, start: float,
            new_ids: list[str]) -> float | None:
    """Decide each recipient's state, queue the DSNs, then record and log every result.

    The DSNs are durable before the bounces they report are recorded: a crash in between
    reports twice at worst; a DSN that cannot be queued leaves its recipients as they were,
    to be tried (and reported) again."""
    now = ctx.clock()
    expired = ctx.retry.expired(env.received_at, now)
    warned = {h.get("rcpt") for h in ctx.spool.history(qid) if str(h.get("detail", "")).endswith(DELAY_NOTED)}
    decided = []
    reports: dict[str, list[RecipientReport]] = {}
    for index, (reply, relay, mailer, dsn_passed) in sorted(outcomes.items()):
        params = env.recipients[index].params
        action = None
        note = ""
        status = reply.status or f"{str(reply.code)[0]}.0.0"
        if reply.is_positive:
            state = "delivered"
            if mailer == "local" and wants_notice(params, "delivered"):
                action = "delivered"
            elif mailer == "esmtp" and not dsn_passed and wants_notice(params, "relayed"):
                action = "relayed"   # RFC 3461 §5.2.2: the next hop cannot do it for us
        elif reply.is_permanent:
            state, action = "bounced", "failed"
        elif expired:                # RFC 3463 4.4.7: delivery time expired
            # the remote reply stays as it was (Diagnostic-Code); the expiry is said beside it
            state, action, status = "bounced", "failed", "4.4.7"
            note = f"Message could not be delivered for {duration(now - env.received_at)}"
        else:
            state = "deferred"
            if (ctx.delay_warning and now - env.received_at >= ctx.delay_warning and index not in warned
                    and wants_notice(params, "delayed")):
                action = "delayed"
        detail = f"{reply.code} {reply.status} {' '.join(reply.lines)}".replace("  ", " ")
        if action and wants_notice(params, action):
            relay_host = relay.split(" ")[0].rstrip(".") if relay else ""
            reports.setdefault(action, []).append(RecipientReport(
                env.recipients[index].address, action, status, detail, relay_host, str(params.get("ORCPT") or ""),
                now, env.received_at + ctx.retry.give_up_after if action == "delayed" else 0.0, note))
        decided.append((index, reply, relay, mailer, state, action, status, detail, note))
    if not ctx.spool.exists(qid):  # deleted meanwhile (mailward queue delete): leave no state behind
        log.info(qid, stat="deleted from the queue during delivery")
        return None
    queued, unsent = _send_notices(ctx, qid, env, reports, now)
    for index, reply, relay, mailer, state, action, status, detail, note in decided:
        rcpt = env.recipients[index]
        if action in unsent and state == "bounced":
            continue   # its DSN could not be queued: leave it to the next attempt
        if action == "delayed" and action not in unsent:
            detail += DELAY_NOTED
        try:
            ctx.spool.record(qid, index, state, detail, rcpt.attempts + 1)
        except OSError as err:
            log.event(40, qid, to=f"<{printable_address(rcpt.address)}>",
                      stat=f"cannot record the result: {err}")
            continue
        rcpt.state = state
        log.info(qid, to=f"<{printable_address(rcpt.address)}>", delay=duration(now - env.received_at),
                 xdelay=duration(now - start),
                 mailer=mailer, relay=relay or None, dsn=status,
                 stat=f"{note}: {detail}" if note else _stat(reply, state, mailer))
    for new, text in queued:   # sendmail's form: "QID: DSNQID: DSN: User unknown"
        log.logger.log(20, f"{qid}: {new}: DSN: {text}", extra={"fields": {"dsn": new, "stat": text}, "qid": qid})
        new_ids.append(new)   # submitted by the caller, in the event loop
    if all(r.final for r in env.recipients):
        ctx.spool.remove(qid)
        return None
    attempts = max((r.attempts + 1 for r in env.recipients if not r.final), default=1)
    return ctx.retry.next_attempt(env.received_at, now, attempts, ctx.rng)


def _send_notices(ctx: Context, qid: str, env: Envelope, reports: dict, now: float):
    """Queue one DSN per kind of action; returns ([(dsn qid, text)], {actions not queued})."""
    queued, unsent = [], set()
    for action, items in reports.items():
        if not env.sender:  # RFC 5321 §4.5.5: never a notice to the null reverse-path
            log.info(qid, dsn="not sent", reason="null sender", action=action)
            continue
        try:
            if env.size <= ctx.bounce_max_content:
                original = b"".join(ctx.spool.content(qid))
            else:  # only the header section will be returned: do not read the whole message
                original = header_block(_head(ctx.spool, qid))
            client = f"{env.client_name} [{env.client_addr}]" if env.client_addr else env.client_name
            dsn = build_dsn(reporting_mta=ctx.hostname, queue_id=qid, sender=env.sender,
                            sender_params=env.sender_params, arrival=env.received_at, client=client,
                            reports=items, original=original, max_full=ctx.bounce_max_content, now=now)
            new = enqueue(ctx.spool, "", [(env.sender, {})], dsn, origin=ctx.hostname)
        except OSError as err:
            log.event(40, qid, dsn="failed", reason=str(err))
            unsent.add(action)
            continue
        queued.append((new, " ".join(items[0].diagnostic.split()[2:]) or items[0].action))
    return queued, unsent
