"""After an attempt: each recipient's new state recorded, the DSNs queued, the lines logged.

:func:`record_attempt` takes the classified results of one attempt (:mod:`.results`) and, in
this order: decides each recipient's state and notice (:func:`decide`, pure), queues one DSN
per kind of notice (:mod:`mailward.deliver.bounce`: failures, expiry, an optional delay
warning, success notices when NOTIFY asks and the next hop did not take DSN, RFC 3461 §5.2.2;
never to the null sender, RFC 5321 §4.5.5), records every result in the spool and logs it as
sendmail does (``to=<u@x>, delay=..., xdelay=..., mailer=esmtp, relay=mx. [addr], dsn=5.1.1,
stat=...``), and removes the message once every recipient is final — when this attempt makes
them all final, the removal is the only write (no status line for a message about to go).

Failure behaviour: the DSNs are durable before the bounces they report are recorded — a
crash in between reports twice at worst; a DSN that cannot be queued leaves its recipients as
they were, to be tried (and reported) again; an OSError while recording a result leaves that
recipient as it was (at-least-once). Runs in a worker thread: every step is an fsync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mailward import log
from mailward.deliver.bounce import RecipientReport, build_dsn, header_block, wants_notice
from mailward.deliver.enqueue import enqueue
from mailward.deliver.results import Delivered, Result, settle, duration
from mailward.smtp.parse import printable_address
from mailward.spool.queue import Queue
from mailward.spool.store import FINAL_STATES, Envelope

DELAY_NOTED = " (delay DSN sent)"


@dataclass(frozen=True)
class Settling:
    """What recording needs to know about the configuration."""
    spool: Queue
    hostname: str
    give_up_after: float
    delay_warning: float
    bounce_max_content: int
    clock: Callable[[], float]


@dataclass(frozen=True)
class Decided:
    """One recipient after an attempt: its result, the state to record, the notice to send."""
    index: int
    result: Result
    state: str                 # delivered, bounced, deferred
    status: str                # enhanced status code
    detail: str                # "code status text": the history line and the DSN's Diagnostic-Code
    action: str | None = None  # the DSN this recipient is reported in (failed, delayed, ...)
    note: str = ""             # said beside the reply: the expiry


def decide(index: int, result: Result, params: dict, *, age: float, give_up_after: float, delay_warning: float,
           warned: bool) -> Decided:
    """A recipient's state and notice from its result and the message's age (pure)."""
    settled = settle(result, age=age, give_up_after=give_up_after)
    reply = result.reply
    action = None
    if isinstance(result, Delivered):
        if (result.mailer == "local" or (result.mailer == "lmtp" and not result.dsn_passed)) \
                and wants_notice(params, "delivered"):
            action = "delivered"   # local, or into a mailbox by LMTP (RFC 2033): final delivery
        elif result.mailer == "esmtp" and not result.dsn_passed and wants_notice(params, "relayed"):
            action = "relayed"   # RFC 3461 §5.2.2: the next hop cannot do it for us
    elif settled.state == "bounced":
        action = "failed"
    elif delay_warning and age >= delay_warning and not warned and wants_notice(params, "delayed"):
        action = "delayed"
    if action and not wants_notice(params, action):
        action = None
    detail = f"{reply.code} {reply.status} {' '.join(reply.lines)}".replace("  ", " ")
    return Decided(index, result, settled.state, settled.status, detail, action, settled.note)


def stat(decided: Decided) -> str:
    """sendmail's stat=: "Sent" (local), "Sent (remote reply)", "Deferred: ...", or the reason."""
    reply, mailer = decided.result.reply, decided.result.mailer
    if decided.note:
        return f"{decided.note}: {decided.detail}"
    text = " ".join(" ".join(reply.lines).split())
    if decided.state == "delivered":   # sendmail quotes the peer's whole reply, enhanced code included
        return "Sent" if mailer in ("local", "discard") else f"Sent ({' '.join(filter(None, (reply.status, text)))})"
    if decided.state == "deferred":
        return f"Deferred: {reply.code} {reply.status} {text}".replace("  ", " ")
    return text


