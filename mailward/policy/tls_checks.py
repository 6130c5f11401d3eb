"""The TLS checks of sendmail's cf/README, STARTTLS section ("Allowing Connections", "Disabling STARTTLS And Setting SMTP
Server Features"): tls_client, tls_server, tls_rcpt, try_tls and srv_features.

* ``check_tls_client`` — mailward as server, after STARTTLS and at MAIL: ``TLS_Clt:`` on
  ``${client_name}`` (and parent domains), then ``${client_addr}`` (and prefixes), then the
  bare ``TLS_Clt:``.
* ``check_tls_server`` — mailward delivering, after STARTTLS (or after deciding not to use
  it): ``TLS_Srv:`` on ``${server_name}``, then ``${server_addr}``, then ``TLS_Srv:``.
* ``check_tls_rcpt`` — delivering, before each RCPT TO: ``TLS_Rcpt:user@domain``,
  ``user@``, ``domain`` and its parents, then ``TLS_Rcpt:``.
* ``try_tls`` — ``Try_TLS:`` on server name, address, bare tag; ``NO`` → no STARTTLS.
* ``srv_features`` — ``Srv_Features:`` on client name, address, bare tag: ``S`` do not
  offer STARTTLS (a STARTTLS then gets ``503 5.5.0 TLS not available``), ``V`` do not
  request a client certificate, ``v`` request one; other letters are recorded as ignored.

The requirement found is checked by :func:`tls_connection` (sendmail's TLS_connection):
no entry → accept, except ``verify=SOFTWARE`` which always fails ("sendmail cf/README, STARTTLS"). Reply codes
and texts are sendmail 8.17's (proto.m4, and sendmail 8.17 as observed): no prefix → ``454 4.7.0``
(``554 5.7.0`` with ``tls_perm_err``, sendmail's TLS_PERM_ERR), ``TEMP+`` → ``403 4.7.0``,
``PERM+`` → ``503 5.7.0``.

Pure functions over an access map and :class:`~mailward.tls.facts.ConnectionFacts`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailward.policy.accessmap import AccessMap, Entry, dn_key, sendmail_addr
from mailward.policy.decision import Decision, error_action, relay_name
from mailward.policy.lookup import Trace, lookup_host, search_address
from mailward.policy.rhs import TLSRequirement, parse_tls_requirement
from mailward.tls.facts import ConnectionFacts, TLSFacts

# sendmail's texts for an unmet VERIFY, by ${verify} (proto.m4, TLS_connection).
_VERIFY_TEXTS = {
    "": "authentication required",          # server side, no STARTTLS: ${verify} unset
    "FAIL": "authentication failed",
    "NO": "not authenticated",
    "NOT": "no authentication requested",
    "NONE": "other side does not support STARTTLS",
    "CLEAR": "STARTTLS disabled locally",
}


def tls_connection(verify: str, entry: Entry | None, tls: TLSFacts, tls_name: str,
                   amap: AccessMap, tls_perm_err: bool = False) -> tuple[int, str, str] | None:
    """sendmail's TLS_connection: None if the connection meets the entry's requirement,
    else (code, status, text). ``verify`` is ``${verify}`` as the ruleset sees it ('' on
    the server before STARTTLS); ``tls_name`` the peer name that a bare ``CN`` must match."""
    code, status = (554, "5.7.0") if tls_perm_err else (454, "4.7.0")
    req: TLSRequirement | None = None
    if entry is not None:
        req = parse_tls_requirement(entry.value)
        if req.kind == "OK":
            req = None
        elif req.prefix == "PERM":
            code, status = 503, "5.7.0"
        elif req.prefix == "TEMP":
            code, status = 403, "4.7.0"
    if verify == "SOFTWARE":  # the handshake failed: always abort ("sendmail cf/README, STARTTLS")
        return code, status, "TLS handshake failed."
    if req is None:
        return None
    if verify == "PROTOCOL":  # sendmail 8.17 (TLS_ERRORS(PROTOCOL)) when a requirement exists
        return code, status, "STARTTLS failed."
    bits = tls.cipher_bits  # sendmail: max(${cipher_bits}, ${auth_ssf}); no SASL here
    if req.kind == "VERIFY" and verify not in ("OK", "TRUSTED"):
        return code, status, _VERIFY_TEXTS.get(verify, f"authentication failure {verify}")
    if bits < req.bits:
        return code, status, f"encryption too weak {bits} less than {req.bits}"
    for name, arg in req.extensions:
        problem = _extension(name, arg, tls, tls_name, amap)
        if problem:
            return code, status, problem
    return None


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def _extension(name: str, arg: str | None, tls: TLSFacts, tls_name: str, amap: AccessMap) -> str | None:
    """sendmail's TLS_req for one extension: None if met, else the reply text."""
    if name == "CN":
        want = tls_name if arg is None else arg
        if not _same(want, tls.cn_subject):
            return f"CN {tls.cn_subject} does not match {want}"
    elif name == "CS":
        if not _same(dn_key(arg or ""), dn_key(tls.cert_subject)):
            return f"Cert Subject {tls.cert_subject} does not match {arg}"
    elif name == "CI":
        if not _same(dn_key(arg or ""), dn_key(tls.cert_issuer)):
            return f"Cert Issuer {tls.cert_issuer} does not match {arg}"
    elif name == "CITag":
        found = amap.get(f"{arg}:{tls.cert_issuer}") or amap.get(f"{arg}:{dn_key(tls.cert_issuer)}")
        if found is None or found.value.upper() != "OK":
            return f"Cert Issuer {tls.cert_issuer} not acceptable"
    return None


