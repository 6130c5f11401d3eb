"""The ordinary access checks of a receiving session: check_relay (connect), check_mail,
check_rcpt with relaying — sendmail 8.17's proto.m4 with FEATURE(access_db) and
FEATURE(blocklist_recipients), plus relaying by client certificate (sendmail cf/README, STARTTLS, "Relaying").

* ``check_connect``: ``Connect:`` (and untagged) on the client name and its parents, then
  the client address and its prefixes. REJECT → ``550 5.7.1 Access denied``; DISCARD,
  ERROR:..., OK, RELAY as sendmail. No entry → continue.
* ``check_mail``: first tls_client at MAIL (sendmail's Basic_check_mail does this before
  anything else, so a failure is logged as ``ruleset=check_mail``); ``<>`` is always
  accepted (RFC 1123); then ``From:`` (and untagged) on ``user@domain``, ``user@``,
  ``domain`` and parents. REJECT → ``550 5.7.1 <addr>... Access denied``.
* ``check_rcpt``: ``To:`` (and untagged) on ``user@domain``, (``user@`` for local domains),
  ``domain`` and parents: REJECT → ``550 5.2.1 <addr>... Mailbox disabled for this
  recipient``, ERROR/DISCARD as given; then relaying: allowed for local domains, for
  ``relay_domains`` and their subdomains, for a ``To:domain RELAY`` entry, for a verified
  client certificate whose issuer is ``CERTISSUER:<dn> RELAY`` (or ``SUBJECT`` and then
  ``CERTSUBJECT:<dn> RELAY``), for a client from 127.0.0.1 / ::1 (hard-wired in sendmail,
  reference d4_relay_from_127.0.0.1), and for a client whose address or name is
  ``Connect:... RELAY`` (or untagged), and for a client that authenticated with SMTP AUTH
  (RFC 4954; sendmail's ``${auth_type}``). Otherwise ``550 5.7.1 <addr>... Relaying denied``.

DNs in CERTISSUER/CERTSUBJECT keys are in sendmail's ``+XX`` form
(:mod:`mailward.tls.dn`); an entry in sendmail 8.12's form (``darth+2Bcert``) matches the
8.17/OpenSSL 3 form (``darth+5C+2Bcert``) too. Optional regular expressions rewrite the DN
before the lookup (sendmail's _CERT_REGEX_ISSUER_ / _CERT_REGEX_SUBJECT_): the first
group of the first match, or the whole match; no match leaves the DN as it is.

Pure functions; no I/O.
"""

from __future__ import annotations

import re
from typing import Iterable

from mailward.policy.accessmap import AccessMap, Entry, dn_key, sendmail_addr
from mailward.policy.decision import Decision, default_status, error_action, relay_name
from mailward.policy.lookup import Trace, lookup_addr, lookup_domain, search_address, split_address
from mailward.policy.rhs import parse_ordinary
from mailward.policy.tls_checks import check_tls_client
from mailward.tls.facts import ConnectionFacts

_LOCAL_ADDRS = frozenset({"", "0", "127.0.0.1", "IPv6:0:0:0:0:0:0:0:1", "IPv6:::1"})


def _bracket(address: str) -> str:
    address = address.strip()
    return address if address.startswith("<") else f"<{address}>"


def _from_entry(ruleset: str, entry: Entry, args, relay, trace, address: str = "",
                reject=(5, "5.7.1", "Access denied")) -> Decision | None:
    """Turn an ordinary entry into a decision; None for SKIP/QUARANTINE (go on)."""
    value = parse_ordinary(entry.value)
    common = dict(args=args, relay=relay, entry=entry, lookups=tuple(trace.tried), address=address)
    if value.word == "OK":
        return Decision("ok", ruleset, **common)
    if value.word == "RELAY":
        return Decision("relay", ruleset, **common)
    if value.word == "DISCARD":
        return Decision("discard", ruleset, **common)
    if value.word == "REJECT":
        return Decision("reject", ruleset, 550, reject[1], reject[2], **common)
    if value.word == "ERROR":
        status = value.status or default_status(value.code)
        return Decision(error_action(value.code), ruleset, value.code, status, value.text, **common)
    return None


