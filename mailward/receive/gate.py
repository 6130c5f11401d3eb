"""What the receiving side decides about a connection, a sender and a recipient.

Pure decisions over connection facts: local domains and users from the config, relaying
refused by default, and — when an access map is configured — sendmail's access-map rules
(mailward.policy). Each method returns ``None`` to accept with the default reply, or the
:class:`Reply` to send. No I/O here; the session logs what the gate returns.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        self._is_local = is_local  # the delivery side's answer (local domains and `local` routes)
        self.request_client_cert = request_client_cert
        self.policy = policy  # mailward.policy engine, or None

    def is_local(self, address: str) -> bool:
        if address == "postmaster":
            return True
        if self._is_local is not None:
            return self._is_local(address)
        return address.rpartition("@")[2].lower().rstrip(".") in self.local_domains

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
        if local and rcpt != "postmaster" and not self.local_user_exists(rcpt):
            return Verdict(Reply(550, "5.1.1", f"<{rcpt}>... User unknown"))
        if self.policy is not None:
            return self.policy.rcpt(conn, rcpt, local)
        if not local:
            return Verdict(Reply(550, "5.7.1", f"<{rcpt}>... Relaying denied"),
                           log={"ruleset": "check_rcpt", "arg1": f"<{rcpt}>"})
        return ACCEPT
