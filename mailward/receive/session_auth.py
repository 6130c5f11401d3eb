"""SMTP AUTH (RFC 4954) for one session: the backend's exchange, run for the core.

:class:`SessionAuth` is mixed into :class:`mailward.receive.session.SMTPSession`. The core
(:mod:`mailward.smtp.server_auth`) decides everything about the protocol and emits
``AuthRequested`` / ``AuthResponse``; this module runs the backend's
:class:`~mailward.auth.AuthExchange` (``await step()``: argon2 in a thread, or Dovecot over its
socket) and answers the core with a 334 challenge, 235, 535 or 454. Reading from the client
stops while a step runs.

Limits (``[submission]``): each failure waits ``auth_failure_delay`` times the number of
failures from the client's address within ``auth_failure_window`` (this one included, from
whichever connections) before its 535 — a delay that grows; a client address (an IPv6 client
by its network, :func:`mailward.receive.auth_limits.address_key`) with ``max_auth_failures``
failures within the window gets ``421 4.7.0`` at its next AUTH and is disconnected. The
attempts in progress per address are counted too (``SMTPServer.auth_inflight``): an AUTH
waits while they could, by failing, reach the limit, so connections guessing in parallel
share the limit and clients behind one address that do not fail only wait. A temporary
failure (454: the backend could not answer) and an exchange cancelled before any check
(``*``, a dropped connection after a 334) count as neither.

Log lines, in sendmail's form on success and in one fail2ban can match on failure (the client
address in brackets at the end; the user name escaped, never a password)::

    AUTH=server, relay=client.example [192.0.2.1], authid=alice, mech=PLAIN, bits=0
    AUTH failure (PLAIN): authentication failure (PLAIN: authcid=alice: unknown user or wrong password), relay=client.example [192.0.2.1]

``bits`` is sendmail's ``${auth_ssf}``: no SASL security layer is ever negotiated (TLS
protects the session), so it is 0.

Also here: which mechanisms to offer for a TLS state (EXTERNAL with a client certificate's CN
when ``submission.external_identity = "cn"``) and the ``AUTH=`` MAIL parameter kept with the
message (RFC 4954 §5).

Failure behaviour: an exception from a backend costs that AUTH command (454), never the
session; a session that closes while a step runs drops the step's answer.
"""

from __future__ import annotations

import asyncio
import logging

from mailward import log
from mailward.auth import AuthStep, printable
from mailward.smtp.replies import Reply
from mailward.smtp.server_auth import (AUTH_FAILED, AUTH_OK, AUTH_TEMPORARY, AuthCancelled, AuthRequested,
                                       AuthResponse, xtext_decode)

SSF = 0   # sendmail's ${auth_ssf}: no SASL security layer; TLS is the only encryption