def _decide(ruleset: str, args: tuple[str, ...], conn: ConnectionFacts, result, entry: Entry | None,
            trace: Trace, address: str = "", relay: str | None = None) -> Decision:
    if relay is None:
        relay = relay_name(conn.peer_name, sendmail_addr(conn.peer_addr))
    if result is None:
        return Decision("continue", ruleset, args=args, relay=relay, entry=entry,
                        lookups=tuple(trace.tried), address=address)
    code, status, text = result
    return Decision(error_action(code), ruleset, code, status, text, address=address, args=args,
                    relay=relay, entry=entry, lookups=tuple(trace.tried))


def server_verify(tls: TLSFacts) -> str:
    """``${verify}`` as sendmail's server rulesets see it: unset ('') before STARTTLS."""
    return "" if tls.verify == "NONE" and not tls.active else tls.verify


def check_tls_client(amap: AccessMap, conn: ConnectionFacts, stage: str,
                     tls_perm_err: bool = False) -> Decision:
    """tls_client: is the connection with this client good enough? ``stage`` is
    "STARTTLS" (right after the handshake) or "MAIL" (check_mail runs this itself).

    A failure at STARTTLS is not the STARTTLS reply: the server answers every later MAIL
    and RCPT with this decision's reply (as sendmail 8.17 does) and logs
    ``decision.log_fragment`` once."""
    if stage not in ("STARTTLS", "MAIL"):
        raise ValueError(f"stage must be STARTTLS or MAIL, not {stage!r}")
    trace = Trace()
    addr = sendmail_addr(conn.peer_addr)
    entry = lookup_host(amap, trace, "TLS_Clt", conn.peer_name, addr)
    verify = server_verify(conn.tls)
    result = tls_connection(verify, entry, conn.tls, conn.peer_name, amap, tls_perm_err)
    return _decide("tls_client", (verify, stage), conn, result, entry, trace)


def check_tls_server(amap: AccessMap, conn: ConnectionFacts, tls_perm_err: bool = False,
                     tls_disabled: bool = False) -> Decision:
    """tls_server: is the connection with this server good enough? Call it after STARTTLS,
    or when STARTTLS was not used (``conn.tls.verify`` "NONE": the server did not offer
    it; ``tls_disabled`` True: Try_TLS said NO, sendmail's verify=CLEAR).
    A failure means this host is not used for the message: tempfail → try the next MX /
    defer, reject → bounce."""
    trace = Trace()
    addr = sendmail_addr(conn.peer_addr)
    entry = lookup_host(amap, trace, "TLS_Srv", conn.peer_name, addr)
    verify = "CLEAR" if tls_disabled and not conn.tls.active else conn.tls.verify
    result = tls_connection(verify, entry, conn.tls, conn.peer_name, amap, tls_perm_err)
    # sendmail logs the sending side's refusals with relay=${server_name} alone
    return _decide("tls_server", (verify,), conn, result, entry, trace, relay=conn.peer_name)


