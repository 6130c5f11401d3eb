"""The policy engine as the delivery side uses it: Try_TLS, tls_server, tls_rcpt.

:class:`DeliveryPolicy` binds :func:`~mailward.policy.tls_checks.try_tls`,
:func:`~mailward.policy.tls_checks.check_tls_server` and
:func:`~mailward.policy.tls_checks.check_tls_rcpt` to the configured map (shared with the
receiving side, :meth:`AccessMapHolder.shared`) and to ``policy.tls_perm_err``. Each call
takes the map in use at that moment, so a reload never changes a check half-way.

How a delivery uses it (seed 004, "Allowing Connections"):

1. ``policy.try_tls(server_name, server_addr)`` False → do not send STARTTLS to this host.
2. After STARTTLS (or without it: ``conn.tls.verify`` "NONE" when it was not offered, and
   ``tls_disabled=True`` when Try_TLS said NO), ``policy.tls_server(conn)``: a failing
   decision means this host is not used for the message — ``tempfail`` → try the next MX,
   then defer; ``reject`` → bounce. Log ``decision.log_fragment``.
3. Before each RCPT TO, ``policy.tls_rcpt(conn, rcpt)``: a failing recipient is deferred
   (tempfail) or bounced (reject) with ``decision.reply``; the others go on.

No map configured: every check passes except a failed handshake (verify=SOFTWARE).
"""

from __future__ import annotations

from mailward.config import Config, ConfigError
from mailward.policy.accessmap import EMPTY, AccessMapError
from mailward.policy.decision import Decision
from mailward.policy.holder import AccessMapHolder
from mailward.policy.tls_checks import check_tls_rcpt, check_tls_server, try_tls
from mailward.tls.facts import ConnectionFacts


class DeliveryPolicy:
    def __init__(self, holder: AccessMapHolder | None = None, tls_perm_err: bool = False) -> None:
        self.holder = holder
        self.tls_perm_err = tls_perm_err

    @classmethod
    def from_config(cls, config: Config) -> "DeliveryPolicy":
        settings = config.policy
        if not settings.access_map:
            return cls(None, settings.tls_perm_err)
        try:
            return cls(AccessMapHolder.shared(settings.access_map), settings.tls_perm_err)
        except AccessMapError as err:
            raise ConfigError(f"policy.access_map: {err}") from None

    @property
    def amap(self):
        return self.holder.current if self.holder is not None else EMPTY

    def try_tls(self, server_name: str, server_addr: str) -> bool:
        return try_tls(self.amap, server_name, server_addr)

    def tls_server(self, conn: ConnectionFacts, tls_disabled: bool = False) -> Decision:
        return check_tls_server(self.amap, conn, self.tls_perm_err, tls_disabled)

    def tls_rcpt(self, conn: ConnectionFacts, rcpt: str, tls_disabled: bool = False) -> Decision:
        return check_tls_rcpt(self.amap, conn, rcpt, self.tls_perm_err, tls_disabled)
