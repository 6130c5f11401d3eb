"""The receive policy: everything the receiving server decides about a connection, a
sender and a recipient, in one object (:class:`ReceivePolicy`) over the pure checks of this
package.

It binds the checks to the configuration and the access map in use (an empty map when none
is configured: relaying, loopback and Srv_Features follow one code path either way) and to
the two questions only the local side can answer, given by the composition root
(:mod:`mailward.service`): ``is_local(address)`` and ``local_user_exists(address)`` — the
same functions delivery uses, so RCPT never accepts what delivery would bounce as unknown
(``550 5.1.1 <addr>... User unknown``; Postfix's ``local_recipient_maps``; ``postmaster``
always exists, RFC 5321 §4.5.1). Each question returns a :class:`Verdict`.

An authenticated client (SMTP AUTH) relays, and with ``submission.sender_login_map`` may use
only the envelope senders the map gives its user (:meth:`ReceivePolicy.sender_login`).

This is the edge of the policy package: it holds the map (:class:`AccessMapHolder`) and
checks the file for changes at most once a second (one ``stat``); :meth:`reload` is for
SIGHUP. Everything else is the pure functions.

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
from mailward.policy.local import local_address
from mailward.policy.sender_login import SenderLoginMap, SenderLoginMapError
from mailward.policy.smtp_checks import check_connect, check_mail, check_rcpt
from mailward.policy.tls_checks import ServerFeatures, check_tls_client, srv_features
from mailward.smtp.replies import Reply
from mailward.tls.facts import ConnectionFacts


@dataclass(frozen=True)
class Verdict:
    """What to answer: ``reply`` None accepts with the default reply; ``discard`` accepts and
    drops the message (access map DISCARD); ``decision`` is the check's, for the log."""

    reply: Reply | None = None
    log: dict | None = None
    discard: bool = False
    decision: Decision | None = None


ACCEPT = Verdict()


def verdict(decision: Decision) -> Verdict:
    """A decision as a verdict."""
    if decision.failed:
        return Verdict(Reply(decision.code, decision.status, decision.reply_text), None, False, decision)
    return Verdict(None, None, decision.action == "discard", decision)


class ReceivePolicy:
    def __init__(self, holder: AccessMapHolder | None = None, *, local_domains=("localhost",), relay_domains=(),
                 tls_perm_err: bool = False, cert_regex_issuer: str = "", cert_regex_subject: str = "",
                 request_client_cert: bool = True, is_local=None, local_user_exists=None,
                 check_interval: float = 1.0, sender_logins: SenderLoginMap | None = None) -> None:
        self.holder = holder or AccessMapHolder(None)
        self.local_domains = tuple(d.lower().rstrip(".") for d in local_domains)
        self.relay_domains = tuple(relay_domains)
        self.tls_perm_err = tls_perm_err
        self.cert_regex_issuer = cert_regex_issuer or None
        self.cert_regex_subject = cert_regex_subject or None
        self.request_client_cert = request_client_cert
        self._is_local = is_local or self._in_local_domains
        self.local_user_exists = local_user_exists or (lambda address: True)
        self.check_interval = check_interval
        self.sender_logins = sender_logins
        self._checked = time.monotonic()

    @classmethod
    def from_config(cls, config: Config, *, is_local=None, local_user_exists=None) -> "ReceivePolicy":
        """The policy over ``[policy] access_map`` (an empty map without one)."""
        settings = config.policy
        holder = None
        if settings.access_map:
            try:
                holder = AccessMapHolder.shared(settings.access_map)
            except AccessMapError as err:
                raise ConfigError(f"policy.access_map: {err}") from None
        logins = None
        submission = getattr(config, "submission", None)
        if submission is not None and submission.sender_login_map:
            try:
                logins = SenderLoginMap.load(submission.sender_login_map)
            except SenderLoginMapError as err:
                raise ConfigError(f"submission.sender_login_map: {err}") from None
        return cls(holder, local_domains=config.local.domains, relay_domains=settings.relay_domains,
                   sender_logins=logins,
                   tls_perm_err=settings.tls_perm_err, cert_regex_issuer=settings.cert_regex_issuer,
                   cert_regex_subject=settings.cert_regex_subject,
                   request_client_cert=config.tls.request_client_cert, is_local=is_local,
                   local_user_exists=local_user_exists)

    def _in_local_domains(self, address: str) -> bool:
        return local_address(address, self.local_domains)

    def is_local(self, address: str) -> bool:
        return self._is_local(address)

    # -- the map --------------------------------------------------------------------
    def reload(self) -> bool:
        return self.holder.reload()

    def _fresh(self):
        now = time.monotonic()
        if now - self._checked >= self.check_interval:
            self._checked = now
            self.holder.maybe_reload()
        return self.holder.current

    # -- the questions of a session ----------------------------------------------------
    # With an empty map (none configured), these checks find no entry and accept: answered
    # without the lookups (measured: they were most of the per-connection policy cost).
    def features(self, conn: ConnectionFacts) -> ServerFeatures:
        """Srv_Features: offer STARTTLS? request a client certificate?"""
        amap = self._fresh()
        if not len(amap):
            return ServerFeatures(request_client_cert=self.request_client_cert)
        found = srv_features(amap, conn)
        if found.request_client_cert is None:
            found = replace(found, request_client_cert=self.request_client_cert)
        return found

    def connect(self, conn: ConnectionFacts) -> Verdict:
        amap = self._fresh()
        return verdict(check_connect(amap, conn)) if len(amap) else ACCEPT

    def tls_client(self, conn: ConnectionFacts, stage: str) -> Verdict:
        amap = self.holder.current
        if not len(amap) and conn.tls.verify != "SOFTWARE":   # SOFTWARE fails even without an entry
            return ACCEPT
        return verdict(check_tls_client(amap, conn, stage, self.tls_perm_err))

    def mail(self, conn: ConnectionFacts, sender: str, tls_checked: bool = True) -> Verdict:
        """From: entries; the session has run tls_client for this MAIL already."""
        return verdict(check_mail(self.holder.current, conn, sender, self.tls_perm_err, tls_checked))

    def sender_login(self, user: str, sender: str) -> Verdict:
        """May the authenticated ``user`` send as ``sender``? (submission.sender_login_map;
        no map: yes). ``553 5.7.1`` otherwise, as Postfix words it."""
        logins = self.sender_logins
        if logins is None or logins.owns(user, sender):
            return ACCEPT
        return Verdict(Reply(553, "5.7.1", f"<{sender}>: Sender address rejected: not owned by user {user}"))

    def rcpt(self, conn: ConnectionFacts, rcpt: str, authenticated: str | None = None) -> Verdict:
        """An unknown local user first (550 5.1.1), then To:, relaying (an ``authenticated``
        user relays) and certificates."""
        local = self.is_local(rcpt)
        if local and not self.local_user_exists(rcpt):
            return Verdict(Reply(550, "5.1.1", f"<{rcpt}>... User unknown"))
        domains = self.local_domains
        if local and "@" in rcpt:  # local by route or alias domain, not only local.domains
            domains = domains + (rcpt.rpartition("@")[2],)
        return verdict(check_rcpt(self.holder.current, conn, rcpt, domains, self.relay_domains,
                                  self.cert_regex_issuer, self.cert_regex_subject,
                                  authenticated=authenticated is not None))