class SessionAuth:
    auth_exchange = None          # the backend's exchange of the AUTH command in progress
    auth_mechanism = ""
    auth_failures = 0             # failed AUTH commands in this session
    auth_busy = False             # a backend step is running: reading is paused
    _auth_reserved = None         # the address key this AUTH is counted in progress under (auth_inflight)

    def external_identity(self) -> str | None:
        """The identity AUTH EXTERNAL would give (RFC 4422 Appendix A): a verified client
        certificate's subject CN, when submission.external_identity is "cn"."""
        sub = getattr(self.server.config, "submission", None)
        if sub is not None and sub.external_identity == "cn" and self.tls.verify in ("OK", "TRUSTED"):
            return self.tls.cn_subject or None
        return None

    def _auth_offer(self) -> None:
        backend = self.server.auth
        if backend is None or self.core is None or not self.tls.active:
            return
        try:
            mechanisms = backend.mechanisms(external_identity=self.external_identity())
        except Exception as err:  # a backend that cannot say: offer nothing rather than fail
            log.event(40, None, relay=self.relay, stat=f"AUTH mechanisms unavailable: {err}")
            mechanisms = []
        self.core.auth_mechanisms = tuple(mechanisms)

    # ---- the core's events ------------------------------------------------------------------
    def _on_auth_requested(self, event: AuthRequested) -> None:
        self.auth_busy = True   # nothing more is read until this AUTH is decided
        self._update_reading()
        asyncio.get_running_loop().create_task(self._auth_begin(event))

    async def _auth_begin(self, event: AuthRequested) -> None:
        server, key = self.server, self.server.auth_key(self.client_addr)
        # Connections from one address guessing in parallel: while the attempts in progress
        # could, by failing, reach max_auth_failures, this one waits for them (bounded by the
        # command timeout). Then the limit is looked at: parallel guesses get no more than
        # the limit between them, and clients behind one address that do not fail only wait.
        while (not self._closed and server.auth_inflight[key] > 0
               and server.auth_failures.count(key) + server.auth_inflight[key] >= server.auth_failures.limit):
            await asyncio.sleep(0.05)
        self.auth_busy = False
        if self._closed or self.core is None:
            return
        self._update_reading()
        if server.auth_failures.reached(key):
            self._log_text(logging.WARNING, f"AUTH failure ({event.mechanism}): authentication failure "
                           f"(too many failures from this address), relay={self.relay}",
                           mech=event.mechanism, relay=self.relay, reason="too many failures")
            self.core.auth_result(Reply(421, "4.7.0", f"{server.hostname} Too many authentication "
                                                      "failures, closing connection"), close=True)
            self._pump()
            return
        local = self.transport.get_extra_info("sockname") or ("", 0)
        self.auth_mechanism = event.mechanism
        backend = server.auth
        try:
            if backend is None:   # a reload turned AUTH off while this session was open
                raise RuntimeError("no AUTH backend any more")
            self.auth_exchange = backend.begin(
                event.mechanism, external_identity=self.external_identity(), remote_addr=self.client_addr,
                local_addr=str(local[0]), secured=self.tls.active)
        except Exception as err:   # a backend that cannot begin costs this AUTH command (454)
            self.auth_exchange = None
            self._log_text(logging.WARNING, f"AUTH failure ({event.mechanism}): authentication failure "
                           f"(backend error: {type(err).__name__}), relay={self.relay}",
                           mech=event.mechanism, relay=self.relay, reason=str(err), temporary=True)
            self.core.auth_result(AUTH_TEMPORARY)
            self._pump()
            return
        self._auth_reserved = key
        server.auth_inflight[key] += 1
        self._auth_run(event.initial)

    def _auth_release(self) -> None:
        """This AUTH is no longer in progress (decided, cancelled, or its client gone)."""
        if self._auth_reserved is not None:
            key, self._auth_reserved = self._auth_reserved, None
            inflight = self.server.auth_inflight
            inflight[key] -= 1
            if inflight[key] <= 0:
                del inflight[key]

    def _on_auth_response(self, event: AuthResponse) -> None:
        self._auth_run(event.data)

    def _on_auth_cancelled(self, event: AuthCancelled) -> None:
        self.auth_exchange = None
        self._auth_release()
        log.info(None, AUTH="server", relay=self.relay, mech=self.auth_mechanism, stat=f"aborted: {event.reason}")

    def _auth_run(self, data: bytes | None) -> None:
        self.auth_busy = True
        self._update_reading()
        asyncio.get_running_loop().create_task(self._auth_step(self.auth_exchange, data))

    async def _auth_step(self, exchange, data: bytes | None) -> None:
        try:
            step = await exchange.step(data)
        except Exception as err:   # a backend bug costs this AUTH command
            step = AuthStep(failed=True, temporary=True, reason=f"backend error: {type(err).__name__}")
        if step.failed and not step.temporary:
            # counted before this attempt stops being in progress (attempts waiting see it);
            # the delay grows with the address's failures, whichever connections they came from
            key = self.server.auth_key(self.client_addr)
            self.server.auth_failures.add(key)
            self._auth_release()
            self.auth_failures += 1
            failures = max(self.auth_failures, self.server.auth_failures.count(key))
            delay = self.server.config.submission.auth_failure_delay * failures
            if delay > 0:
                await asyncio.sleep(delay)
        elif step.challenge is None:   # success, or a temporary failure: not a failed guess
            self._auth_release()
        self.auth_busy = False
        if self._closed or self.core is None:
            if step.challenge is not None:   # gone before answering the challenge: nothing was tried
                self._auth_release()
            return
        self._update_reading()
        if exchange is not self.auth_exchange:   # the exchange ended meanwhile: its answer is not wanted
            return
        mech = self.auth_mechanism
        if step.challenge is not None:
            self.core.auth_challenge(step.challenge)
        elif step.user is not None and not step.failed:
            self.auth_exchange = None
            log.info(None, AUTH="server", relay=self.relay, authid=printable(step.user), mech=mech, bits=SSF)
            self.core.auth_result(AUTH_OK, step.user)
        else:
            self.auth_exchange = None
            self._log_text(logging.WARNING, f"AUTH failure ({mech}): authentication failure "
                           f"({step.reason or 'no reason given'}), relay={self.relay}",
                           mech=mech, relay=self.relay, reason=step.reason, temporary=step.temporary)
            self.core.auth_result(AUTH_TEMPORARY if step.temporary else AUTH_FAILED)
        self._pump()

    # ---- the per-user message rate ------------------------------------------------------------
    _rate_user: str | None = None   # the user whose open transaction holds a place in its rate

    def _rate_hold(self, user: str) -> bool:
        """At an accepted MAIL: hold a place in ``user``'s rate (submission.rate_limit_messages)
        until the message is accepted or the transaction ends; False: the rate is used up."""
        if self._rate_user is not None:
            return True
        if not self.server.rate_hold(user):
            return False
        self._rate_user = user
        return True

    def _rate_release(self) -> None:
        """The transaction ended (its message, if accepted, is counted by then)."""
        if self._rate_user is not None:
            user, self._rate_user = self._rate_user, None
            self.server.rate_release(user)

    # ---- the message ------------------------------------------------------------------------
    def auth_param(self, sender: str, given: str | None) -> str | None:
        """The ``AUTH=`` MAIL parameter kept with the message (RFC 4954 §5): the client's
        mailbox when it authenticated and may send as that mailbox (the sender login map; with
        no map, only its own login name), else ``<>``; None when the client sent none."""
        if given is None:
            return None
        user = self.core.authenticated if self.core else None
        if user is None or given == "<>":
            return "<>"
        mailbox = xtext_decode(given)
        if mailbox is None:
            return "<>"
        if getattr(self.server.gate, "sender_logins", None) is None:
            # no map says who owns what: only the user's own login name is vouched for
            # (sendmail's default trust_auth: ${auth_author} must be ${auth_authen})
            return given if mailbox == user else "<>"
        if self.server.gate.sender_login(user, mailbox).reply is not None:
            return "<>"
        return given
