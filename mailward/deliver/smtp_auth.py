"""SMTP AUTH to the next hop (RFC 4954) with the access map's ``AuthInfo:`` credentials
("sendmail cf/README, SMTP AUTHENTICATION"): the step the delivery client takes after the
host passed its ``TLS_Srv:`` check and said EHLO again inside TLS.

:func:`authenticate` looks up ``AuthInfo:`` for the hop as sendmail's ``authinfo`` ruleset
does (``${server_name}`` and its parents, ``${server_addr}`` and its prefixes, the bare tag;
:func:`mailward.policy.lookup.lookup_host`), then:

* no entry: nothing (no AUTH, as before);
* an entry, but the connection is not inside TLS (STARTTLS not offered, ``Try_TLS: NO``,
  ``delivery.starttls`` off, the clear retry after a failed handshake): AUTH is **not**
  sent — a password never crosses the network in clear — and the host is given up for now:
  ``454 4.7.0 HOST: AuthInfo (FILE:LINE) for this host but TLS was not used: AUTH not sent
  without TLS`` (the next host, then the queue), logged as
  ``AUTH=client, relay=HOST, reject=454 4.7.0 ...``;
* inside TLS, the server offers no AUTH (or an ``AUTH`` keyword naming no mechanism): the
  message goes without it, as sendmail does
  (``AUTH=client, relay=HOST, stat=not offered by the server, sending without``);
* no mechanism in common (the entry's ``M:`` list, or PLAIN and LOGIN, against the
  server's): ``454 4.7.0``, deferred;
* otherwise AUTH with the first common mechanism: ``235`` is logged as sendmail logs it,
  ``AUTH=client, relay=HOST, mech=PLAIN, bits=0``; any other final reply (``535 5.7.8``,
  ``454``, ``534``...) is temporary for this message, as in sendmail by default: the host
  is given up with ``454 4.7.0 HOST: AUTH PLAIN refused: 535 5.7.8 ...`` (the server's reply
  kept in the queue's reason) and the line ``AUTH=client, relay=HOST, mech=PLAIN,
  reject=535 5.7.8 ...`` is logged.

Security: the password goes only into the bytes of the AUTH exchange (the client core);
no log line, reason or exception here contains it (tests grep every log line and queue
file for it, plain and base64).

Failure behaviour: raises :class:`AuthStepFailed` with the reply to record; the caller
closes the connection (QUIT) and tries the next host.
"""

from __future__ import annotations

from mailward import log
from mailward.policy.accessmap import sendmail_addr
from mailward.policy.authinfo import AuthInfoError, parse
from mailward.policy.lookup import Trace, lookup_host
from mailward.smtp import client_auth
from mailward.smtp.replies import Reply


class AuthStepFailed(Exception):
    """AUTH could not be done with this host now: ``reply`` (4xx) says why."""
    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


def _refused(relay: str, reply: Reply, mech: str = "") -> AuthStepFailed:
    fields = {"AUTH": "client", "relay": relay}
    if mech:
        fields["mech"] = mech
    log.notice(None, **fields, reject=str(reply))
    return AuthStepFailed(reply)


async def authenticate(session, amap) -> None:
    """AUTH on ``session`` (a :class:`~mailward.deliver.connection.OutboundConnection` that
    passed TLS_Srv and is READY) when ``amap`` has AuthInfo for its hop."""
    hop, core = session.hop, session.core
    entry = lookup_host(amap, Trace(), "AuthInfo", hop.name, sendmail_addr(hop.addr))
    if entry is None or core.authenticated:
        return
    if not core.tls_active:
        reply = Reply(454, "4.7.0", f"{hop.name}: AuthInfo ({entry.where}) for this host but TLS was not used: "
                                    "AUTH not sent without TLS")
        raise _refused(hop.name, reply)
    try:
        info = parse(entry.value, entry.key, entry.where)
    except AuthInfoError as err:   # the loader refuses such lines; a map built another way
        raise _refused(hop.name, Reply(454, "4.7.0", f"{hop.name}: AuthInfo ({entry.where}) unusable: {err}"))
    if not client_auth.offered(core.extensions.get("AUTH", "")):   # no AUTH, or AUTH with no mechanism
        log.info(None, AUTH="client", relay=hop.name, stat="not offered by the server, sending without")
        return
    mech = client_auth.choose(info.mechanisms, core.extensions["AUTH"])
    if mech is None:
        wanted = " ".join(info.mechanisms or client_auth.SUPPORTED)
        reply = Reply(454, "4.7.0", f"{hop.name}: no AUTH mechanism in common (server: "
                                    f"{core.extensions['AUTH'] or 'none'}; AuthInfo {entry.where}: {wanted})")
        raise _refused(hop.name, reply)
    core.authenticate(client_auth.mechanism(mech, info.authid, info.password, info.user))
    ev = await session.event()
    if isinstance(ev, client_auth.AuthSucceeded):
        log.info(None, AUTH="client", relay=hop.name, mech=mech, bits=0)
        return
    got = getattr(ev, "reply", None) or Reply(451, "4.4.2", "connection lost during AUTH")
    log.notice(None, AUTH="client", relay=hop.name, mech=mech, reject=str(got))
    raise AuthStepFailed(Reply(454, "4.7.0", f"{hop.name}: AUTH {mech} refused: {got}"))
