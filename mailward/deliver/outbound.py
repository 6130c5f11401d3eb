"""The delivery client: the SMTP client core (:mod:`mailward.smtp.client`) over asyncio and TLS.

:class:`Outbound.deliver` takes the recipients of one message that share a destination and the
hops to try (:func:`mailward.deliver.routes.next_hops`: the route's hosts, MX order) and
returns one :class:`Outcome` per recipient. Each hop's ``name`` is sendmail's ${server_name}
(``[192.0.2.3]`` for a bracketed route, brackets kept) and every policy check gets exactly
that name. The checks run when sendmail 8.17 runs them ("sendmail cf/README, STARTTLS",
and sendmail 8.17 observed as a sending MTA):

1. Connect (``connect_timeout``), read the greeting, EHLO (HELO fallback in the core).
2. After the EHLO reply, ``Try_TLS``: NO → STARTTLS is not tried, and a notice
   ``ruleset=try_tls, arg1=[addr], relay=[addr], reject=550 5.7.1 rcpt... do not try TLS
   with ...`` is logged; the connection then counts as one without STARTTLS (verify=NONE).
3. STARTTLS when offered and ``delivery.starttls`` is on, presenting the client certificate
   (confCLIENT_CERT/KEY) when the server asks for one. The server certificate is verified
   against ``tls.ca_file``/``ca_path`` and the result recorded (verify=OK/FAIL), never fatal
   by itself. Logged as sendmail does: ``STARTTLS: TLS cert verify: depth=0 ...`` when it
   failed, ``STARTTLS=client, relay=[addr], version=..., verify=..., cipher=..., bits=...``
   and ``STARTTLS=client, cert-subject=..., cert-issuer=..., verifymsg=...``. A failed
   handshake is verify=SOFTWARE: tls_server then always fails for that connection; with
   ``tls_fallback_to_clear`` the host is tried once more without STARTTLS, and that clear
   connection must pass TLS_Srv and TLS_Rcpt like any other (verify=CLEAR).
4. tls_server (``TLS_Srv:``) right after the handshake, or at once when STARTTLS was not
   used: a refusal is logged (``ruleset=tls_server, arg1=FAIL, relay=[addr], reject=454
   4.7.0 authentication failed``) and QUIT is sent at once (inside TLS, no second EHLO);
   TEMP → the next host, then defer; PERM → the recipients bounce, no other host is tried.
5. MAIL; then tls_rcpt (``TLS_Rcpt:``) for each recipient before its RCPT: a refused
   recipient is not sent here (temporary → another host may take it: "Securing Sendmail with TLS"'s multiple-MX
   example, where mail for ``TLS_Rcpt:secure.domain ENCR:112`` never goes in clear to a
   backup MX; PERM → bounce). When every recipient was refused, RSET follows MAIL.
6. The transaction (pipelined when offered); per-recipient replies become outcomes.

Connection problems (refused, timeout, greeting or EHLO refused, 421, lost connection, a
reply that is not SMTP) move on to the next hop; when no hop is left the recipients are
deferred with the last reason. 4xx/5xx replies to RCPT or DATA are final for this attempt.
Open connections are kept (:class:`Pool`) for the next message to the same server name and
address (``max_messages_per_connection``, ``connection_idle``); tls_server is checked again
whenever one is reused, against the map in use at that moment.

SECURITY: no MAIL command and no message content reach a host that tls_server refused; no
RCPT and no content reach it for a recipient that tls_rcpt refused. The end-to-end sweep in
``tests/deliver/test_tls_policy_sweep.py`` checks this for every route form, key form and
receiver kind.

Failure behaviour: no exception escapes :meth:`Outbound.deliver` for anything a peer does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Callable, Iterable

from mailward import log
from mailward.deliver.connection import Pool, OutboundConnection
from mailward.deliver.routes import Hop
from mailward.smtp import client as C
from mailward.smtp.replies import Reply
from mailward.tls.engine import TLSFailure
from mailward.tls.facts import TLSFacts


@dataclass(frozen=True)
class Outcome:
    reply: Reply
    relay: str = ""                 # the host that answered ("" when none did)
    dsn_passed: bool = False        # the next hop took NOTIFY/ORCPT (RFC 3461 §5.2.2)
    elsewhere: bool = False         # transient at the connection level: another hop may do
    interrupted: bool = False       # the connection ended before the transaction did

    @property
    def delivered(self) -> bool:
        return self.reply.is_positive

    @property
    def temporary(self) -> bool:
        return self.reply.is_transient


class HopFailure(Exception):
    def __init__(self, reply: Reply, *, tls_failed: bool = False):
        super().__init__(str(reply))
        self.reply = reply
        self.tls_failed = tls_failed


@dataclass
class PendingRecipient:
    """A recipient of the message not yet final: its index in the spool's envelope."""
    index: int
    address: str
    params: dict


