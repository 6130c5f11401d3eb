"""TLS for one SMTP session: STARTTLS (RFC 3207) and implicit TLS at connect (RFC 8314).

:class:`SessionTLS` is mixed into :class:`mailward.receive.session.SMTPSession`. It starts the
memory-BIO engine (:class:`mailward.tls.engine.TLSEngine`) after the core's 220 to STARTTLS,
or at connect on a ``submissions`` listener, notes every completed handshake (sendmail 8.17's
two ``STARTTLS=server`` log lines), hands the new state to the core (a fresh session over TLS,
RFC 3207 §4.2), runs the tls_client check and offers AUTH for the new TLS state.

Implicit TLS: the handshake comes first and the 220 greeting only after it, inside TLS;
nothing the client sends is handled before the greeting (bytes before it are refused as
pipelining, as in clear). A handshake that fails logs ``verify=SOFTWARE`` and closes, as after
STARTTLS; one that does not end in ``server.tls_handshake_timeout`` is closed.

Failure behaviour: OpenSSL failing to make a session at STARTTLS answers ``454 4.7.0`` and the
session stays in clear; no exception from the peer's handshake leaves this module.
"""

from __future__ import annotations

import asyncio

from mailward import log
from mailward.smtp import events as ev
from mailward.smtp import replies as R
from mailward.tls.engine import TLSEngine
from mailward.tls.facts import TLSFacts


class SessionTLS:
    _handshake: asyncio.Future | None = None   # implicit TLS: done once the handshake completed

    def _expect_implicit_tls(self) -> None:
        """At connect on a submissions listener (RFC 8314 §3.3): TLS from the first octet.
        The client's first bytes wait in the early buffer until the engine starts, once
        Srv_Features has said whether to ask for a certificate (:meth:`_begin_implicit_tls`)."""
        self._handshake = asyncio.get_running_loop().create_future()
        self._arm(self.settings.tls_handshake_timeout)

    def _begin_implicit_tls(self) -> bool:
        try:
            self.engine = TLSEngine(self.server.tls_context, server_side=True, request_cert=self.request_cert)
        except Exception as err:  # OpenSSL could not make a session: nothing can be said in clear
            log.info(None, STARTTLS="server", **{"error:": f"cannot start TLS: {err}"}, relay=self.relay)
            self._close_transport()
            return False
        early, self._early = bytes(self._early), bytearray()
        if early:   # the ClientHello that came during the name lookup
            self.data_received(early)
        return not self._closed

    def _on_starttls(self, event: ev.StartTLS) -> None:
        try:
            engine = TLSEngine(self.server.tls_context, server_side=True, request_cert=self.request_cert)
        except Exception as err:  # OpenSSL could not make a session: say so, stay in clear
            log.info(None, STARTTLS="server", **{"error:": f"cannot start TLS: {err}"}, relay=self.relay)
            self.core.respond(R.TLS_CANNOT_START)
            return
        self.core.respond(None)
        self._flush()  # the 220 goes out in plaintext; nothing read after STARTTLS is kept
        self.engine = engine
        self._arm(self.settings.tls_handshake_timeout)

    def _note_handshake(self) -> None:
        """Once per handshake, however the read that completed it ended: every completed
        handshake logs its facts, as sendmail 8.17 does (also when s_client sends its
        Finished and close_notify in one segment)."""
        if self.engine is not None and self.engine.facts is not None and not self.tls.active:
            self._tls_established()

    def _tls_established(self) -> None:
        self.tls = self.engine.facts
        self._tls_mail_verdict = None
        t = self.tls
        log.info(None, STARTTLS="server", relay=self.relay, version=t.tls_version, verify=t.verify,
                 cipher=t.cipher, bits=f"{t.cipher_bits}/{t.alg_bits}")
        log.info(None, STARTTLS="server", **{"cert-subject": t.cert_subject, "cert-issuer": t.cert_issuer,
                                            "verifymsg": t.verifymsg})
        self._arm(self.settings.idle_timeout)
        if self.core is None:   # implicit TLS: the greeting waits for this (see _greet)
            if self._handshake is not None and not self._handshake.done():
                self._handshake.set_result(None)
            return
        self.core.tls_started()
        self._tls_state_checks()

    def _tls_state_checks(self) -> None:
        """For a new TLS state: tls_client at STARTTLS, and the AUTH mechanisms to offer."""
        t = self.tls
        verdict = self.server.gate.tls_client(self.facts(), "STARTTLS")
        if verdict.reply is not None:
            # Reported at MAIL and RCPT, not at the handshake, and the next EHLO offers only
            # ENHANCEDSTATUSCODES: sendmail 8.17's nullserver mode after a tls_client refusal
            # (sendmail cf/README, STARTTLS: tls_client).
            fields = {"ruleset": "tls_client", "arg1": t.verify, "arg2": "STARTTLS"}
            fields.update(verdict.log or {})
            fields.update(relay=self.relay, reject=str(verdict.reply))
            log.notice(None, **fields)
            self.core.refuse_commands(verdict.reply)
        self._auth_offer()

    def _tls_failed(self, reason: str, alert: bytes) -> None:
        was_established = self.tls.active
        if alert:
            try:
                self.transport.write(alert)
            except Exception:
                pass
        if not was_established:
            self.tls = TLSFacts(verify="SOFTWARE")
            log.info(None, STARTTLS="server", **{"error:": f"accept failed={reason}"}, relay=self.relay,
                     verify="SOFTWARE")
        else:
            log.info(None, STARTTLS="server", **{"error:": f"read error={reason}"}, relay=self.relay)
        self._close_transport()