def check_connect(amap: AccessMap, conn: ConnectionFacts) -> Decision:
    """check_relay: may this client connect? A refusal is answered, as sendmail does, to
    every command but QUIT (the caller's choice of how); ``log_fragment`` names
    ``ruleset=check_relay, arg1=name, arg2=addr``."""
    trace = Trace()
    addr = sendmail_addr(conn.peer_addr)
    args = (conn.peer_name, addr)
    relay = relay_name(conn.peer_name, addr)
    entry = (lookup_domain(amap, trace, "Connect", conn.peer_name, untagged=True)
             or lookup_addr(amap, trace, "Connect", addr, untagged=True))
    if entry is not None:
        decision = _from_entry("check_relay", entry, args, relay, trace)
        if decision is not None:
            return decision
    return Decision("continue", "check_relay", args=args, relay=relay, entry=entry, lookups=tuple(trace.tried))


CONTINUE_TLS = Decision("continue", "tls_client")


def check_mail(amap: AccessMap, conn: ConnectionFacts, sender: str, tls_perm_err: bool = False,
               tls_checked: bool = False) -> Decision:
    """check_mail for ``MAIL FROM:<sender>``. Runs tls_client (stage MAIL) itself unless the
    caller did (``tls_checked``: a session whose TLS facts did not change since it asked).
    Accepting decisions carry ``250 2.1.0 <sender>... Sender ok``."""
    address = _bracket(sender)
    relay = relay_name(conn.peer_name, sendmail_addr(conn.peer_addr))
    args = (address,)
    tls = CONTINUE_TLS if tls_checked else check_tls_client(amap, conn, "MAIL", tls_perm_err)
    if tls.failed:
        # as sendmail 8.17 logs it: as check_mail, no address in the 454 reply
        return Decision(tls.action, "check_mail", tls.code, tls.status, tls.text, address=address,
                        args=args, relay=relay, entry=tls.entry, lookups=tls.lookups)
    trace = Trace()
    trace.tried.extend(tls.lookups)
    ok = dict(code=250, status="2.1.0", text="Sender ok", address=address, args=args, relay=relay)
    if address == "<>":
        return Decision("continue", "check_mail", lookups=tuple(trace.tried), **ok)
    entry = search_address(amap, trace, "From", address, untagged=True)
    if entry is not None:
        decision = _from_entry("check_mail", entry, args, relay, trace, address)
        if decision is not None:
            if decision.action in ("ok", "relay", "discard"):
                return Decision(decision.action, "check_mail", entry=entry, lookups=tuple(trace.tried), **ok)
            return decision
    return Decision("continue", "check_mail", entry=entry, lookups=tuple(trace.tried), **ok)


def _in_domains(domain: str, domains: Iterable[str], subdomains: bool) -> bool:
    domain = domain.lower().rstrip(".")
    for item in domains:
        item = item.lower().rstrip(".")
        if domain == item or (subdomains and domain.endswith("." + item)):
            return True
    return False


def _addr_in(addr: str, prefixes: Iterable[str]) -> bool:
    """sendmail's ``$=R $*`` on an address: the class entry equals the address or is a
    prefix ending at a '.' or ':' boundary."""
    low = addr.lower()
    for item in prefixes:
        item = item.lower()
        if low == item or low.startswith(item + ".") or low.startswith(item + ":"):
            return True
    return False


def rewrite_dn(dn: str, regex: str | None) -> str:
    """_CERT_REGEX_ISSUER_/_SUBJECT_: the first group (or the whole match) of ``regex``."""
    if not regex:
        return dn
    m = re.search(regex, dn)
    if not m:
        return dn
    return m.group(1) if m.re.groups else m.group(0)


def _cert_lookup(amap: AccessMap, trace: Trace, tag: str, dn: str) -> Entry | None:
    # both the key and the DN in the 8.12 form (no +5C escapes): either spelling matches
    return trace.get(amap, f"{tag}:{dn_key(dn)}")


def relay_by_certificate(amap: AccessMap, conn: ConnectionFacts, trace: Trace,
                         cert_regex_issuer: str | None = None,
                         cert_regex_subject: str | None = None) -> Entry | None:
    """sendmail's RelayTLS: the entry that allows relaying (None: not allowed)."""
    tls = conn.tls
    if tls.verify not in ("OK", "TRUSTED") or not tls.cert_issuer:
        return None
    entry = _cert_lookup(amap, trace, "CERTISSUER", rewrite_dn(tls.cert_issuer, cert_regex_issuer))
    if entry is None:
        return None
    if entry.value.upper() == "RELAY":
        return entry
    if entry.value.upper() == "SUBJECT" and tls.cert_subject:
        subject = _cert_lookup(amap, trace, "CERTSUBJECT", rewrite_dn(tls.cert_subject, cert_regex_subject))
        if subject is not None and subject.value.upper() == "RELAY":
            return subject
    return None