def record_attempt(ctx: Settling, qid: str, env: Envelope, results: dict[int, Result], start: float,
                   new_ids: list[str]) -> int:
    """Record one attempt; returns how many attempts the recipients still pending have had
    (0: none is pending, the message is gone). New DSN queue ids go to ``new_ids``."""
    now = ctx.clock()
    age = now - env.received_at
    warned = {h.get("rcpt") for h in ctx.spool.history(qid) if str(h.get("detail", "")).endswith(DELAY_NOTED)}
    decided = [decide(index, result, env.recipients[index].params, age=age, give_up_after=ctx.give_up_after,
                      delay_warning=ctx.delay_warning, warned=index in warned)
               for index, result in sorted(results.items())]
    if not ctx.spool.exists(qid):  # deleted meanwhile (mailward queue delete): leave no state behind
        log.info(qid, stat="deleted from the queue during delivery")
        return 0
    queued, unsent = _send_notices(ctx, qid, env, _reports(ctx, env, decided, now), now)
    # When this attempt settles every recipient still open, removing the message is the one
    # durable write it needs: a status line per recipient first would cost a file creation
    # and an fsync for a file deleted a moment later (a crash before the removal sends the
    # message again either way).
    finishing = (all(d.state in FINAL_STATES and not (d.action in unsent and d.state == "bounced") for d in decided)
                 and all(r.final for i, r in enumerate(env.recipients) if i not in results))
    if finishing:
        try:
            ctx.spool.remove(qid)
        except OSError as err:
            log.event(40, qid, stat=f"cannot remove the delivered message (its results are recorded instead): {err}")
            finishing = False
    for d in decided:
        rcpt = env.recipients[d.index]
        if d.action in unsent and d.state == "bounced":
            continue   # its DSN could not be queued: leave it to the next attempt
        detail = d.detail + (DELAY_NOTED if d.action == "delayed" and d.action not in unsent else "")
        if not finishing:
            try:
                ctx.spool.record(qid, d.index, d.state, detail, rcpt.attempts + 1)
            except OSError as err:
                log.event(40, qid, to=f"<{printable_address(rcpt.address)}>",
                          stat=f"cannot record the result: {err}")
                continue
        rcpt.state = d.state
        log.info(qid, to=f"<{printable_address(rcpt.address)}>", delay=duration(age),
                 xdelay=duration(now - start), mailer=d.result.mailer, relay=d.result.relay or None,
                 dsn=d.status, stat=stat(d))
    for new, text in queued:   # sendmail's form: "QID: DSNQID: DSN: User unknown"
        log.logger.log(20, f"{qid}: {new}: DSN: {text}", extra={"fields": {"dsn": new, "stat": text}, "qid": qid})
        new_ids.append(new)   # submitted by the caller, in the event loop
    if finishing:
        return 0
    if all(r.final for r in env.recipients):
        ctx.spool.remove(qid)
        return 0
    return max((r.attempts + 1 for r in env.recipients if not r.final), default=1)


def _reports(ctx: Settling, env: Envelope, decided: list[Decided], now: float) -> dict[str, list[RecipientReport]]:
    reports: dict[str, list[RecipientReport]] = {}
    for d in decided:
        if not d.action:
            continue
        params = env.recipients[d.index].params
        relay_host = d.result.relay.split(" ")[0].rstrip(".") if d.result.relay else ""
        reports.setdefault(d.action, []).append(RecipientReport(
            env.recipients[d.index].address, d.action, d.status, d.detail, relay_host,
            str(params.get("ORCPT") or ""), now,
            env.received_at + ctx.give_up_after if d.action == "delayed" else 0.0, d.note))
    return reports


def head_section(spool: Queue, qid: str) -> bytes:
    """The message's header section (up to 1 MiB), without reading the body."""
    head = b""
    for chunk in spool.content(qid):
        head += chunk
        if b"\r\n\r\n" in head or len(head) > 1 << 20:
            break
    return head.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"


def _send_notices(ctx: Settling, qid: str, env: Envelope, reports: dict, now: float):
    """Queue one DSN per kind of action; returns ([(dsn qid, text)], {actions not queued})."""
    queued, unsent = [], set()
    for action, items in reports.items():
        if not env.sender:  # RFC 5321 §4.5.5: never a notice to the null reverse-path
            log.info(qid, dsn="not sent", reason="null sender", action=action)
            continue
        try:
            if env.content_size <= ctx.bounce_max_content:
                original = b"".join(ctx.spool.content(qid))
            else:  # only the header section will be returned: do not read the whole message
                original = header_block(head_section(ctx.spool, qid))
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
