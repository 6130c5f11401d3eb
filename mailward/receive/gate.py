"""What the receiving side decides about a connection, a sender and a recipient.

Decisions over connection facts: relaying refused by default, and — when an access map is
configured — sendmail's access-map rules (mailward.policy). Each method returns a
:class:`Verdict`: accept with the default reply, or the :class:`Reply` to send; the session
logs what the gate returns.

Which addresses are local, and which local addresses exist, are not decided here: the gate
asks the delivery side's functions (``is_local``: :func:`mailward.deliver.attempt.is_local`;
``local_user_exists``: :func:`mailward.deliver.runner.local_user_check`), so that RCPT never
accepts what delivery would then bounce as unknown. A local address that does not exist gets
``550 5.1.1 <addr>... User unknown`` (Postfix's ``local_recipient_maps``; ``postmaster``
always exists, RFC 5321 §4.5.1). The only I/O is what those functions do (one stat).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailward.deliver.attempt import local_address
from mailward.smtp.replies import Reply
from mailward.tls.facts import ConnectionFacts


@dataclass(frozen=True)
class Features:
    offer_starttls: bool = True
    request_client_cert: bool = True


@dataclass(frozen=True)
class Verdict:
    reply: Reply | None = None      # None: accept
    log: dict | None = None         # fields of a 'ruleset=..., reject=...' log line
    discard: bool = False           # accept but drop (access map DISCARD)


ACCEPT = Verdict()


class Gate:
    def __init__(self, *, local_domains, local_user_exists=lambda address: True,
                 request_client_cert: bool = True, policy=None, is_local=None):
        self.local_domains = {d.lower().rstrip(".") for d in local_domains}
        self.local_user_exists = local_user_exists
        # the delivery side's answer (local domains and `local` routes); without a runner, the
        # same function over local_domains alone
        self._is_local = is_local or (lambda address: local_address(address, self.local_domains))
        self.request_client_cert = request_client_cert
        self.policy = policy  # mailward.policy engine, or None

    def is_local(self, address: str) -> bool:
        return self._is_local(address)

    def features(self, conn: ConnectionFacts) -> Features:
        if self.policy is not None:
            return self.policy.features(conn, self.request_client_cert)
        return Features(offer_starttls=True, request_client_cert=self.request_client_cert)

    def connect(self, conn: ConnectionFacts) -> Verdict:
        if self.policy is not None:
            return self.policy.connect(conn)
        return ACCEPT

    def tls_client(self, conn: ConnectionFacts, stage: str) -> Verdict:
        if self.policy is not None:
            return self.policy.tls_client(conn, stage)
        return ACCEPT

    def mail(self, conn: ConnectionFacts, sender: str) -> Verdict:
        """From: entries; the caller has run tls_client for this MAIL already."""
        if self.policy is not None:
            return self.policy.mail(conn, sender, tls_checked=True)
        return ACCEPT

    def rcpt(self, conn: ConnectionFacts, rcpt: str) -> Verdict:
        local = self.is_local(rcpt)
        if local and not self.local_user_exists(rcpt):
            return Verdict(Reply(550, "5.1.1", f"<{rcpt}>... User unknown"))
        if self.policy is not None:
            return self.policy.rcpt(conn, rcpt, local)
        if not local:
            return Verdict(Reply(550, "5.7.1", f"<{rcpt}>... Relaying denied"),
                           log={"ruleset": "check_rcpt", "arg1": f"<{rcpt}>"})
        return ACCEPT
