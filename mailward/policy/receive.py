"""The policy engine as the receiving server uses it (``mailward.receive.gate``).

:class:`ReceivePolicy` binds the pure checks of this package to the configuration and the
access map in use, and turns each :class:`~mailward.policy.decision.Decision` into what
the gate expects: an object with ``reply`` (a :class:`~mailward.smtp.replies.Reply`, None
to accept with the default reply), ``log`` (extra log fields) and ``discard``.

This is the edge of the policy package: it holds the map (:class:`AccessMapHolder`) and
checks the file for changes at most once a second, from ``features``/``connect`` (one
``stat``); :meth:`reload` is for SIGHUP. Everything else is the pure functions.

Failure: a map that cannot be loaded at start-up raises ``ConfigError`` (one line:
``file:line: why``); later, a broken file keeps the previous map (logged by the holder).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from mailward.config import Config, ConfigError
from mailward.policy.accessmap import AccessMapError
from mailward.policy.decision import Decision
from mailward.policy.holder import AccessMapHolder
from mailward.policy.smtp_checks import check_connect, check_mail, check_rcpt
from mailward.policy.tls_checks import ServerFeatures, check_tls_client, srv_features
from mailward.smtp.replies import Reply
from mailward.tls.facts import ConnectionFacts


@dataclass(frozen=True)
class PolicyVerdict:
    """The gate's verdict: ``reply`` None accepts with the default reply."""

    reply: Reply | None = None
    log: dict | None = None
    discard: bool = False
    decision: Decision | None = None


def verdict(decision: Decision) -> PolicyVerdict:
    """A decision as the gate's verdict."""
    if decision.failed:
        return PolicyVerdict(Reply(decision.code, decision.status, decision.reply_text), None, False, decision)
    return PolicyVerdict(None, None, decision.action == "discard", decision)


class ReceivePolicy:
    def __init__(self, holder: AccessMapHolder, *, local_domains=("localhost",), relay_domains=(),
                 tls_perm_err: bool = False, cert_regex_issuer: str = "", cert_regex_subject: str = "",
                 check_interval: float = 1.0) -> None:
        self.holder = holder
        self.local_domains = tuple(local_domains)
        self.relay_domains = tuple(relay_domains)
        self.tls_perm_err = tls_perm_err
        self.cert_regex_issuer = cert_regex_issuer or None
        self.cert_regex_subject = cert_regex_subject or None
        self.check_interval = check_interval
        self._checked = time.monotonic()

    @classmethod
    def from_config(cls, config: Config) -> "ReceivePolicy | None":
        """The engine for ``[policy] access_map``; None when no map is configured (the gate
        then keeps its built-in rules: local domains only)."""
        settings = config.policy
        if not settings.access_map:
            return None
        try:
            holder = AccessMapHolder.shared(settings.access_map)
        except AccessMapError as err:
            raise ConfigError(f"policy.access_map: {err}") from None
        return cls(holder, local_domains=config.local.domains, relay_domains=settings.relay_domains,
                   tls_perm_err=settings.tls_perm_err, cert_regex_issuer=settings.cert_regex_issuer,
                   cert_regex_subject=settings.cert_regex_subject)

    # -- the map --------------------------------------------------------------------
    def reload(self) -> bool:
        return self.holder.reload()

    def _fresh(self):
        now = time.monotonic()
        if now - self._checked >= self.check_interval:
            self._checked = now
            self.holder.maybe_reload()
        return self.holder.current

    # -- the gate's questions -------------------------------------------------------
    def features(self, conn: ConnectionFacts, request_client_cert: bool = True) -> ServerFeatures:
        found = srv_features(self._fresh(), conn)
        if found.request_client_cert is None:
            found = replace(found, request_client_cert=request_client_cert)
        return found

    def connect(self, conn: ConnectionFacts) -> PolicyVerdict:
        return verdict(check_connect(self._fresh(), conn))

    def tls_client(self, conn: ConnectionFacts, stage: str) -> PolicyVerdict:
        return verdict(check_tls_client(self.holder.current, conn, stage, self.tls_perm_err))

    def mail(self, conn: ConnectionFacts, sender: str, tls_checked: bool = False) -> PolicyVerdict:
        return verdict(check_mail(self.holder.current, conn, sender, self.tls_perm_err, tls_checked))

    def rcpt(self, conn: ConnectionFacts, rcpt: str, local: bool = False) -> PolicyVerdict:
        domains = self.local_domains
        if local and "@" in rcpt:  # the gate knows it is local (e.g. a virtual domain)
            domains = domains + (rcpt.rpartition("@")[2],)
        return verdict(check_rcpt(self.holder.current, conn, rcpt, domains, self.relay_domains,
                                  self.cert_regex_issuer, self.cert_regex_subject))
