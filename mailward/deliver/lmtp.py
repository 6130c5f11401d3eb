"""Delivery by LMTP (RFC 2033) into a mailbox server (Dovecot, Cyrus): the ``lmtp:`` routes.

A route ``example.test  lmtp:unix:/run/dovecot/lmtp`` (a UNIX socket) or
``example.test  lmtp:[192.0.2.4]:24`` (TCP; LMTP has no port of its own, RFC 2033 §5, so the
route names it) hands every recipient of that domain to the LMTP server, which delivers into
its mailboxes. :func:`deliver` returns one :class:`~mailward.deliver.outbound.Outcome` per
recipient, exactly as the SMTP client does, so the queue runner records them the same way:

* The core (:class:`mailward.smtp.client.ClientConnection` with ``lmtp=True``) says ``LHLO``
  and, after the final dot, reads one reply per recipient accepted at RCPT (RFC 2033 §4.2):
  each recipient has its own outcome — ``2xx`` delivered, ``4xx`` deferred (e.g. ``452 4.2.2``
  over quota), ``5xx`` bounced with a DSN carrying that reply (e.g. ``550 5.1.1`` unknown
  user at RCPT, or ``552`` for one mailbox after the data).
* Over TCP, STARTTLS is used when offered and ``delivery.starttls`` allows it (``Try_TLS:``
  is honoured); the ``STARTTLS=client`` line is logged as for SMTP and the access map's
  ``TLS_Srv:`` check runs after the handshake (or at once without TLS), as for any next hop
  ("sendmail cf/README, STARTTLS"). A failed handshake is tried once more in clear when
  ``delivery.tls_fallback_to_clear`` is on. Over a UNIX socket there is no STARTTLS and no
  TLS check: the socket is on this machine and its file mode is the protection.
* One connection per delivery attempt of a message (no pool: the server is near), ``QUIT``
  at the end; the TCP hosts are tried in order until one greets.

Failure behaviour: nothing raises. A socket that is missing or refuses, a timeout, a greeting
or LHLO refused, a connection lost before the replies: the recipients without a reply of
their own are deferred (``451 4.4.1``/``4.4.2``, the reason naming the socket or host), so
no message is lost; a ``TLS_Srv:`` refusal gives its own reply (TEMP: deferred, PERM:
bounced). An error of ours is logged and deferred.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from mailward import log
from mailward.deliver.connection import OutboundConnection
from mailward.deliver.outbound import Outbound, Outcome, Transfer
from mailward.deliver.routes import Hop
from mailward.smtp import client as C
from mailward.smtp.replies import Reply
from mailward.tls.engine import TLSFailure
from mailward.tls.facts import TLSFacts


@dataclass(frozen=True)
class Destination:
    """Where an ``lmtp:`` route delivers: a UNIX socket path, or TCP hops (address order)."""
    socket: str = ""
    hops: tuple[Hop, ...] = ()

    @property
    def relay(self) -> str:
        return f"unix:{self.socket}" if self.socket else (self.hops[0].relay if self.hops else "")


class _Failure(Exception):
    """This server cannot take the message now; ``tls_failed``: the handshake failed."""
    def __init__(self, reply: Reply, tls_failed: bool = False):
        super().__init__(str(reply))
        self.reply = reply
        self.tls_failed = tls_failed


async def deliver(outbound: Outbound, transfer: Transfer, dest: Destination) -> dict[int, Outcome]:
    """One transaction with the LMTP server for ``transfer``'s recipients."""
    last = Reply(451, "4.4.0", "No LMTP server to deliver to")
    relay = dest.relay
    targets = [None] if dest.socket else list(dest.hops)
    for hop in targets:
        relay = f"unix:{dest.socket}" if hop is None else hop.relay
        try:
            session = await _open(outbound, transfer.qid, dest.socket, hop)
        except _Failure as failure:
            last = failure.reply
            if failure.reply.is_permanent:
                break
            continue
        except Exception as err:   # a bug must not lose the message: defer, say why
            log.event(40, transfer.qid, relay=relay, stat=f"LMTP delivery error: {err!r}")
            last = Reply(451, "4.3.0", f"Local error talking to {relay}: {type(err).__name__}")
            continue
        try:
            return await _transact(session, transfer, relay)
        except (C.RemoteProtocolError, C.LocalProtocolError, TLSFailure, OSError, asyncio.TimeoutError) as err:
            reply = Reply(451, "4.4.2", f"{relay}: {str(err) or type(err).__name__}")
            return {r.index: Outcome(reply, relay) for r in transfer.recipients}
        finally:
            await session.close()
    return {r.index: Outcome(last, relay) for r in transfer.recipients}


async def _connect(outbound: Outbound, socket: str, hop: Hop | None):
    where = f"unix:{socket}" if hop is None else hop.name
    try:
        if hop is None:
            return await asyncio.wait_for(asyncio.open_unix_connection(socket), outbound.connect_timeout)
        return await asyncio.wait_for(asyncio.open_connection(hop.addr, hop.port), outbound.connect_timeout)
    except asyncio.TimeoutError:
        raise _Failure(Reply(451, "4.4.1", f"Connection timed out with {where}")) from None
    except ConnectionRefusedError:
        raise _Failure(Reply(451, "4.4.1", f"Connection refused by {where}")) from None
    except OSError as err:
        raise _Failure(Reply(451, "4.4.1", f"{err.strerror or err} with {where}")) from None