@dataclass(frozen=True)
class Transfer:
    """One message for the recipients that share a destination: what every step of a
    delivery over SMTP needs to know about it."""
    qid: str
    sender: str
    sender_params: dict
    recipients: list[PendingRecipient]
    content: Callable[[], Iterable[bytes]]
    size: int                              # the message's octets, for SIZE= (RFC 1870 §4)

    def only(self, recipients: list[PendingRecipient]) -> "Transfer":
        return replace(self, recipients=recipients)


def _reply(code: int, status: str, text: str) -> Reply:
    return Reply(code, status, text)


class Outbound:
    def __init__(self, *, helo_name: str, tls_context, starttls: bool = True, fallback_to_clear: bool = True,
                 connect_timeout: float = 30.0, command_timeout: float = 300.0,
                 policy=None, pool: Pool | None = None):
        self.helo_name = helo_name
        self.tls_context = tls_context
        self.starttls = starttls and tls_context is not None
        self.fallback_to_clear = fallback_to_clear
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        if policy is None:
            from mailward.policy.deliver import DeliveryPolicy
            policy = DeliveryPolicy(None)
        self.policy = policy   # try_tls / tls_server / tls_rcpt (mailward.policy.deliver.DeliveryPolicy)
        self.pool = pool or Pool(5.0, 100)
        self.connections = 0   # opened so far (tests look at reuse)

    # ---- policy (mailward.policy.deliver; "sendmail cf/README, STARTTLS") ----------------------
    def _tls_server(self, session: OutboundConnection):
        return self.policy.tls_server(session.facts(), tls_disabled=session.tls_disabled)

    def _tls_rcpt(self, session: OutboundConnection, address: str):
        return self.policy.tls_rcpt(session.facts(), address, tls_disabled=session.tls_disabled)

    # ---- one connection ------------------------------------------------------------------------------
    async def open(self, hop: Hop, qid: str | None, *, use_tls: bool = True, first_rcpt: str = "") -> OutboundConnection:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(hop.addr, hop.port),
                                                    self.connect_timeout)
        except asyncio.TimeoutError:
            raise HopFailure(_reply(451, "4.4.1", f"Connection timed out with {hop.name}")) from None
        except ConnectionRefusedError:
            raise HopFailure(_reply(451, "4.4.1", f"Connection refused by {hop.name}")) from None
        except OSError as err:
            raise HopFailure(_reply(451, "4.4.1", f"{err.strerror or err} with {hop.name}")) from None
        self.connections += 1
        session = OutboundConnection(hop, reader, writer, C.ClientConnection(self.helo_name), self.command_timeout)
        try:
            await self._greet(session, qid, use_tls, first_rcpt)
        except HopFailure:
            await session.close()
            raise
        except (C.RemoteProtocolError, asyncio.TimeoutError, OSError) as err:
            await session.close()
            what = "timeout" if isinstance(err, asyncio.TimeoutError) else str(err) or type(err).__name__
            raise HopFailure(_reply(451, "4.4.2", f"{hop.name}: {what}")) from None
        return session

    async def _ready(self, session: OutboundConnection, first: float | None = None) -> C.Ready:
        while True:
            ev = await session.event(first)
            if isinstance(ev, C.Ready):
                return ev
            if isinstance(ev, C.Greeting) and ev.reply.code == 220:
                continue
            # a refused greeting or EHLO, 421, a lost connection: try the next hop (RFC 5321 §3.1)
            reply = getattr(ev, "reply", None) or _reply(451, "4.4.2", "Connection lost")
            raise HopFailure(_reply(451, "4.4.2", f"{session.hop.name} said: {reply}"))

    async def _greet(self, session: OutboundConnection, qid: str | None, use_tls: bool, first_rcpt: str) -> None:
        hop = session.hop
        ready = await self._ready(session, self.connect_timeout)
        offered = "STARTTLS" in ready.extensions
        wanted = use_tls and self.starttls
        if offered and wanted:
            # Try_TLS after the EHLO reply (sendmail: ruleset try_tls)
            decision = self.policy.try_tls_decision(hop.name, hop.addr, first_rcpt)
            if decision.failed:
                _log_policy(None, decision)
                wanted = False
                session.try_tls_refused = True
        if offered and wanted:
            session.core.start_tls()
            ev = await session.event()
            if isinstance(ev, C.TLSReady):
                try:
                    await session.handshake(self.tls_context, self.command_timeout)
                except (TLSFailure, asyncio.TimeoutError, OSError) as err:
                    reason = str(err) or type(err).__name__
                    log.info(None, **{"STARTTLS": "client"}, relay=hop.name, error=f"handshake failed: {reason}",
                             verify="SOFTWARE")
                    session.tls = TLSFacts(verify="SOFTWARE")
                    decision = self._tls_server(session)  # verify=SOFTWARE always fails ("sendmail cf/README, STARTTLS")
                    _log_policy(None, decision)
                    raise HopFailure(_reply(decision.code or 403, decision.status or "4.7.0",
                                            f"{hop.name}: TLS handshake failed: {reason}"), tls_failed=True)
                t = session.tls
                if t.verify_failure:
                    log.logger.info(f"STARTTLS: TLS cert verify: {t.verify_failure}",
                                    extra={"fields": {"STARTTLS": "client", "cert_verify": t.verify_failure},
                                           "qid": None})
                log.info(None, **{"STARTTLS": "client"}, relay=hop.name, version=t.tls_version, verify=t.verify,
                         cipher=t.cipher, bits=f"{t.cipher_bits}/{t.alg_bits}")
                log.info(None, **{"STARTTLS": "client", "cert-subject": t.cert_subject,
                                  "cert-issuer": t.cert_issuer, "verifymsg": t.verifymsg})
                decision = self._tls_server(session)
                if decision.failed:   # QUIT inside TLS at once, no second EHLO
                    _log_policy(None, decision)
                    session.core.tls_refused_by_policy()
                    session.tls_refused = True
                    raise HopFailure(_reply(decision.code, decision.status, decision.reply_text))
                session.core.tls_started()
                await self._ready(session)
                return
            if not isinstance(ev, C.TLSRefused):
                raise HopFailure(_reply(451, "4.4.2", f"{hop.name}: connection lost after STARTTLS"))
        elif offered and not session.try_tls_refused:
            # offered but not used (delivery.starttls off, the clear retry): sendmail's verify=CLEAR.
            # Not offered, or Try_TLS said NO: verify=NONE, as sendmail 8.17 reports it.
            session.tls_disabled = True
        decision = self._tls_server(session)
        if decision.failed:
            _log_policy(None, decision)
            session.tls_refused = True
            raise HopFailure(_reply(decision.code, decision.status, decision.reply_text))

    async def _session(self, hop: Hop, qid: str | None, first_rcpt: str) -> OutboundConnection:
        """A new connection to ``hop``, in clear after a failed handshake when allowed."""
        try:
            return await self.open(hop, qid, first_rcpt=first_rcpt)
        except HopFailure as failure:
            if not (failure.tls_failed and self.fallback_to_clear):
                raise
            log.info(qid, relay=hop.name, stat="retrying without STARTTLS (tls_fallback_to_clear)")
            return await self.open(hop, qid, use_tls=False, first_rcpt=first_rcpt)

    # ---- one message to one destination ------------------------------------------------------------------
    async def deliver(self, transfer: Transfer, hops: list[Hop]) -> dict[int, Outcome]:
        qid = transfer.qid
        results: dict[int, Outcome] = {}
        pending = list(transfer.recipients)
        last = _reply(451, "4.4.0", "No host to deliver to")
        last_relay = ""
        for hop in hops:
            try:
                done = await self._on_hop(hop, transfer.only(pending))
            except HopFailure as failure:
                last, last_relay = failure.reply, hop.relay
                if failure.reply.is_permanent:  # TLS_Srv PERM+: bounce, no other host
                    for r in pending:
                        results[r.index] = Outcome(failure.reply, hop.relay)
                    return results
                continue
            except Exception as err:  # a bug must not lose the message: defer, say why
                log.event(40, qid, relay=hop.relay, stat=f"delivery error: {err!r}")
                last = _reply(451, "4.3.0", f"Local error talking to {hop.name}: {type(err).__name__}")
                continue
            pending_next = []
            for r in pending:
                outcome = done[r.index]
                if outcome.elsewhere:
                    pending_next.append(r)
                    last, last_relay = outcome.reply, outcome.relay or hop.relay
                else:
                    results[r.index] = outcome
            pending = pending_next
            if not pending:
                break
        for r in pending:
            results[r.index] = Outcome(last, last_relay)
        return results

    async def _on_hop(self, hop: Hop, transfer: Transfer) -> dict[int, Outcome]:
        """One transaction with ``hop``: over an idle connection kept from an earlier message if
        there is one (and again over a new one if that had gone stale), else a new connection."""
        session = self.pool.take(hop)
        if session is not None and self._tls_server(session).failed:
            await session.close()   # the map changed since: this connection no longer qualifies
            session = None
        if session is not None:
            try:
                done = await self._use(session, transfer)
                if not done or not all(o.interrupted for o in done.values()):
                    return done
            except HopFailure:
                pass
        first = transfer.recipients[0].address if transfer.recipients else ""
        session = await self._session(hop, transfer.qid, first)
        return await self._use(session, transfer)

    async def _use(self, session: OutboundConnection, transfer: Transfer) -> dict[int, Outcome]:
        hop = session.hop
        try:
            recipients = transfer.recipients
            done = await self._transact(session, transfer)
            # RFC 5321 §4.5.3.1.10: recipients refused with 452 as too many for one transaction
            # go in the next transaction on the same connection, as long as each one progresses
            while session.core.ready:
                excess = [r for r in recipients if done[r.index].reply.code == 452]
                if not excess or len(excess) == len(recipients):
                    break
                recipients = excess
                done.update(await self._transact(session, transfer.only(excess)))
        except (C.RemoteProtocolError, C.LocalProtocolError, TLSFailure, OSError, asyncio.TimeoutError) as err:
            await session.close()
            raise HopFailure(_reply(451, "4.4.2", f"{hop.name}: {str(err) or type(err).__name__}")) from None
        if session.core.closed or session.tls_refused:
            # A connection that failed a TLS requirement (say STARTTLS was stripped) is not
            # kept: the retry must get a fresh chance to negotiate TLS.
            await session.close()
        else:
            await self.pool.give_back(session)
        return done

    async def _transact(self, session: OutboundConnection, transfer: Transfer) -> dict[int, Outcome]:
        hop, core = session.hop, session.core
        recipients, sender_params, size = transfer.recipients, transfer.sender_params, transfer.size
        out: dict[int, Outcome] = {}
        ext = core.extensions
        limit = ext.get("SIZE", "")
        if limit.isdigit() and int(limit) and size > int(limit):   # RFC 1870 §6.1
            reply = _reply(552, "5.3.4", f"Message is too large for {hop.name} ({size} > {limit})")
            return {r.index: Outcome(reply, hop.relay) for r in recipients}
        if any(k.upper() == "SMTPUTF8" for k in sender_params) and "SMTPUTF8" not in ext:  # RFC 6531 §3.2
            reply = _reply(553, "5.6.7", f"{hop.name} does not support SMTPUTF8")
            return {r.index: Outcome(reply, hop.relay) for r in recipients}
        # tls_rcpt for each recipient (sendmail checks it after MAIL is accepted, before
        # RCPT; the check is pure, so deciding here is the same and lets MAIL and RCPT
        # go out pipelined). A refused recipient is never named to this host.
        sendable = []
        for r in recipients:
            decision = self._tls_rcpt(session, r.address)
            if decision.failed:
                session.tls_refused = True
                _log_policy(None, decision)
                out[r.index] = Outcome(_reply(decision.code, decision.status, decision.reply_text), hop.relay,
                                       elsewhere=decision.action == "tempfail")
            else:
                sendable.append(r)
        tx = C.Transaction(transfer.sender, tuple((r.address, r.params) for r in sendable), sender_params, size)
        core.send_transaction(tx)
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
                for i, r in enumerate(sendable):
                    reply = ev.result.outcome(i)
                    lost = ev.result.interrupted and reply.is_transient
                    out[r.index] = Outcome(reply, hop.relay, dsn_passed=dsn, elsewhere=lost, interrupted=lost)
                return out
            if isinstance(ev, C.Closed) or ev is C.WAITING:
                reply = _reply(451, "4.4.2", f"Connection lost with {hop.name}")
                for r in sendable:
                    out.setdefault(r.index, Outcome(reply, hop.relay, elsewhere=True, interrupted=True))
                return out


def _log_policy(qid: str | None, decision) -> None:
    """sendmail's line for a refused check: ``QID: ruleset=tls_server, arg1=..., reject=...``."""
    text = decision.log_fragment
    if text:
        log.logger.log(log.NOTICE, f"{qid}: {text}" if qid else text,
                       extra={"fields": {"policy": text}, "qid": qid})
