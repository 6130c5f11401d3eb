"""The policy engine as the delivery side uses it: Try_TLS, tls_server, tls_rcpt.

:class:`DeliveryPolicy` binds :func:`~mailward.policy.tls_checks.try_tls`,
:func:`~mailward.policy.tls_checks.check_tls_server` and
:func:`~mailward.policy.tls_checks.check_tls_rcpt` to the configured map (shared with the
receiving side, :meth:`AccessMapHolder.shared`) and to ``policy.tls_perm_err``. Each call
takes the map in use at that moment, so a reload never changes a check half-way.

How a delivery uses it (sendmail cf/README, STARTTLS, "Allowing Connections"):

1. ``policy.try_tls(server_name, server_addr)`` False → do not send STARTTLS to this host.
2. After STARTTLS (or without it: ``conn.tls.verify`` "NONE" when it was not offered, and
   ``tls_disabled=True`` when Try_TLS said NO), ``policy.tls_server(conn)``: a failing
   decision means this host is not used for the message — ``tempfail`` → try the next MX,
   then defer; ``reject`` → bounce. Log ``decision.log_fragment``.
3. Before each RCPT TO, ``policy.tls_rcpt(conn, rcpt)``: a failing recipient is deferred
   (tempfail) or bounced (reject) with ``decision.reply``; the others go on.

No map configured: every check passes except a failed handshake (verify=SOFTWARE).

:meth:`DeliveryPolicy.access_view` says whether the map has an entry of its own for a host or
its recipients (``Try_TLS:``, ``TLS_Srv:``, ``TLS_Rcpt:``): then the map is the source of the
sending side's TLS decision (:mod:`mailward.policy.tls_requirement`) and DANE, MTA-STS and
the floor are not consulted.

The map in use is the map on disk: every check first lets the holder look at the file
(one ``stat`` at most every ``RELOAD_INTERVAL`` seconds) and reload it when it changed, so
the process that delivers — the master when ``server.workers > 1`` — never decides with an
old map, SIGHUP or not, and whether or not a client has connected since.
"""

from __future__ import annotations

import time

from mailward.config import Config, ConfigError
from mailward.policy.accessmap import EMPTY, AccessMapError
from mailward.policy.decision import Decision
from mailward.policy.holder import AccessMapHolder
from mailward.policy.tls_checks import check_tls_rcpt, check_tls_server, try_tls_decision
from mailward.policy.tls_requirement import AccessView
from mailward.tls.facts import ConnectionFacts

RELOAD_INTERVAL = 1.0   # seconds between two looks at the access map file


class DeliveryPolicy:
    def __init__(self, holder: AccessMapHolder | None = None, tls_perm_err: bool = False) -> None:
        self.holder = holder
        self.tls_perm_err = tls_perm_err
        self._looked = 0.0

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
        if self.holder is None:
            return EMPTY
        now = time.monotonic()
        if now - self._looked >= RELOAD_INTERVAL:
            self._looked = now
            self.holder.maybe_reload()
        return self.holder.current

    def try_tls_decision(self, server_name: str, server_addr: str, rcpt: str = "") -> Decision:
        return try_tls_decision(self.amap, server_name, server_addr, rcpt)

    def try_tls(self, server_name: str, server_addr: str) -> bool:
        return not self.try_tls_decision(server_name, server_addr).failed

    def tls_server(self, conn: ConnectionFacts, tls_disabled: bool = False) -> Decision:
        return check_tls_server(self.amap, conn, self.tls_perm_err, tls_disabled)

    def tls_rcpt(self, conn: ConnectionFacts, rcpt: str, tls_disabled: bool = False) -> Decision:
        return check_tls_rcpt(self.amap, conn, rcpt, self.tls_perm_err, tls_disabled)

    def access_view(self, server_name: str, server_addr: str, rcpts=()) -> AccessView | None:
        """The first entry of the map for this host (Try_TLS, TLS_Srv) or one of ``rcpts``
        (TLS_Rcpt), None when the map has none: the entry the map's checks would use."""
        if self.holder is None:
            return None
        amap = self.amap
        if not len(amap):
            return None
        conn = ConnectionFacts(server_name, server_addr)
        decisions = [try_tls_decision(amap, server_name, server_addr),
                     check_tls_server(amap, conn, self.tls_perm_err)]
        decisions += [check_tls_rcpt(amap, conn, r, self.tls_perm_err) for r in rcpts]
        for d in decisions:
            if d.entry is not None:
                return AccessView(d.entry.key, d.entry.value, d.entry.where)
        return None