def check_tls_rcpt(amap: AccessMap, conn: ConnectionFacts, rcpt: str, tls_perm_err: bool = False,
                   tls_disabled: bool = False) -> Decision:
    """tls_rcpt: may ``rcpt`` be sent over this connection? Call before each RCPT TO; a
    failing recipient is deferred (tempfail) or bounced (reject), the others go on. This is
    what keeps mail for ``TLS_Rcpt:secure.example ENCR:112`` off a clear-text backup MX."""
    trace = Trace()
    entry = search_address(amap, trace, "TLS_Rcpt", rcpt, untagged=False, bare_tag=True)
    if entry is None:
        return _decide("tls_rcpt", (rcpt,), conn, None, None, trace, relay=conn.peer_name)
    verify = "CLEAR" if tls_disabled and not conn.tls.active else conn.tls.verify
    result = tls_connection(verify, entry, conn.tls, conn.peer_name, amap, tls_perm_err)
    return _decide("tls_rcpt", (rcpt,), conn, result, entry, trace, relay=conn.peer_name)


def try_tls(amap: AccessMap, server_name: str, server_addr: str) -> bool:
    """try_tls: False when ``Try_TLS:`` says NO for this server (name, parents, address,
    prefixes, bare tag): deliver without STARTTLS."""
    return try_tls_decision(amap, server_name, server_addr).action != "reject"


def try_tls_decision(amap: AccessMap, server_name: str, server_addr: str, rcpt: str = "") -> Decision:
    """try_tls with its trace; "reject" means do not use STARTTLS (no reply is sent; the
    log line names ``rcpt``, the first recipient, as sendmail 8.17's does:
    ``ruleset=try_tls, arg1=[addr], relay=[addr], reject=550 5.7.1 u@x... do not try TLS with ...``)."""
    trace = Trace()
    addr = sendmail_addr(server_addr)
    entry = lookup_host(amap, trace, "Try_TLS", server_name, addr)
    if entry is not None and entry.value.upper() == "NO":
        return Decision("reject", "try_tls", 550, "5.7.1", f"do not try TLS with {server_name} [{addr}]",
                        address=rcpt, args=(server_name,), relay=server_name, entry=entry,
                        lookups=tuple(trace.tried))
    return Decision("continue", "try_tls", args=(server_name,), relay=server_name, entry=entry,
                    lookups=tuple(trace.tried))


@dataclass(frozen=True)
class ServerFeatures:
    """What to offer this client. ``offer_starttls`` False (``S``): leave STARTTLS out of
    EHLO and answer it with ``503 5.5.0 TLS not available``. ``request_client_cert``: True
    (``v``), False (``V``), None (no letter: the ``tls.request_client_cert`` setting).
    ``ignored``: letters mailward does not implement (to log once)."""

    offer_starttls: bool = True
    request_client_cert: bool | None = None
    letters: str = ""
    ignored: str = ""
    entry: Entry | None = None
    lookups: tuple[tuple[str, Entry | None], ...] = ()


STARTTLS_NOT_AVAILABLE = "503 5.5.0 TLS not available"


def srv_features(amap: AccessMap, conn: ConnectionFacts) -> ServerFeatures:
    """srv_features: ``Srv_Features:`` on client name, address, then the bare tag."""
    trace = Trace()
    entry = lookup_host(amap, trace, "Srv_Features", conn.peer_name, sendmail_addr(conn.peer_addr))
    if entry is None:
        return ServerFeatures(lookups=tuple(trace.tried))
    letters = "".join(entry.value.split())
    request = None
    for letter in letters:  # the last of V / v wins, as sendmail applies them in order
        if letter == "V":
            request = False
        elif letter == "v":
            request = True
    ignored = "".join(sorted(set(letters) - set("SVv")))
    return ServerFeatures("S" not in letters, request, letters, ignored, entry, tuple(trace.tried))