def _relay_by_client(amap: AccessMap, conn: ConnectionFacts, trace: Trace, local_domains,
                     relay_domains) -> tuple[bool, Entry | None]:
    """sendmail's Relay_ok: may this client relay, by its address or its name?"""
    addr = sendmail_addr(conn.peer_addr)
    if addr in _LOCAL_ADDRS or _addr_in(addr, relay_domains):
        return True, None
    entry = lookup_addr(amap, trace, "Connect", addr, untagged=True)
    if entry is not None and entry.value.upper() == "RELAY":
        return True, entry
    name = conn.peer_name.rstrip(".")
    if name and not name.startswith("["):
        if _in_domains(name, local_domains, False) or _in_domains(name, relay_domains, True):
            return True, None
        entry = lookup_domain(amap, trace, "Connect", name, untagged=True)
        if entry is not None and entry.value.upper() == "RELAY":
            return True, entry
    return False, None


def check_rcpt(amap: AccessMap, conn: ConnectionFacts, rcpt: str, local_domains: Iterable[str],
               relay_domains: Iterable[str] = (), cert_regex_issuer: str | None = None,
               cert_regex_subject: str | None = None, authenticated: bool = False) -> Decision:
    """check_rcpt for ``RCPT TO:<rcpt>``: To: entries, then relaying. Accepting decisions
    carry ``250 2.1.5 <rcpt>... Recipient ok``; action "relay" when the recipient is not
    local and relaying was allowed, "continue" for local recipients. ``authenticated``: the
    client passed SMTP AUTH, which allows relaying (sendmail's Relay_ok for ${auth_type})."""
    local_domains, relay_domains = tuple(local_domains), tuple(relay_domains)
    address = _bracket(rcpt)
    addr = sendmail_addr(conn.peer_addr)
    relay = relay_name(conn.peer_name, addr)
    args = (address,)
    trace = Trace()
    local, domain = split_address(address)
    is_local = not domain or _in_domains(domain, local_domains, False)
    ok = dict(code=250, status="2.1.5", text="Recipient ok", address=address, args=args, relay=relay)

    # blocklist_recipients: To: REJECT / ERROR / DISCARD (OK and RELAY: go on)
    entry = search_address(amap, trace, "To", address, untagged=True, with_user=is_local)
    if entry is not None:
        decision = _from_entry("check_rcpt", entry, args, relay, trace, address,
                               reject=(5, "5.2.1", "Mailbox disabled for this recipient"))
        if decision is not None and decision.action in ("reject", "tempfail"):
            return decision
        if decision is not None and decision.action == "discard":
            return Decision("discard", "check_rcpt", entry=entry, lookups=tuple(trace.tried), **ok)

    # Local recipients need no relaying (sendmail checks RelayTLS first, with the same outcome)
    if is_local:
        return Decision("continue", "check_rcpt", lookups=tuple(trace.tried), **ok)
    # An authenticated client relays (sendmail cf/README, "SMTP AUTH": ${auth_type} set)
    if authenticated:
        return Decision("relay", "check_rcpt", lookups=tuple(trace.tried), **ok)
    # RelayTLS: a verified certificate from a CA the map trusts for relaying
    cert_entry = relay_by_certificate(amap, conn, trace, cert_regex_issuer, cert_regex_subject)
    if cert_entry is not None:
        return Decision("relay", "check_rcpt", entry=cert_entry, lookups=tuple(trace.tried), **ok)
    if _in_domains(domain, relay_domains, True):
        return Decision("relay", "check_rcpt", lookups=tuple(trace.tried), **ok)
    to_entry = lookup_domain(amap, trace, "To", domain, untagged=True)
    if to_entry is not None and to_entry.value.upper() == "RELAY":
        return Decision("relay", "check_rcpt", entry=to_entry, lookups=tuple(trace.tried), **ok)
    allowed, client_entry = _relay_by_client(amap, conn, trace, local_domains, relay_domains)
    if allowed:
        return Decision("relay", "check_rcpt", entry=client_entry, lookups=tuple(trace.tried), **ok)
    return Decision("reject", "check_rcpt", 550, "5.7.1", "Relaying denied", address=address, args=args,
                    relay=relay, lookups=tuple(trace.tried))
