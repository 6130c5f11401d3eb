"""Access map and TLS policy with sendmail 8.12/8.17 semantics ("sendmail cf/README, STARTTLS").

Public API (pure functions over an :class:`AccessMap` and
:class:`~mailward.tls.facts.ConnectionFacts`; each returns a frozen :class:`Decision`):

receiving side
    ``check_connect(amap, conn)``, ``srv_features(amap, conn)``,
    ``check_tls_client(amap, conn, stage, tls_perm_err=False)``,
    ``check_mail(amap, conn, sender, tls_perm_err=False)`` (runs tls_client at MAIL itself),
    ``check_rcpt(amap, conn, rcpt, local_domains, relay_domains=(), cert_regex_issuer=None,
    cert_regex_subject=None)``
delivery side (``conn.peer_name``/``peer_addr`` = server name/address)
    ``try_tls(amap, server_name, server_addr)``,
    ``check_tls_server(amap, conn, tls_perm_err=False, tls_disabled=False)``,
    ``check_tls_rcpt(amap, conn, rcpt, tls_perm_err=False, tls_disabled=False)``
the map
    ``AccessMap.load(path)``, ``AccessMap.from_text(text)``, ``AccessMapHolder`` (reload),
    ``AccessMapError`` (``file:line: why``)
"""

from mailward.policy.accessmap import EMPTY, AccessMap, AccessMapError, Entry, sendmail_addr
from mailward.policy.decision import Decision, first_failure
from mailward.policy.holder import AccessMapHolder
from mailward.policy.smtp_checks import check_connect, check_mail, check_rcpt, relay_by_certificate
from mailward.policy.tls_checks import (
    STARTTLS_NOT_AVAILABLE,
    ServerFeatures,
    check_tls_client,
    check_tls_rcpt,
    check_tls_server,
    srv_features,
    tls_connection,
    try_tls,
    try_tls_decision,
)

__all__ = [
    "EMPTY", "AccessMap", "AccessMapError", "AccessMapHolder", "Decision", "Entry", "ServerFeatures", "first_failure",
    "STARTTLS_NOT_AVAILABLE", "check_connect", "check_mail", "check_rcpt", "check_tls_client",
    "check_tls_rcpt", "check_tls_server", "relay_by_certificate", "sendmail_addr", "srv_features",
    "tls_connection", "try_tls", "try_tls_decision",
]