async def _open(outbound: Outbound, qid: str, socket: str, hop: Hop | None, use_tls: bool = True
                ) -> OutboundConnection:
    """A connection greeted with LHLO, inside TLS when the TCP server offers it."""
    reader, writer = await _connect(outbound, socket, hop)
    target = hop or Hop(f"unix:{socket}", socket, 0)
    session = OutboundConnection(target, reader, writer, C.ClientConnection(outbound.helo_name, lmtp=True),
                                 outbound.command_timeout)
    try:
        await _greet(outbound, session, use_tls and hop is not None)
    except _Failure as failure:
        await session.close()
        if failure.tls_failed and outbound.fallback_to_clear:
            log.info(qid, relay=target.name, stat="retrying without STARTTLS (tls_fallback_to_clear)")
            return await _open(outbound, qid, socket, hop, use_tls=False)
        raise
    except (C.RemoteProtocolError, asyncio.TimeoutError, OSError) as err:
        await session.close()
        what = "timeout" if isinstance(err, asyncio.TimeoutError) else str(err) or type(err).__name__
        raise _Failure(Reply(451, "4.4.2", f"{target.name}: {what}")) from None
    return session


async def _ready(session: OutboundConnection, timeout: float) -> C.Ready:
    while True:
        ev = await session.event(timeout)
        if isinstance(ev, C.Ready):
            return ev
        if isinstance(ev, C.Greeting) and ev.reply.code == 220:
            continue
        reply = getattr(ev, "reply", None) or Reply(451, "4.4.2", "Connection lost")
        raise _Failure(Reply(451, "4.4.2", f"{session.hop.name} said: {reply}"))


async def _greet(outbound: Outbound, session: OutboundConnection, tcp: bool) -> None:
    hop = session.hop
    ready = await _ready(session, outbound.connect_timeout)
    if not tcp:
        return   # a UNIX socket: no STARTTLS, no TLS checks
    offered = "STARTTLS" in ready.extensions
    wanted = offered and outbound.starttls and not outbound.policy.try_tls_decision(hop.name, hop.addr).failed
    if wanted:
        session.core.start_tls()
        ev = await session.event()
        if isinstance(ev, C.TLSReady):
            try:
                await session.handshake(outbound.tls_context, outbound.command_timeout)
            except (TLSFailure, asyncio.TimeoutError, OSError) as err:
                reason = str(err) or type(err).__name__
                log.info(None, **{"STARTTLS": "client"}, relay=hop.name, error=f"handshake failed: {reason}",
                         verify="SOFTWARE")
                session.tls = TLSFacts(verify="SOFTWARE")
                raise _Failure(Reply(403, "4.7.0", f"{hop.name}: TLS handshake failed: {reason}"),
                               tls_failed=True) from None
            t = session.tls
            log.info(None, **{"STARTTLS": "client"}, relay=hop.name, version=t.tls_version, verify=t.verify,
                     cipher=t.cipher, bits=f"{t.cipher_bits}/{t.alg_bits}")
            _check_server(outbound, session, inside_tls=True)
            session.core.tls_started()
            await _ready(session, outbound.command_timeout)
            return
    elif offered:
        session.tls_disabled = True   # offered but not used: sendmail's verify=CLEAR
    _check_server(outbound, session, inside_tls=False)


def _check_server(outbound: Outbound, session: OutboundConnection, inside_tls: bool) -> None:
    """``TLS_Srv:`` for this server; a refusal is logged as sendmail logs it, and QUIT follows."""
    decision = outbound.policy.tls_server(session.facts(), tls_disabled=session.tls_disabled)
    if not decision.failed:
        return
    text = decision.log_fragment
    if text:
        log.logger.log(log.NOTICE, text, extra={"fields": {"policy": text}, "qid": None})
    if inside_tls:
        session.core.tls_refused_by_policy()
    raise _Failure(Reply(decision.code, decision.status, decision.reply_text))


async def _transact(session: OutboundConnection, transfer: Transfer, relay: str) -> dict[int, Outcome]:
    core = session.core
    ext = core.extensions
    recipients = transfer.recipients
    limit = ext.get("SIZE", "")
    if limit.isdigit() and int(limit) and transfer.size > int(limit):   # RFC 1870 §6.1
        reply = Reply(552, "5.3.4", f"Message is too large for {relay} ({transfer.size} > {limit})")
        return {r.index: Outcome(reply, relay) for r in recipients}
    if any(k.upper() == "SMTPUTF8" for k in transfer.sender_params) and "SMTPUTF8" not in ext:  # RFC 6531 §3.2
        reply = Reply(553, "5.6.7", f"{relay} does not support SMTPUTF8")
        return {r.index: Outcome(reply, relay) for r in recipients}
    core.send_transaction(C.Transaction(transfer.sender, tuple((r.address, r.params) for r in recipients),
                                        transfer.sender_params, transfer.size))
    dsn = "DSN" in ext
    while True:
        ev = await session.event()
        if isinstance(ev, C.SendContent):
            for chunk in transfer.content():
                core.send_content(chunk)
                await session.write(core.data_to_send())
            core.end_content()
            continue
        if isinstance(ev, C.TransactionDone):
            return {r.index: Outcome(ev.result.outcome(i), relay, dsn_passed=dsn,
                                     interrupted=ev.result.interrupted and ev.result.outcome(i).is_transient)
                    for i, r in enumerate(recipients)}
        if isinstance(ev, C.Closed) or ev is C.WAITING:
            reply = Reply(451, "4.4.2", f"Connection lost with {relay}")
            return {r.index: Outcome(reply, relay, interrupted=True) for r in recipients}
