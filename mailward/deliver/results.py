"""What one delivery attempt did for one recipient, and what follows from it: pure functions.

:func:`classify` turns the reply that decided a recipient (the next hop's, the local
mailbox's, or one made up here: a DNS failure, a policy refusal) into :class:`Delivered`,
:class:`Transient` or :class:`Permanent` — RFC 5321 §4.2.1: 2yz done, 4yz try again, 5yz
do not. :func:`settle` adds the message's age: a transient failure of a message older than
``delivery.give_up_after`` bounces with ``4.4.7`` (RFC 3463), the remote reply kept as it was
and the expiry said beside it. Neither does I/O or decides *when* to try again: that is the
queue runner's alone (:mod:`mailward.deliver.runner`, :class:`~mailward.deliver.scheduler.RetryPolicy`).

The truth table is in ``tests/deliver/test_results.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailward.smtp.replies import Reply


@dataclass(frozen=True)
class Delivered:
    reply: Reply
    relay: str = ""             # "name [addr]" of the host that took it ('' for local)
    mailer: str = "esmtp"       # esmtp, local, alias, discard, error
    dsn_passed: bool = False    # the next hop took NOTIFY/ORCPT (RFC 3461 §5.2.2)


@dataclass(frozen=True)
class Transient:
    reply: Reply
    relay: str = ""
    mailer: str = "esmtp"


@dataclass(frozen=True)
class Permanent:
    reply: Reply
    relay: str = ""
    mailer: str = "esmtp"


Result = Delivered | Transient | Permanent


def classify(reply: Reply, relay: str = "", mailer: str = "esmtp", dsn_passed: bool = False) -> Result:
    """RFC 5321 §4.2.1 by the first digit; anything that is not 2yz or 5yz is transient
    (a reply out of range must never bounce a message)."""
    if reply.is_positive:
        return Delivered(reply, relay, mailer, dsn_passed)
    if reply.is_permanent:
        return Permanent(reply, relay, mailer)
    return Transient(reply, relay, mailer)


@dataclass(frozen=True)
class Settled:
    """One recipient after an attempt: ``state`` is what the spool records (delivered,
    bounced, deferred); ``status`` the enhanced code for the log's dsn= and the DSN;
    ``note`` a sentence the bounce says beside the reply (the expiry)."""
    state: str
    status: str
    note: str = ""


def settle(result: Result, *, age: float, give_up_after: float) -> Settled:
    status = result.reply.status or f"{str(result.reply.code)[0]}.0.0"
    if isinstance(result, Delivered):
        return Settled("delivered", status)
    if isinstance(result, Permanent):
        return Settled("bounced", status)
    if age >= give_up_after:   # RFC 3463 4.4.7: delivery time expired
        return Settled("bounced", "4.4.7", f"Message could not be delivered for {duration(age)}")
    return Settled("deferred", status)


def duration(seconds: float) -> str:
    """sendmail's delay= form: HH:MM:SS, with D+ for days."""
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    text = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{days}+{text}" if days else text
