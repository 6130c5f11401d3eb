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
   Then SMTP AUTH when the access map has ``AuthInfo:`` for the host
   (:mod:`mailward.deliver.smtp_auth`): only inside TLS, after tls_server passed and EHLO
   was said again; an entry for a host reached in clear gives it up (454 4.7.0, never in
   clear), a refused AUTH too (temporary, the server's reply in the reason).
5. MAIL; then tls_rcpt (``TLS_Rcpt:``) for each recipient before its RCPT: a refused
   recipient is not sent here (temporary → another host may take it: "Securing Sendmail with TLS"'s multiple-MX
   example, where mail for ``TLS_Rcpt:secure.domain ENCR:112`` never goes in clear to a
   backup MX; PERM → bounce). When every recipient was refused, RSET follows MAIL.
6. The transaction (pipelined when offered); per-recipient replies become outcomes.

Before each hop is used, the one TLS decision for it (:mod:`mailward.policy.tls_requirement`,
gathered by :class:`~mailward.deliver.tls_sources.TlsSources`) says which source applies.
The access map: everything above, unchanged. DANE, MTA-STS, REQUIRETLS, or a floor above
``may``: STARTTLS is required (no clear fallback), the session is checked after the handshake
(:func:`~mailward.deliver.tls_sources.check_session`) and its result appended to the
``STARTTLS=client`` line (``policy=dane, dane=verified``, ``policy=mta-sts, sts=enforce``,
``policy=floor, level=verify``); a refusal is one line ``policy=dane, relay=mx.example,
reject=454 4.7.5 ...`` and QUIT, and the reason the queue keeps names the source and level.
An MTA-STS ``enforce`` policy skips an MX that does not match it; a bogus DANE lookup defers
the host; REQUIRETLS (RFC 8689 §4.2.1) also needs REQUIRETLS offered after STARTTLS (550
5.7.30 otherwise) and sends it on MAIL; a host that cannot qualify is passed over, and the
recipients bounce (550 5.7.10) once no host qualified. With the floor at ``may`` and no other
source, the log lines are sendmail's exactly.

Connection problems (refused, timeout, greeting or EHLO refused, 421, lost connection, a
reply that is not SMTP) move on to the next hop; when no hop is left the recipients are
deferred with the last reason. 4xx/5xx replies to RCPT or DATA are final for this attempt.
Open connections are kept (:class:`Pool`) for the next message to the same server name and
address (``max_messages_per_connection``, ``connection_idle``); tls_server is checked again
whenever one is reused, against the map in use at that moment.

SECURITY: no MAIL command and no message content reach a host that tls_server refused; no
RCPT and no content reach it for a recipient that tls_rcpt refused. The end-to-end sweep in
``tests/deliver/test_tls_policy_sweep.py`` checks this for every route form, key form and
receiver kind. Likewise no MAIL and no content reach a host that the TLS decision ruled out
(skipped, deferred, or refused after the handshake: STARTTLS missing, DANE mismatch, an
unverified certificate, REQUIRETLS not offered), and no clear-text retry follows a failed
handshake when the decision needs TLS; ``tests/deliver/test_tls_sources.py`` checks it on
what the receivers recorded. When a source's lookup fails (bogus DNSSEC, an error while
gathering the sources) the host is deferred, never used in clear.

Failure behaviour: no exception escapes :meth:`Outbound.deliver` for anything a peer does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Callable, Iterable

from mailward import log
from mailward.deliver import smtp_auth
from mailward.deliver.connection import Pool, OutboundConnection
from mailward.deliver.routes import Hop
from mailward.deliver.tls_sources import HopTls, TlsSources, check_session, floor_requirement, requirement_fields
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
    """This hop cannot take the message now. ``tls_failed``: the handshake failed (a clear
    retry may follow); ``requiretls``: the host does not qualify for a REQUIRETLS message
    (another MX may; the message bounces when none does, RFC 8689 §4.2.1)."""
    def __init__(self, reply: Reply, *, tls_failed: bool = False, requiretls: bool = False):
        super().__init__(str(reply))
        self.reply = reply
        self.tls_failed = tls_failed
        self.requiretls = requiretls


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
    domain: str = ""                       # the recipient domain (MTA-STS, TLS-RPT)
    by_mx: bool = False                    # the hops come from the domain's own MX lookup (DANE, MTA-STS)
    relaxed: str = ""                      # "TLS-Required: No" (RFC 8689 §4.2.2), '' otherwise
    report: bool = False                   # a TLS report message (RFC 8460 §5.3)

    def only(self, recipients: list[PendingRecipient]) -> "Transfer":
        return replace(self, recipients=recipients)


