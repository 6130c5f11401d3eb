"""The resolver seam: every DNS question mailward asks goes through here (dnspython).

What the delivery side needs, and the rules it follows:

* :meth:`Resolver.mail_hosts` — where mail for a domain goes (RFC 5321 §5.1): the MX records
  in preference order, hosts of equal preference in random order (§5.1: "randomize"), each
  host with its A and AAAA addresses. No MX record → the domain itself is the one host
  ("implicit MX"). A null MX (RFC 7505: one MX, preference 0, target ``.``) means the domain
  accepts no mail: a permanent failure ``556 5.1.10``. A name that does not exist (NXDOMAIN)
  is permanent (``5.1.2``); an MX host without addresses is skipped.
* :meth:`Resolver.addresses` — A then AAAA of one host (for ``[host]`` routes).
* :meth:`Resolver.txt` — the TXT records of a name (MTA-STS's ``_mta-sts``, TLS-RPT's ``_smtp._tls``).
* :meth:`Resolver.client_name` — the receiving side's ``${client_name}``: the PTR name of an
  address, used only when forward-confirmed (its A/AAAA records contain the address, as
  sendmail and Postfix require); otherwise the claimed name is returned as possibly forged.

DNSSEC status (for DANE, RFC 7672 §2.1): a resolver built with ``dnssec=True`` (or
:class:`SecureResolver`) sends its queries with the EDNS DO bit and the AD flag to the servers it
is given — validating resolvers the administrator trusts (``dane.resolver``) — and reads only the
AD bit of their answers: ``secure`` means AD set, anything else is not secure. mailward does no
DNSSEC validation itself. :attr:`MailHost.secure` is the MX RRset's AD bit (for an implicit MX
the address RRset's); :meth:`Resolver.address_lookup` reports it for one host (``[host]``
routes, and the address check of RFC 7672 §2.2.2) and :meth:`Resolver.lookup` for any one
RRset. A resolver built without ``dnssec``, or without servers (resolv.conf's resolvers were
not named by the administrator), never reports ``secure``; :meth:`Resolver.validates` checks at
startup that the named resolvers do set AD (one that strips it makes every answer look unsigned,
which no single answer can reveal). A SERVFAIL from a validating
resolver is how it reports a bogus answer: :class:`DNSError` then has ``servfail=True`` (and is
temporary, as every SERVFAIL).

Failure behaviour: SERVFAIL, REFUSED, a timeout or no answer from any server raises
:class:`DNSError` with ``temporary=True`` — the mail is deferred, never bounced. Permanent
answers raise it with ``temporary=False`` and an enhanced status code. Nothing else escapes.

Configuration: ``delivery.resolver`` lists the servers (``ADDR`` or ``ADDR:PORT``, ``[v6]:PORT``);
empty uses the system's resolv.conf. ``delivery.dns_timeout`` bounds each lookup.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import dns.asyncresolver
import dns.reversename
import dns.exception
import dns.flags
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver


class DNSError(Exception):
    def __init__(self, text: str, *, temporary: bool, status: str = "", code: int = 0,
                 servfail: bool = False, malformed: bool = False):
        super().__init__(text)
        self.temporary = temporary
        self.servfail = servfail        # a server answered SERVFAIL (a validating resolver: bogus)
        self.malformed = malformed      # an answer came but could not be parsed (FormError)
        self.status = status or ("4.4.3" if temporary else "5.1.2")
        self.code = code or (451 if temporary else 550)

    @property
    def text(self) -> str:
        return str(self)


@dataclass(frozen=True)
class MailHost:
    name: str                       # the MX target (or the domain itself for an implicit MX)
    preference: int
    addresses: tuple[str, ...]
    implicit: bool = False          # no MX record: the domain's own address (RFC 5321 §5.1)
    secure: bool = False            # the MX RRset (implicit: the address RRset) had the AD bit


@dataclass(frozen=True)
class RRLookup:
    """One RRset question and what the resolver said about it.

    ``rrset`` is None for "no such record" (NODATA) and for a name that does not exist
    (``exists`` False); ``canonical`` is the owner after CNAME expansion (the name itself
    without one); ``secure`` is the AD bit of the answer (DNSSEC-validated by the trusted
    resolver), for a positive answer and for a denial of existence alike."""
    name: str
    rdtype: str
    rrset: object | None
    secure: bool
    canonical: str
    exists: bool = True


@dataclass(frozen=True)
class Addresses:
    """A then AAAA of one host. ``secure``: both answers (records or NODATA) had the AD bit;
    ``canonical``: the name the address records are owned by after CNAMEs; ``failure``: the
    temporary error of one of the two lookups when the other gave addresses ('' when both
    answered; then ``secure`` is False)."""
    name: str
    addresses: tuple[str, ...]
    secure: bool
    canonical: str
    failure: str = ""


def parse_server(item: str) -> tuple[str, int]:
    """'127.0.0.1', '127.0.0.1:5353', '[::1]:53', '::1' → (address, port)."""
    item = item.strip()
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif item.count(":") == 1:
        host, _, p = item.partition(":")
        port = int(p)
    else:
        host, port = item, 53
    ipaddress.ip_address(host)  # ValueError for a name: resolvers are given by address
    return host, port


def is_address_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class Resolver:
    def __init__(self, servers: list[str] | tuple[str, ...] = (), timeout: float = 10.0,
                 rng: random.Random | None = None, *, dnssec: bool = False):
        if servers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_server(s)) for s in servers]
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = timeout
        self._resolver.timeout = min(timeout, 3.0)
        self._resolver.cache = dns.resolver.Cache(60)
        self.rng = rng or random.Random()
        self.dnssec = dnssec
        # The AD bit is believed only from servers the administrator named: with dnssec but no
        # servers (resolv.conf: a LAN or provider resolver nobody vouched for) nothing is secure.
        self.ad_trusted = bool(dnssec and servers)
        if dnssec:  # RFC 6840 §5.7: AD in the query asks for the AD bit; DO for the signatures
            self._resolver.use_edns(0, dns.flags.DO, 1232)
            self._resolver.flags = dns.flags.RD | dns.flags.AD

    def _secure(self, response) -> bool:
        return self.ad_trusted and response is not None and bool(response.flags & dns.flags.AD)

    async def validates(self, name: str = ".", rdtype: str = "DNSKEY") -> bool:
        """Does the resolver set the AD bit on an answer that must be signed (by default the
        root zone's DNSKEY RRset)? False for a resolver that does not validate or strips AD, or
        one that cannot be reached: a startup check to log, since such a resolver turns every
        DANE lookup into ``insecure`` without any single answer looking wrong."""
        try:
            got = await self.lookup(name, rdtype)
        except DNSError:
            return False
        return got.secure and got.rrset is not None

    async def lookup(self, name: str, rdtype: str) -> RRLookup:
        """One RRset with its DNSSEC status (see :class:`RRLookup`). NXDOMAIN is an answer here
        (``exists=False``), not an error; temporary failures raise :class:`DNSError`."""
        name = name.rstrip(".")
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as err:
            responses = err.responses()
            response = next(iter(responses.values()), None) if responses else None
            return RRLookup(name, rdtype, None, self._secure(response), name, exists=False)
        except (dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout, dns.exception.Timeout) as err:
            raise self._temporary(name, rdtype, err) from None
        except dns.exception.DNSException as err:
            raise DNSError(f"DNS error for name={name} type={rdtype}: {err}", temporary=True) from None
        canonical = answer.canonical_name.to_text(omit_final_dot=True)
        return RRLookup(name, rdtype, answer.rrset, self._secure(answer.response), canonical)

    @staticmethod
    def _temporary(name: str, rdtype: str, err: Exception) -> DNSError:
        errors = [e for e in (getattr(err, "kwargs", {}) or {}).get("errors", ()) if e]
        servfail = any(getattr(e[-1], "rcode", lambda: None)() == dns.rcode.SERVFAIL for e in errors)
        malformed = [e[3] for e in errors if len(e) > 3 and isinstance(e[3], dns.exception.FormError)]
        what = "SERVFAIL" if servfail else type(err).__name__
        if malformed and not servfail:
            what = f"malformed answer ({str(malformed[0])[:120]})"
        return DNSError(f"Host name lookup failure for name={name} type={rdtype}: {what}",
                        temporary=True, status="4.4.3", code=451, servfail=servfail,
                        malformed=bool(malformed))

    async def _query(self, name: str, rdtype: str):
        """The answer's rrset, or None for "no such record"; raises DNSError otherwise."""
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
            return answer.rrset
        except dns.resolver.NoAnswer:
            return None
        except dns.resolver.NXDOMAIN:
            raise DNSError(f"Host or domain name not found. Name service error for name={name} "
                           f"type={rdtype}: Host not found", temporary=False, status="5.1.2", code=550) from None
        except (dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout, dns.exception.Timeout) as err:
            # SERVFAIL, REFUSED, no server reachable, timeout: try again later (never bounce)
            raise self._temporary(name, rdtype, err) from None
        except dns.exception.DNSException as err:
            raise DNSError(f"DNS error for name={name} type={rdtype}: {err}", temporary=True) from None

    async def addresses(self, name: str) -> tuple[str, ...]:
        """A then AAAA addresses of ``name``; () when it has none. An address literal is itself."""
        if is_address_literal(name):
            return (name,)
        found: list[str] = []
        temporary: DNSError | None = None
        for rdtype in ("A", "AAAA"):
            try:
                rrset = await self._query(name, rdtype)
            except DNSError as err:
                if not err.temporary:
                    if rdtype == "A":
                        raise
                    continue
                temporary = err
                continue
            if rrset is not None:
                found.extend(r.address for r in rrset)
        if not found and temporary is not None:
            raise temporary
        return tuple(found)

    async def address_lookup(self, name: str) -> Addresses:
        """As :meth:`addresses`, with the DNSSEC status and the CNAME-expanded name (RFC 7672
        §2.2.2). An address literal is itself and not secure; failures as :meth:`addresses`."""
        name = name.rstrip(".")
        if is_address_literal(name):
            return Addresses(name, (name,), False, name)
        found: list[str] = []
        secure = True
        canonical = ""
        temporary: DNSError | None = None
        for rdtype in ("A", "AAAA"):
            try:
                got = await self.lookup(name, rdtype)
            except DNSError as err:
                temporary = err
                continue
            secure = secure and got.secure
            if not got.exists:
                if rdtype == "A":
                    raise DNSError(f"Host or domain name not found. Name service error for name={name} "
                                   f"type=A: Host not found", temporary=False, status="5.1.2", code=550)
                continue
            canonical = canonical or got.canonical
            if got.rrset is not None:
                found.extend(r.address for r in got.rrset)
        if not found and temporary is not None:
            raise temporary
        return Addresses(name, tuple(found), secure and temporary is None, canonical or name,
                         str(temporary) if temporary is not None else "")

    async def txt(self, name: str) -> list[str]:
        """The TXT records of ``name``, each record's strings joined (RFC 7208 §3.3 and RFC 8461
        §3.1 read them so); [] when the name has none or does not exist. Temporary failures raise
        :class:`DNSError` (temporary=True) as every other lookup does."""
        try:
            rrset = await self._query(name.rstrip("."), "TXT")
        except DNSError as err:
            if not err.temporary:
                return []
            raise
        if rrset is None:
            return []
        return [b"".join(r.strings).decode("utf-8", "replace") for r in rrset]

    async def mail_hosts(self, domain: str) -> list[MailHost]:
        """The hosts that take mail for ``domain``, in the order to try them (RFC 5321 §5.1)."""
        domain = domain.rstrip(".")
        mx = await self.lookup(domain, "MX")
        if not mx.exists:
            raise DNSError(f"Host or domain name not found. Name service error for name={domain} "
                           f"type=MX: Host not found", temporary=False, status="5.1.2", code=550)
        rrset = mx.rrset
        if rrset is None:  # no MX: the domain's own address is the implicit MX
            own = await self.address_lookup(domain)
            if not own.addresses:
                raise DNSError(f"Host or domain name not found: {domain} has no MX and no address",
                               temporary=False, status="5.1.2", code=550)
            return [MailHost(domain, 0, own.addresses, implicit=True, secure=own.secure)]
        records = [(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in rrset]
        real = [(p, name) for p, name in records if name not in ("", ".")]
        if not real:  # RFC 7505 §3: a null MX; §4.2 gives the reply code
            raise DNSError(f"Domain {domain} does not accept mail (nullMX)", temporary=False,
                           status="5.1.10", code=556)
        by_pref: dict[int, list[str]] = {}
        for pref, name in real:
            by_pref.setdefault(pref, []).append(name)
        hosts: list[MailHost] = []
        temporary: DNSError | None = None
        for pref in sorted(by_pref):
            names = by_pref[pref]
            self.rng.shuffle(names)
            for name in names:
                try:
                    addrs = await self.addresses(name)
                except DNSError as err:
                    if err.temporary:
                        temporary = err
                    continue
                if addrs:
                    hosts.append(MailHost(name, pref, addrs, secure=mx.secure))
        if not hosts:
            if temporary is not None:
                raise temporary
            raise DNSError(f"No address for any MX host of {domain}", temporary=False, status="5.4.4",
                           code=550)
        return hosts


class SecureResolver(Resolver):
    """A :class:`Resolver` that asks the given validating resolvers (``dane.resolver``) and
    reports their AD bit. ``servers`` must not be empty: the system resolver is not trusted."""

    def __init__(self, servers: list[str] | tuple[str, ...], timeout: float = 10.0,
                 rng: random.Random | None = None):
        if not servers:
            raise ValueError("SecureResolver needs the validating resolvers (dane.resolver)")
        super().__init__(servers, timeout, rng, dnssec=True)


@dataclass(frozen=True)
class ClientName:
    """What reverse DNS says about a client address.

    ``name`` is the forward-confirmed name ('' when there is none: policy then sees
    ``[addr]``); ``claimed`` is the PTR name whatever its forward lookup said ('' without a
    PTR record); ``forged`` is True when a PTR name exists but its A/AAAA records do not
    contain the address (sendmail: "IP name possibly forged"; Postfix: ``unknown``)."""
    name: str = ""
    claimed: str = ""

    @property
    def forged(self) -> bool:
        return bool(self.claimed) and not self.name


async def confirmed_client_name(resolver: "Resolver", addr: str) -> ClientName:
    """The PTR name of ``addr`` and whether its forward lookup confirms it. Any DNS failure
    (timeout, SERVFAIL, no PTR) gives no confirmed name: a name is trusted only when proved."""
    try:
        rrset = await resolver._query(dns.reversename.from_address(addr).to_text(), "PTR")
    except (DNSError, ValueError):
        return ClientName()
    if rrset is None:
        return ClientName()
    claimed = sorted(r.target.to_text(omit_final_dot=True) for r in rrset)
    for name in claimed:
        try:
            forward = await resolver.addresses(name)
        except DNSError:
            continue
        if _same_address(addr, forward):
            return ClientName(name, name)
    return ClientName("", claimed[0])


def _same_address(addr: str, candidates: tuple[str, ...]) -> bool:
    try:
        want = ipaddress.ip_address(addr)
        return any(ipaddress.ip_address(c) == want for c in candidates)
    except ValueError:
        return False


async def system_client_name(addr: str) -> ClientName:
    """As :func:`confirmed_client_name`, through the system's resolver (getnameinfo and
    getaddrinfo: /etc/hosts, then DNS, as sendmail without its own resolver settings)."""
    import asyncio
    import socket

    loop = asyncio.get_running_loop()
    try:
        host, _ = await loop.getnameinfo((addr, 0), socket.NI_NAMEREQD)
    except OSError:
        return ClientName()
    name = host.rstrip(".")
    if not name or is_address_literal(name):
        return ClientName()
    try:
        infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        return ClientName("", name)
    if _same_address(addr, tuple(info[4][0] for info in infos)):
        return ClientName(name, name)
    return ClientName("", name)
