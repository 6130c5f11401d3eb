"""One SMTP connection: the asyncio protocol that drives the server core over a socket.

Bytes from the socket go through the TLS engine (after STARTTLS) into
:class:`mailward.smtp.server.ServerConnection`; its events are answered here with the gate
(policy), the spool (durability) and the log. Replies leave when the core needs more input,
so a pipelined group is answered in one write.

The listener's role (:mod:`mailward.listen`) shapes the session: ``submission`` and
``submissions`` make the core require STARTTLS and AUTH before MAIL, and ``submissions``
runs the TLS handshake before the greeting. TLS is :mod:`.session_tls`, the AUTH exchange
with the backend :mod:`.session_auth` (both mixed in); an authenticated user's MAIL is
checked against the sender login map and the per-user rate limit here (an accepted MAIL holds
a place in the user's rate until its message is counted or its transaction ends).

Timeouts: ``idle_timeout`` while waiting for a command, ``data_timeout`` inside DATA,
``tls_handshake_timeout`` during the handshake; each ends the session with 421.
Backpressure: reading stops while more than ``WRITE_HIGH_WATER`` octets of replies wait in
the transport (a client pipelining commands and never reading its replies), once input
arrives while a message is being made durable (that read is held), and while an AUTH step is being checked; the core holds at
most its own high-water mark of replies and one read of input. Such a client makes no progress, so the command timeout ends it,
and a transport that cannot drain is aborted rather than left to hold its buffer.
Failure behaviour: no exception from a peer's bytes escapes; a spool error gives
452 4.3.1 and the partial file is removed; a TLS failure logs verify=SOFTWARE and closes.

State: where the connection is is one :class:`Phase` (GREETING, OPEN, CLOSED); a message
being made durable is :attr:`SMTPSession.committing` beside it, because its commit goes on
(and its queue file is kept) when the client leaves before the 250.

SECURITY
    Faces the network. The client controls: every byte and when it arrives (before the
    greeting, one byte a second, pipelined without end, never reading our replies), when it
    disconnects (at every stage, during the handshake, before our 250), its TLS handshake
    and certificate, the addresses, parameters and HELO name it sends, and its reverse DNS
    (a PTR record proves nothing: a name is used only once its forward lookup confirms it).

    Bounded, and by what: the time for a command by ``server.idle_timeout`` (300 s, RFC 5321
    §4.5.3.2.7), for each DATA block by ``server.data_timeout``, for the handshake by
    ``server.tls_handshake_timeout`` — each ends the session with 421, and the timers are
    re-armed only for whole commands or lines, so dribbled bytes do not keep a session
    alive; bytes before the greeting by ``EARLY_INPUT_LIMIT`` (then closed); replies waiting
    in the transport by ``WRITE_HIGH_WATER`` (reading stops; a transport that cannot drain
    is aborted); input and replies inside the core by its limits (``server.max_*``, see
    :mod:`mailward.smtp.server`); disk by ``spool.min_free_space`` (452 4.3.1 at MAIL);
    connections by ``server.max_connections`` and ``server.max_connections_per_client``
    (:meth:`mailward.receive.server.SMTPServer.admit`). On submission and submissions
    listeners, ``[submission]``'s non-zero limits replace these (:mod:`.role_limits`).

    Must never happen: a 250 for a message that is not durable (the spool's commit comes
    first); a partial or refused message left in the spool; the client's words posing as a
    field or a line of the log (addresses and bytes are escaped: ``printable_address``,
    ``printable_bytes``); plaintext read before or during the TLS handshake handled as a command
    inside TLS (CVE-2011-0411: the core drops it, and nothing read in clear after STARTTLS
    reaches it); an exception from a peer's bytes escaping into the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import errno
import logging
import time

from mailward import log
from mailward.policy.receive import ReceivePolicy, Verdict
from mailward.receive.received import protocol_name, received_header
from mailward.smtp import events as ev
from mailward.smtp import replies as R
from mailward.smtp.parse import printable_address, printable_bytes, printable_fields
from mailward.smtp.replies import Reply
from mailward.smtp.server import PROTOCOL_ERROR, ServerConnection
from mailward.spool.store import Envelope, Incoming, Recipient, new_queue_id
from mailward.receive.session_auth import SessionAuth
from mailward.receive.session_tls import SessionTLS
from mailward.receive.session_timer import SessionTimer
from mailward.smtp.server_auth import AuthCancelled, AuthRequested, AuthResponse
from mailward.tls.engine import TLSClosed, TLSEngine, TLSFailure
from mailward.tls.facts import NO_TLS, ConnectionFacts, TLSFacts


class Phase(enum.Enum):
    """Where a session's connection is. A message being made durable is not a phase
    (:attr:`SMTPSession.committing`): its commit goes on after the client has gone."""
    GREETING = "before the 220: the client's name is being looked up; its bytes are held"
    OPEN = "the core is driven by what the client sends"
    CLOSED = "nothing read is handled any more; the transport is closing or closed"


class SMTPSession(SessionTimer, SessionTLS, SessionAuth, asyncio.Protocol):
    WRITE_HIGH_WATER = 65536   # transport buffer above which reading stops
    WRITE_LOW_WATER = 16384    # ... and below which it starts again
    EARLY_INPUT_LIMIT = 65536  # octets held before the greeting; more closes the connection

    def __init__(self, server):
        self.server = server                  # mailward.receive.server.SMTPServer
        self.settings = server.config.server
        self.transport: asyncio.Transport | None = None
        self.core: ServerConnection | None = None    # made when the greeting is sent
        self.client_addr = ""
        self.client_name = ""                 # sendmail's ${client_name}: a confirmed name or [addr]
        self.role = "mx"                      # the listener's (mailward.listen): mx, submission, submissions
        # The connection (see Phase) and the work that can outlive it.
        self.phase = Phase.GREETING
        self.committing = False               # a message is being made durable; its 250 waits
        self._early = bytearray()             # bytes before the greeting (EARLY_INPUT_LIMIT)
        self._timer: asyncio.TimerHandle | None = None
        # Backpressure.
        self._write_paused = False            # the transport holds more than WRITE_HIGH_WATER
        self._reading_paused = False          # pause_reading() is in effect
        # The message being received.
        self.incoming: Incoming | None = None  # its spool file, from DATA to the end of data
        self.spool_error: OSError | None = None  # a write of its text failed: 451/452 at the end
        self.discard = False                  # the access map said DISCARD at MAIL
        # TLS.
        self.engine: TLSEngine | None = None  # after STARTTLS
        self.tls: TLSFacts = NO_TLS           # the facts of the handshake, once it succeeded
        self.request_cert = True              # ask for a client certificate (Srv_Features V/v)
        self._tls_mail_verdict: Verdict | None = None  # tls_client at MAIL, until the TLS state changes
        self._tls_out = b""                   # TLS records not yet written
        self._facts: ConnectionFacts | None = None   # the last facts() (frozen, reused)

    @property
    def _closed(self) -> bool:
        return self.phase is Phase.CLOSED

    # ---- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=self.WRITE_HIGH_WATER, low=self.WRITE_LOW_WATER)
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.client_addr = peer[0]
        self.role = self.server.role_of(transport.get_extra_info("sockname"))
        self.settings = self.server.settings_for(self.role)   # the role's limits and timers
        refusal = self.server.admit(self)
        if refusal is not None and self.role == "submissions" and self.server.refuse_in_tls(self):
            # A client on 465 reads nothing in clear: the refusal is said inside TLS
            # (RFC 8314 §3.3), with no client certificate asked for.
            self.request_cert = False
            self._expect_implicit_tls()
            asyncio.get_running_loop().create_task(self._refuse_in_tls(refusal))
            return
        if refusal is not None:
            transport.write(refusal.to_bytes())
            transport.close()
            self.phase = Phase.CLOSED
            return
        self._arm(self.settings.idle_timeout)
        if self.role == "submissions":   # RFC 8314 §3.3: TLS from the first octet
            self._expect_implicit_tls()
        asyncio.get_running_loop().create_task(self._greet())

    async def _greet(self) -> None:
        self.client_name = await self.server.client_name(self.client_addr)
        if self._closed:
            return
        desc = f"{self.client_name} [{self.client_addr}]" if self.client_name != f"[{self.client_addr}]" \
            else self.client_name
        gate: ReceivePolicy = self.server.gate
        facts = self.facts()
        features = gate.features(facts)
        self.request_cert = features.request_client_cert
        if self._handshake is not None:   # implicit TLS: greet inside TLS, once it is up
            if not self._begin_implicit_tls():
                return
            await self._handshake
            if self._closed:
                return
        self.core = ServerConnection(
            self.server.hostname, desc, self._limits(),
            starttls_available=features.offer_starttls and self.server.tls_context is not None,
            implicit_tls=self.tls.active, auth_available=self.server.auth is not None,
            submission=self.role in ("submission", "submissions"))
        if self.tls.active:
            self._tls_state_checks()
        if self._early:  # bytes before the greeting: the core sees them before it greets
            data, self._early = bytes(self._early), bytearray()
            self.core.receive_data(data)
        verdict = gate.connect(facts)
        if verdict.reply is not None:
            log.notice(None, ruleset="check_relay", arg1=self.client_name, arg2=self.client_addr,
                       relay=self.relay, reject=str(verdict.reply))
        if verdict.reply is not None and verdict.reply.code >= 500:
            self.core.refuse(verdict.reply)
        elif verdict.reply is not None:  # a temporary refusal: 421 and close (RFC 5321 §3.8)
            self._write(Reply(421, verdict.reply.status or "4.3.0", verdict.reply.text).to_bytes())
            self._close()
            return
        else:
            date = time.strftime("%a, %d %b %Y %H:%M:%S %z")
            self.core.greet(f"{self.server.hostname} ESMTP mailward; {date}")
        self.phase = Phase.OPEN
        self._pump()

    async def _refuse_in_tls(self, refusal: Reply) -> None:
        if not self._begin_implicit_tls():
            return
        await self._handshake
        if not self._closed:
            self._write(refusal.to_bytes())
            self._close()

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        finally:
            if self._tls_out and not self._closed:  # handshake records with nothing to follow
                out, self._tls_out = self._tls_out, b""
                self.transport.write(out)

    def _received(self, data: bytes) -> None:
        if self._closed:
            return
        if self.engine is not None:
            try:
                plain, out = self.engine.feed(data)
            except TLSClosed:
                # The handshake may have completed in this very read (s_client sends its
                # Finished and close_notify together): its facts are logged all the same.
                self._note_handshake()
                # close_notify: whatever follows in clear is never read (RFC 8446 §6.1)
                log.info(None, STARTTLS="server", relay=self.relay,
                         stat="client closed the TLS session (close_notify)",
                         during="DATA" if self.core and self.core.in_data else None)
                try:
                    self.transport.write(self.engine.close())  # our close_notify in return
                except Exception:
                    pass
                self._close_transport()
                return
            except TLSFailure as err:
                self._note_handshake()
                self._tls_failed(str(err), getattr(err.__cause__, "output", b""))
                return
            if out:  # held back to leave in one write with our reply (e.g. tickets + EHLO reply)
                self._tls_out += out
            self._note_handshake()
            data = plain
            if not data:
                return
        if self.phase is Phase.GREETING:
            self._early += data  # handled after the greeting (bounded by the line limits)
            if len(self._early) > self.EARLY_INPUT_LIMIT:
                self._close()
            return
        self.core.receive_data(data)
        if self.committing:   # held in the core; reading stops until the 250 (see committed)
            self._update_reading()
        else:
            self._pump()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()
        if self.phase is Phase.OPEN and not self.committing:
            self._pump()  # replies the core held back, for input it already has

    def _update_reading(self) -> None:
        pause = self.committing or self._write_paused or self.auth_busy
        if pause == self._reading_paused or self._closed:
            return
        self._reading_paused = pause
        if pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = Phase.CLOSED
        if self._handshake is not None and not self._handshake.done():
            self._handshake.cancel()
        if self._timer:
            self._timer.cancel()
        self._abort_incoming()
        if not self.auth_busy:   # gone in the middle of an exchange, no check running: not a guess
            self._auth_release()
        if not self.committing:   # a message being made durable releases its place when counted
            self._rate_release()
        self.server.forget(self)

    # ---- helpers --------------------------------------------------------------------------
    def _limits(self):
        """The server's limits with this module's own settings (read with defaults, so that
        a configuration without them still works)."""
        limits = self.server.limits_for(self.role)
        own = {key: bool(getattr(self.settings, key, getattr(limits, key)))
               for key in ("forbid_unauth_pipelining", "reject_nul_in_data")}
        if any(value != getattr(limits, key) for key, value in own.items()):
            limits = dataclasses.replace(limits, **own)
        return limits

    def _log_text(self, level: int, text: str, **fields) -> None:
        """A log line in another MTA's exact words (grep-compatible), with the same facts as
        named fields for the JSON log."""
        if log.logger.isEnabledFor(level):
            log.logger.log(level, text, extra={"fields": fields, "qid": None})

    @property
    def relay(self) -> str:
        if self.client_name and self.client_name != f"[{self.client_addr}]":
            return f"{self.client_name} [{self.client_addr}]"
        claimed = self.claimed_name
        if claimed:   # sendmail: the PTR name, shown but never trusted
            return f"{printable_address(claimed)} [{self.client_addr}] (may be forged)"
        return f"[{self.client_addr}]"

    @property
    def claimed_name(self) -> str:
        """A reverse name its forward lookup did not confirm ('' for none)."""
        lookup = getattr(self.server, "claimed_name", None)
        return lookup(self.client_addr) if lookup is not None and self.client_addr else ""

    def facts(self) -> ConnectionFacts:
        """What policy knows of the connection; made again only when a part of it changed."""
        helo = self.core.helo if self.core and self.core.helo else ""
        f = self._facts
        if f is None or f.helo != helo or f.tls is not self.tls or f.peer_name != self.client_name \
                or f.peer_addr != self.client_addr:
            f = self._facts = ConnectionFacts(peer_name=self.client_name, peer_addr=self.client_addr,
                                              helo=helo, tls=self.tls)
        return f

    def _timed_out(self) -> None:
        if self._closed:
            return
        log.notice(None, relay=self.relay, stat="timeout waiting for input",
                   during="DATA" if self.core and self.core.in_data else "command")
        if self.core is not None:
            self.core.timeout()
            self._flush()
        self._close()

    def _write(self, data: bytes) -> None:
        if not data or self._closed:
            return
        if self.engine is not None and self.engine.handshake_done:
            try:
                data = self.engine.encrypt(data)
            except TLSFailure:
                self._close()
                return
        if self._tls_out:
            data, self._tls_out = self._tls_out + data, b""
        self.transport.write(data)

    def _flush(self) -> None:
        self._write(self.core.data_to_send())

    def _close(self) -> None:
        if self._closed:
            return
        self.phase = Phase.CLOSED
        if self.engine is not None and self.engine.handshake_done:
            try:
                self.transport.write(self._tls_out + self.engine.close())
            except Exception:
                pass
        self._close_transport()

    def _close_transport(self) -> None:
        """close() lets the last replies drain; a peer that does not read them is cut off:
        at once if the transport is already above its high-water mark, else after the
        command timeout."""
        self.phase = Phase.CLOSED
        if self._write_paused:
            self.transport.abort()
            return
        self.transport.close()
        if self._timer:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.settings.idle_timeout, self.transport.abort)

    def shutdown(self) -> None:
        """Server shutdown: 421 now if idle; a session inside DATA gets the grace period."""
        if self._closed or self.core is None:
            self._close()
            return
        self.core.shutdown()
        self._flush()
        self._close()

    @property
    def idle(self) -> bool:
        return self.core is None or not (self.core.in_data or self.committing)

    # ---- the event loop over the core --------------------------------------------------
    def _pump(self) -> None:
        # The timer is re-armed only when a whole command or whole DATA lines arrived, not
        # for every byte: a client dribbling one byte a second still times out (slowloris).
        core = self.core
        progressed = False
        while self.phase is not Phase.CLOSED:
            event = core.next_event()
            if event is ev.NEED_DATA or event is ev.PAUSED:
                held_back = core.output_full
                self._flush()
                if core.closed:
                    self._close()
                    return
                if held_back and not self._write_paused and not self._closed:
                    continue  # the core stopped for its replies; they are written, go on
                if progressed and (self.engine is None or self.engine.handshake_done):
                    self._arm(self.settings.data_timeout if core.in_data else self.settings.idle_timeout)
                return
            progressed = True
            handler = _DISPATCH.get(type(event))
            if handler is not None:
                handler(self, event)
            if self.committing:
                self._flush()
                return

    def _on_helo(self, event: ev.Helo) -> None:
        pass

    def _on_mail(self, event: ev.MailFrom) -> None:
        facts, sender = self.facts(), f"<{event.path.address}>"
        # tls_client depends only on the connection's facts: once per TLS state, not per MAIL
        if self._tls_mail_verdict is None:
            self._tls_mail_verdict = self.server.gate.tls_client(facts, "MAIL")
        verdict = self._tls_mail_verdict
        if verdict.reply is not None:
            self.core.block(verdict.reply)  # RCPT gets the same answer, as in sendmail
        else:
            verdict = self.server.gate.mail(facts, event.path.address)
        user = self.core.authenticated
        if verdict.reply is None and user is not None:   # submission.sender_login_map
            verdict = self.server.gate.sender_login(user, event.path.address)
        size = event.path.params.get("SIZE") or "0"
        if verdict.reply is None and not self.server.spool_has_room(int(size)):
            verdict = Verdict(R.STORAGE_FULL)
        if verdict.reply is None and user is not None and not self._rate_hold(user):   # the rate limit
            verdict = Verdict(Reply(450, "4.7.1", "Rate limit exceeded, try again later"),
                              {"authid": printable_address(user)})
        self.discard = verdict.discard
        self._answer(verdict, "check_mail", sender)

    def _on_rcpt(self, event: ev.RcptTo) -> None:
        verdict = self.server.gate.rcpt(self.facts(), event.path.address, self.core.authenticated)
        self._answer(verdict, "check_rcpt", f"<{event.path.address}>")

    def _answer(self, verdict, ruleset: str, arg1: str) -> None:
        if verdict.reply is not None:
            fields = {"ruleset": ruleset, "arg1": arg1}
            fields.update(verdict.log or {})
            fields["relay"] = self.relay
            fields["reject"] = str(verdict.reply)
            log.notice(None, **printable_fields(fields))
        self.core.respond(verdict.reply)

    def _on_data_requested(self, event: ev.DataRequested) -> None:
        core = self.core
        tx = core.transaction  # what the client sent; the spool's Envelope is made from it
        qid = new_queue_id()
        smtputf8, user = tx.smtputf8, core.authenticated
        params = dict(tx.sender.params)
        if "AUTH" in params:
            params["AUTH"] = self.auth_param(tx.sender.address, params["AUTH"])
        envelope = Envelope(
            queue_id=qid, sender=tx.sender.address, sender_params=params,
            recipients=[Recipient(r.address, dict(r.params)) for r in tx.recipients],
            received_at=time.time(), client_name=self.client_name, client_addr=self.client_addr,
            helo=core.helo or "", tls=self.tls.__dict__ if self.tls.active else {})
        try:
            self.incoming = self.server.spool.begin(envelope)
            self.incoming.write(received_header(
                helo=core.helo or "", client_name=self.client_name, client_addr=self.client_addr,
                hostname=self.server.hostname,
                protocol=protocol_name(core.extended, self.tls.active, smtputf8, user is not None),
                queue_id=qid, tls=self.tls, recipients=[r.address for r in tx.recipients],
                claimed_name=self.claimed_name, authenticated=user is not None))
        except OSError as err:
            self.incoming = None
            self._storage_problem(err)
            core.respond(R.STORAGE_FULL if err.errno in (errno.ENOSPC, errno.EDQUOT) else R.LOCAL_ERROR)
            return
        self.spool_error = None
        core.respond(None)

    def _storage_problem(self, err: OSError) -> None:
        self.server.forget_free_space()  # the next MAIL looks at the disk again
        log.event(40, None, relay=self.relay, stat=f"spool write failed: {err.strerror}",
                  directory=str(self.server.spool.directory))

    def _on_chunk(self, event: ev.DataChunk) -> None:
        if self.incoming is None or self.spool_error is not None:
            return
        try:
            self.incoming.write(event.data)
        except OSError as err:
            self.spool_error = err
            self._storage_problem(err)
            self.incoming = None

    def _on_data_complete(self, event: ev.DataComplete) -> None:
        if self.incoming is None:
            err = self.spool_error
            full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
            self.core.respond(R.STORAGE_FULL if full else R.LOCAL_ERROR)
            self._rate_release()
            return
        incoming, self.incoming = self.incoming, None
        if self.discard:
            self._rate_release()
            incoming.abort()
            log.info(incoming.envelope.queue_id, stat="discarded by the access map", relay=self.relay)
            self.core.respond(Reply(250, "2.0.0", f"{incoming.envelope.queue_id} Message accepted for delivery"))
            return
        self.committing = True   # reading stops only if the client sends before our answer
        self.server.publisher.wait(self, incoming, self.server.spool.sync_async(incoming))

    def committed(self, incoming, err: Exception | None) -> None:
        """The spool's answer for our message: None once it is durable in queue/."""
        self.committing = False
        incoming.envelope.content_size = incoming.content_size
        if self._closed:
            # The client is gone before our 250: it will retry, so the copy we hold is a
            # possible duplicate, never a loss. Keep it: it is durable and complete.
            if err is None:
                self.server.accepted(incoming.envelope, self)
            self._rate_release()
            return
        self._update_reading()
        self._arm(self.settings.idle_timeout)  # back to waiting for a command
        env = incoming.envelope
        if err is not None:
            self._storage_problem(err)
            full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
            self.core.respond(R.STORAGE_FULL if full else R.LOCAL_ERROR)
        else:
            self.core.respond(Reply(250, "2.0.0", f"{env.queue_id} Message accepted for delivery"))
            self.server.accepted(env, self)
        self._rate_release()
        self._pump()

    def _on_data_failed(self, event: ev.DataFailed) -> None:
        self._abort_incoming()
        self._rate_release()
        log.notice(None, relay=self.relay, reject=str(event.reply))

    def _on_reset(self, event: ev.TransactionReset) -> None:
        self._abort_incoming()
        self._rate_release()

    def _abort_incoming(self) -> None:
        if self.incoming is not None:
            self.incoming.abort()
            self.incoming = None

    def _on_close(self, event: ev.CloseConnection) -> None:
        data = self.core.data_to_send()
        if data and self.engine is not None and self.engine.handshake_done:
            try:  # the 221 and our close_notify leave in one write
                self._tls_out += self.engine.encrypt(data)
            except TLSFailure:
                pass
        elif data:
            self._write(data)
        self._close()

    def _on_pipelining_violation(self, event: ev.PipeliningViolation) -> None:
        if event.after in ("EHLO", "HELO"):
            # sendmail 8.17's words for a client that did not wait for the EHLO reply
            self._log_text(logging.INFO, f"rejecting server {event.after} from {self.relay} due to traffic "
                           "before response", reject=str(PROTOCOL_ERROR), command=event.after, relay=self.relay,
                           seen=printable_bytes(event.seen))
        else:
            # Postfix's words (smtpd, smtpd_forbid_unauth_pipelining)
            self._log_text(logging.INFO, f"improper command pipelining after {event.after} from {self.relay}: "
                           f"{printable_bytes(event.seen)}", command=event.after, relay=self.relay,
                           seen=printable_bytes(event.seen))

    def _on_protocol_error(self, event: ev.ProtocolError) -> None:
        log.event(10, None, **printable_fields({"relay": self.relay, "command": event.command,
                                                 "reply": str(event.reply)}))


_DISPATCH = {
    ev.Helo: SMTPSession._on_helo,
    ev.MailFrom: SMTPSession._on_mail,
    ev.RcptTo: SMTPSession._on_rcpt,
    ev.DataRequested: SMTPSession._on_data_requested,
    ev.DataChunk: SMTPSession._on_chunk,
    ev.DataComplete: SMTPSession._on_data_complete,
    ev.DataFailed: SMTPSession._on_data_failed,
    ev.TransactionReset: SMTPSession._on_reset,
    ev.StartTLS: SMTPSession._on_starttls,
    ev.CloseConnection: SMTPSession._on_close,
    ev.ProtocolError: SMTPSession._on_protocol_error,
    ev.PipeliningViolation: SMTPSession._on_pipelining_violation,
    AuthRequested: SMTPSession._on_auth_requested,
    AuthResponse: SMTPSession._on_auth_response,
    AuthCancelled: SMTPSession._on_auth_cancelled,
}