def _reply(code: int, status: str, text: str) -> Reply:
    return Reply(code, status, text)


class Outbound:
    def __init__(self, *, helo_name: str, tls_context, starttls: bool = True, fallback_to_clear: bool = True,
                 connect_timeout: float = 30.0, command_timeout: float = 300.0,
                 policy=None, pool: Pool | None = None, tls_sources: TlsSources | None = None):
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
        self.tls_sources = tls_sources or TlsSources(policy)
        self.connections = 0   # opened so far (tests look at reuse)

    # ---- policy (mailward.policy.deliver; "sendmail cf/README, STARTTLS") ----------------------
    def _tls_server(self, session: OutboundConnection):
        return self.policy.tls_server(session.facts(), tls_disabled=session.tls_disabled)

    def _tls_rcpt(self, session: OutboundConnection, address: str):
        return self.policy.tls_rcpt(session.facts(), address, tls_disabled=session.tls_disabled)

    # ---- one connection ------------------------------------------------------------------------------
    def _default_tls(self) -> HopTls:
        return HopTls(floor_requirement(self.tls_sources.floor))

    async def open(self, hop: Hop, qid: str | None, *, use_tls: bool = True, first_rcpt: str = "",
                   hop_tls: HopTls | None = None) -> OutboundConnection:
        hop_tls = hop_tls or self._default_tls()
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
        session.hop_tls = hop_tls
        try:
            await self._greet(session, qid, use_tls, first_rcpt)
            await self._authenticate(session)
        except HopFailure:
            await session.close()
            raise
        except (C.RemoteProtocolError, asyncio.TimeoutError, OSError) as err:
            await session.close()
            what = "timeout" if isinstance(err, asyncio.TimeoutError) else str(err) or type(err).__name__
            raise HopFailure(_reply(451, "4.4.2", f"{hop.name}: {what}")) from None
        return session

    async def _authenticate(self, session: OutboundConnection) -> None:
        """SMTP AUTH with the access map's AuthInfo: for this host, now that it passed TLS_Srv
        and said EHLO inside TLS (:mod:`mailward.deliver.smtp_auth`; never in clear)."""
        amap = getattr(self.policy, "amap", None)
        if amap is None:
            return
        try:
            await smtp_auth.authenticate(session, amap)
        except smtp_auth.AuthStepFailed as failed:
            raise HopFailure(failed.reply) from None

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

    def _refuse(self, session: OutboundConnection, qid: str | None, why: str, failure: str = "", *,
                code: int = 454, status: str = "4.7.5") -> HopFailure:
        """A TLS source refused this host: one log line, the TLS-RPT count, the failure to raise.
        For a REQUIRETLS message every such refusal is 5.7.10 (5.7.30 when only REQUIRETLS was
        missing), and the message bounces once no host qualified (RFC 8689 §4.2.1)."""
        hop, hop_tls = session.hop, session.hop_tls
        req = hop_tls.requirement
        if req.requiretls:
            if code < 500:
                code, status = 550, "5.7.10"
            reply = _reply(code, status, f"REQUIRETLS needed: {hop.name}: {why} ({req.label})")
        else:
            reply = _reply(code, status, f"TLS {req.label}: {hop.name}: {why}")
        _log_refusal(qid, req.source, hop.name, reply)
        if failure:
            self.tls_sources.record(hop_tls, hop, failure=failure, why=why)
        session.tls_refused = True
        return HopFailure(reply, requiretls=req.requiretls)

    async def _greet(self, session: OutboundConnection, qid: str | None, use_tls: bool, first_rcpt: str) -> None:
        hop, hop_tls = session.hop, session.hop_tls
        req = hop_tls.requirement
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
                    if req.needs_tls or req.requiretls:   # no clear fallback: the policy wants TLS
                        raise self._refuse(session, qid, f"TLS handshake failed: {reason}", "validation-failure")
                    if req.testing:
                        self.tls_sources.record(hop_tls, hop, failure="validation-failure", why=reason)
                    raise HopFailure(_reply(decision.code or 403, decision.status or "4.7.0",
                                            f"{hop.name}: TLS handshake failed: {reason}"), tls_failed=True)
                t = session.tls
                check = check_session(hop_tls, hop, t, session.engine.peer_chain_der() if session.engine else [])
                if t.verify_failure:
                    log.logger.info(f"STARTTLS: TLS cert verify: {t.verify_failure}",
                                    extra={"fields": {"STARTTLS": "client", "cert_verify": t.verify_failure},
                                           "qid": None})
                log.info(None, **{"STARTTLS": "client"}, relay=hop.name, version=t.tls_version, verify=t.verify,
                         cipher=t.cipher, bits=f"{t.cipher_bits}/{t.alg_bits}",
                         **(check.fields or requirement_fields(req)),
                         **({"requiretls": "required"} if req.requiretls else {}))
                log.info(None, **{"STARTTLS": "client", "cert-subject": t.cert_subject,
                                  "cert-issuer": t.cert_issuer, "verifymsg": t.verifymsg})
                decision = self._tls_server(session)
                if decision.failed:   # QUIT inside TLS at once, no second EHLO
                    _log_policy(None, decision)
                    session.core.tls_refused_by_policy()
                    session.tls_refused = True
                    raise HopFailure(_reply(decision.code, decision.status, decision.reply_text))
                if not check.ok and not req.testing:   # QUIT inside TLS at once, as for tls_server
                    session.core.tls_refused_by_policy()
                    raise self._refuse(session, qid, check.why, check.failure)
                if not check.ok:   # MTA-STS testing (RFC 8461 §5): logged and counted, delivered anyway
                    log.info(qid, policy=req.source, relay=hop.name, sts="testing", failure=check.failure,
                             reason=check.why, stat="delivering anyway (testing mode)")
                session.core.tls_started()
                ready = await self._ready(session)
                if req.requiretls and "REQUIRETLS" not in ready.extensions:   # RFC 8689 §4.2.1 step 4
                    raise self._refuse(session, qid, "REQUIRETLS support required: not offered after STARTTLS",
                                       code=550, status="5.7.30")
                self.tls_sources.record(hop_tls, hop, failure=check.failure, why=check.why)
                return
            if not isinstance(ev, C.TLSRefused):
                raise HopFailure(_reply(451, "4.4.2", f"{hop.name}: connection lost after STARTTLS"))
            if req.needs_tls or req.requiretls:
                raise self._refuse(session, qid, f"STARTTLS refused: {getattr(ev, 'reply', '')}",
                                   "starttls-not-supported")
        elif offered and not session.try_tls_refused:
            # offered but not used (delivery.starttls off, the clear retry): sendmail's verify=CLEAR.
            # Not offered, or Try_TLS said NO: verify=NONE, as sendmail 8.17 reports it.
            session.tls_disabled = True
        if req.needs_tls or req.requiretls:
            why = "STARTTLS not offered" if not offered else "STARTTLS not used here (Try_TLS, delivery.starttls)"
            raise self._refuse(session, qid, why, "starttls-not-supported" if not offered else "")
        if not offered:
            if req.testing:
                log.info(qid, policy=req.source, relay=hop.name, sts="testing", failure="starttls-not-supported",
                         stat="delivering anyway (testing mode)")
            self.tls_sources.record(hop_tls, hop, failure="starttls-not-supported", why="STARTTLS not offered")
        decision = self._tls_server(session)
        if decision.failed:
            _log_policy(None, decision)
            session.tls_refused = True
            raise HopFailure(_reply(decision.code, decision.status, decision.reply_text))

    async def _session(self, hop: Hop, qid: str | None, first_rcpt: str, hop_tls: HopTls) -> OutboundConnection:
        """A new connection to ``hop``, in clear after a failed handshake when allowed."""
        try:
            return await self.open(hop, qid, first_rcpt=first_rcpt, hop_tls=hop_tls)
        except HopFailure as failure:
            if not (failure.tls_failed and self.fallback_to_clear):
                raise
            log.info(qid, relay=hop.name, stat="retrying without STARTTLS (tls_fallback_to_clear)")
            return await self.open(hop, qid, use_tls=False, first_rcpt=first_rcpt, hop_tls=hop_tls)

    # ---- one message to one destination ------------------------------------------------------------------
    async def deliver(self, transfer: Transfer, hops: list[Hop]) -> dict[int, Outcome]:
        qid = transfer.qid
        results: dict[int, Outcome] = {}
        pending = list(transfer.recipients)
        last = _reply(451, "4.4.0", "No host to deliver to")
        last_relay = ""
        transient: tuple[Reply, str] | None = None    # the last failure another attempt may cure
        for hop in hops:
            hop_tls = await self.tls_sources.for_hop(hop, transfer.only(pending))
            req = hop_tls.requirement
            if hop_tls.mx_mismatch:   # MTA-STS testing (RFC 8461 §5): say so, count it, go on
                log.info(qid, policy=req.source, relay=hop.name, sts="testing", failure="validation-failure",
                         reason=hop_tls.mx_mismatch, stat="delivering anyway (testing mode)")
            if req.action != "connect":
                last, last_relay = self._not_this_hop(qid, hop, hop_tls), hop.relay
                if req.action != "bounce":
                    transient = (last, last_relay)
                continue
            try:
                done = await self._on_hop(hop, transfer.only(pending), hop_tls)
            except HopFailure as failure:
                last, last_relay = failure.reply, hop.relay
                if failure.requiretls and failure.reply.is_permanent:
                    continue   # RFC 8689 §4.2.1: try the other MX hosts, bounce when none qualifies
                if failure.reply.is_permanent:  # TLS_Srv PERM+: bounce, no other host
                    for r in pending:
                        results[r.index] = Outcome(failure.reply, hop.relay)
                    return results
                transient = (last, last_relay)
                continue
            except Exception as err:  # a bug must not lose the message: defer, say why
                log.event(40, qid, relay=hop.relay, stat=f"delivery error: {err!r}")
                last = _reply(451, "4.3.0", f"Local error talking to {hop.name}: {type(err).__name__}")
                transient = (last, hop.relay)
                continue
            pending_next = []
            for r in pending:
                outcome = done[r.index]
                if outcome.elsewhere:
                    pending_next.append(r)
                    last, last_relay = outcome.reply, outcome.relay or hop.relay
                    transient = (last, last_relay)
                else:
                    results[r.index] = outcome
            pending = pending_next
            if not pending:
                break
        if last.is_permanent and transient is not None:
            last, last_relay = transient   # a host that failed for now may qualify later: defer
        for r in pending:
            results[r.index] = Outcome(last, last_relay)
        return results

    def _not_this_hop(self, qid: str | None, hop: Hop, hop_tls: HopTls) -> Reply:
        """The reply for a hop the decision rules out before connecting (logged, counted)."""
        req = hop_tls.requirement
        if req.action == "skip":   # MTA-STS enforce, MX not in the policy (RFC 8461 §4.1)
            reply = _reply(451, "4.7.5", f"TLS {req.label}: {hop.name}: {req.detail}")
            self.tls_sources.record(hop_tls, hop, failure="validation-failure", why=req.detail)
        elif req.action == "bounce":   # REQUIRETLS cannot be met by this host (RFC 8689 §4.2.1)
            reply = _reply(550, "5.7.10", f"REQUIRETLS needed: {hop.name}: {req.detail}")
        else:   # defer: a bogus DANE lookup (RFC 7672 §2.1), or a policy error
            reply = _reply(454, "4.7.5", f"TLS {req.label}: {hop.name}: {req.detail}")
            if req.source == "dane":
                self.tls_sources.record(hop_tls, hop, failure="dnssec-invalid", why=req.detail)
        _log_refusal(qid, req.source, hop.name, reply)
        return reply

    async def _on_hop(self, hop: Hop, transfer: Transfer, hop_tls: HopTls | None = None) -> dict[int, Outcome]:
        """One transaction with ``hop``: over an idle connection kept from an earlier message if
        there is one (and again over a new one if that had gone stale), else a new connection.
        A kept connection is used only when it was opened under the same TLS decision."""
        hop_tls = hop_tls or self._default_tls()
        session = self.pool.take(hop)
        if session is not None and (self._tls_server(session).failed
                                    or session.hop_tls is None or session.hop_tls.requirement.key != hop_tls.requirement.key):
            await session.close()   # the map or the decision changed since: this connection no longer qualifies
            session = None
        if session is not None:
            try:
                done = await self._use(session, transfer)
                if not done or not all(o.interrupted for o in done.values()):
                    return done
            except HopFailure:
                pass
        first = transfer.recipients[0].address if transfer.recipients else ""
        session = await self._session(hop, transfer.qid, first, hop_tls)
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
                # written in pieces of at least 64 KiB, the last with the final dot: a small
                # message is one TLS record and one send, not two
                pending = 0
                for chunk in transfer.content():
                    core.send_content(chunk)
                    pending += len(chunk)
                    if pending >= 1 << 16:
                        await session.write(core.data_to_send())
                        pending = 0
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


def _log_refusal(qid: str | None, source: str, relay: str, reply: Reply) -> None:
    """One line for a host a TLS source refused: ``policy=dane, relay=mx.example, reject=454 4.7.5 ...``."""
    text = f"policy={source}, relay={relay}, reject={reply}"
    log.logger.log(log.NOTICE, f"{qid}: {text}" if qid else text,
                   extra={"fields": {"policy": source, "relay": relay, "reject": str(reply)}, "qid": qid})


def _log_policy(qid: str | None, decision) -> None:
    """sendmail's line for a refused check: ``QID: ruleset=tls_server, arg1=..., reject=...``."""
    text = decision.log_fragment
    if text:
        log.logger.log(log.NOTICE, f"{qid}: {text}" if qid else text,
                       extra={"fields": {"policy": text}, "qid": qid})
