"""Routing: where mail for a recipient domain goes (sendmail's mailertable, then DNS).

The route file (``delivery.route_file``) has one route a line, ``#`` comments::

    example.com         esmtp:[smarthost.example.net]    # that host, no MX lookup
    example.net         [192.0.2.7]:2525                 # that address and port
    .example.com        relay.example.net                # subdomains: MX lookup of relay.example.net
    secure.example      esmtp:[192.0.2.6]:[192.0.2.3]    # two hosts, tried in order
    lists.example.org   local                            # deliver here (Maildir)
    old.example         error:5.1.1:550 User has moved   # refuse with this reply
    bench.example       discard:                         # accept and throw away
    example.test        lmtp:unix:/run/dovecot/lmtp      # LMTP into a mailbox server (RFC 2033)
    cyrus.example       lmtp:[192.0.2.4]:2003            # LMTP over TCP (the port is required)
    .                   [smarthost.example.net]          # the default for every other domain

The left side is a domain (exact match) or ``.domain`` (any subdomain of it); ``.`` alone is the
default. The first match wins in this order: the domain, then ``.parent`` for each parent
from the closest, then ``.``.

The right side is sendmail's ``mailer:host`` ("sendmail cf/README, mailertable"):

* ``esmtp:``, ``smtp:``, ``relay:``, ``smtp8:``, ``dsmtp:`` or no mailer: SMTP to the hosts
  listed, separated by ``:``, tried in order like MX hosts of rising preference. A bracketed
  host ``[host]`` is used as is (its A/AAAA, or an address literal) and keeps its brackets as
  sendmail's ``${server_name}`` — so ``TLS_Srv:[192.0.2.6]`` and ``TLS_Srv:192.0.2.6`` match
  it, and a bare ``+CN`` is compared with ``[192.0.2.6]`` (sendmail 8.17 does the same). A
  bare host is looked up as a mail domain (its MX records, RFC 5321 §5.1). A host may carry
  a port (``[host]:2525``), mailward's addition; the default is ``delivery.smtp_port``.
* ``local`` or ``local:``: local delivery.
* ``error:D.S.N:CODE text`` (or ``error:CODE text``): every recipient gets that reply
  (4xx: deferred, 5xx: bounced), sendmail's error mailer.
* ``discard:``: accepted and thrown away (sendmail's discard mailer; the benchmark uses it).
* ``lmtp:unix:/path`` (a UNIX socket) or ``lmtp:[host]:port`` (TCP, hosts tried in order;
  LMTP has no standard port, RFC 2033 §5, so each host names one): delivery by LMTP into a
  mailbox server, one reply per recipient (:mod:`mailward.deliver.lmtp`).

Without a route, the recipient's own domain is looked up in DNS.

Failure behaviour: :func:`load_routes` raises :class:`RouteError` naming ``file:line`` and the
fix; :func:`next_hops` raises :class:`mailward.dns.DNSError` (temporary → defer, permanent →
bounce) when no host of the route has an address. :class:`RouteTable` re-reads the file when
it changes and keeps the previous table (logging why) when the new one is broken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from mailward import log
from mailward.fsutil import ReloadingFile
from mailward.dns import DNSError, MailHost, Resolver
from mailward.smtp.replies import Reply

SMTP_MAILERS = ("esmtp", "smtp", "relay", "smtp8", "dsmtp")


class RouteError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    """One host of a route: ``bracketed`` means no MX lookup, and brackets kept in ${server_name}."""
    host: str
    port: int | None = None
    bracketed: bool = False

    @property
    def text(self) -> str:
        name = f"[{self.host}]" if self.bracketed else self.host
        return f"{name}:{self.port}" if self.port else name


@dataclass(frozen=True)
class Route:
    """``kind``: "local", "direct" (first host bracketed), "mx" (first host by MX), "error",
    "discard", "lmtp". ``hosts``: every SMTP (or LMTP over TCP) host, in order (``host``/``port``
    are the first one's); ``socket``: an LMTP route's UNIX socket."""
    kind: str
    host: str = ""
    port: int | None = None
    key: str = ""        # the route file key that matched ("" for DNS)
    hosts: tuple[Target, ...] = ()
    reply: Reply | None = None   # the error mailer's reply
    mailer: str = "esmtp"
    socket: str = ""

    @property
    def targets(self) -> tuple[Target, ...]:
        if self.hosts:
            return self.hosts
        if self.kind in ("direct", "mx") and (self.host or self.kind == "direct"):
            return (Target(self.host, self.port, self.kind == "direct"),)
        return ()

    @property
    def text(self) -> str:
        """The right-hand side as mailward understood it (``mailward queue show`` prints it)."""
        if self.kind in ("local", "discard"):
            return self.kind
        if self.kind == "lmtp" and self.socket:
            return f"lmtp:unix:{self.socket}"
        if self.kind == "error" and self.reply is not None:
            return f"error:{self.reply.status}:{self.reply.code} {' '.join(self.reply.lines)}"
        return f"{self.mailer}:" + ":".join(t.text for t in self.targets)


DNS_ROUTE = Route("mx")


@dataclass(frozen=True)
class Hop:
    """One address to try, in order: ``name`` is sendmail's ${server_name} (``[192.0.2.1]``
    for a bracketed route, the MX host name otherwise), ``addr`` its ${server_addr}."""
    name: str
    addr: str
    port: int
    preference: int = 0
    from_mx: bool = False     # the name came from an MX record (logged with its final dot)
    secure: bool = False      # the MX RRset (implicit MX: the address RRset) was DNSSEC-secure (RFC 7672 §2.2.1)

    @property
    def relay(self) -> str:
        """As sendmail logs a relay on the to= line: ``mx.example. [192.0.2.1]`` (an MX
        host), ``[192.0.2.1] [192.0.2.1]`` (a bracketed route), ``host.example [192.0.2.1]``."""
        return f"{self.name}{'.' if self.from_mx else ''} [{self.addr}]"

    @property
    def sni(self) -> str:
        """The name for TLS SNI: the host name without brackets, '' for an address."""
        name = self.name[1:-1] if self.name.startswith("[") and self.name.endswith("]") else self.name
        return "" if _is_literal(name) else name


def _is_literal(host: str) -> bool:
    from mailward.dns import is_address_literal
    return is_address_literal(host[5:] if host[:5].lower() == "ipv6:" else host)


_HOST_PART = re.compile(r"\[([^\]]*)\]|([^:\[\]]+)")


def _targets(text: str, where: str, original: str) -> tuple[Target, ...]:
    """``[a]:[b]:2525:c.example`` → the hosts in order, each with its port if one follows."""
    out: list[Target] = []
    pos = 0
    while pos < len(text):
        m = _HOST_PART.match(text, pos)
        if not m:
            raise RouteError(f"{where}: unbalanced brackets in {original!r}; write [host] or [host]:port")
        bracketed = m.group(1) is not None
        host = (m.group(1) if bracketed else m.group(2)).strip()
        if not host:
            raise RouteError(f"{where}: empty host in {original!r}")
        if not bracketed and any(c in host for c in " \t@"):
            raise RouteError(f"{where}: {original!r} is not a host; write [host]:port, host or local")
        pos = m.end()
        if host.isdigit() and not bracketed:
            if not out or out[-1].port is not None or not 0 < int(host) < 65536:
                raise RouteError(f"{where}: bad port in {original!r}; write [host]:port with 1-65535")
            out[-1] = Target(out[-1].host, int(host), out[-1].bracketed)
        else:
            out.append(Target(host, None, bracketed))
        if pos < len(text):
            if text[pos] != ":":
                raise RouteError(f"{where}: expected ':' between hosts in {original!r}")
            pos += 1
            if pos == len(text):
                raise RouteError(f"{where}: {original!r} ends with ':'")
    if not out:
        raise RouteError(f"{where}: {original!r} names no host")
    return tuple(out)


def _error_reply(rest: str, where: str, original: str) -> Reply:
    """sendmail's error mailer: ``error:5.7.1:550 text``, ``error:550 text``, ``error:5.7.1 text``."""
    status = ""
    m = re.match(r"\s*([245]\.\d{1,3}\.\d{1,3})(?::|\s+|$)", rest)
    if m:
        status, rest = m.group(1), rest[m.end():]
    m = re.match(r"\s*([245]\d\d)(?:\s+|$)", rest)
    code = int(m.group(1)) if m else 0
    if m:
        rest = rest[m.end():]
    if not code:
        code = 451 if status.startswith("4") else 550
    if not status:
        status = f"{str(code)[0]}.0.0"
    if status[0] != str(code)[0]:
        raise RouteError(f"{where}: {original!r}: status {status} does not go with reply code {code}")
    if code < 400:
        raise RouteError(f"{where}: {original!r}: the error mailer needs a 4xx or 5xx code")
    return Reply(code, status, rest.strip() or "Mail refused by the route")


def _lmtp_route(rest: str, where: str, original: str) -> Route:
    """``lmtp:unix:/path`` or ``lmtp:[host]:port[:[host]:port...]``."""
    rest = rest.strip()
    if rest[:5].lower() == "unix:":
        path = rest[5:].strip()
        if not path.startswith("/"):
            raise RouteError(f"{where}: {original!r}: the LMTP socket must be an absolute path, "
                             f"as in lmtp:unix:/run/dovecot/lmtp")
        return Route("lmtp", mailer="lmtp", socket=path)
    hosts = _targets(rest, where, original)
    if any(not t.bracketed or t.port is None for t in hosts):
        raise RouteError(f"{where}: {original!r}: write lmtp:unix:/path or lmtp:[host]:port (LMTP has no "
                         f"standard port, RFC 2033 §5, and its host is not looked up by MX)")
    return Route("lmtp", hosts[0].host, hosts[0].port, hosts=hosts, mailer="lmtp")


def parse_target(text: str, where: str) -> Route:
    target = text.strip()
    mailer, colon, rest = target.partition(":")
    mailer = mailer.lower()
    if target.lower() in ("local", "local:") or (colon and mailer == "local"):
        return Route("local", mailer="local")
    if target.lower() in ("discard", "discard:") or (colon and mailer == "discard"):
        return Route("discard", mailer="discard")
    if colon and mailer == "error":
        return Route("error", reply=_error_reply(rest, where, text), mailer="error")
    if colon and mailer == "lmtp":
        return _lmtp_route(rest, where, text)
    if colon and mailer in SMTP_MAILERS:
        target = rest
    elif colon and not target.startswith("[") and not rest[:1].isdigit() and "." not in mailer:
        raise RouteError(f"{where}: unknown mailer {mailer!r} in {text!r}; use esmtp:, smtp:, relay:, "
                         f"local, lmtp:, error: or discard:")
    else:
        mailer = "esmtp"
    hosts = _targets(target.strip(), where, text)
    first = hosts[0]
    return Route("direct" if first.bracketed else "mx", first.host, first.port, hosts=hosts, mailer=mailer)


def load_routes(path: Path) -> dict[str, Route]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise RouteError(f"{path}: cannot read the route file: {err.strerror}") from None
    table: dict[str, Route] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise RouteError(f"{where}: expected 'DOMAIN TARGET', got {line!r}")
        key, target = parts[0].lower().rstrip(".") or ".", parts[1]
        if key in table:
            raise RouteError(f"{where}: {key} is routed twice; keep one line")
        route = parse_target(target, where)
        table[key] = replace(route, key=key)
    return table


def lookup(table: dict[str, Route], domain: str) -> Route | None:
    """The route for ``domain``: exact, then ``.parent`` from the closest, then ``.``."""
    domain = domain.lower().rstrip(".")
    if domain in table:
        return table[domain]
    labels = domain.split(".")
    for i in range(len(labels)):
        key = "." + ".".join(labels[i:]) if i else "." + domain
        if key in table:
            return table[key]
    return table.get(".")


class RouteTable(ReloadingFile[dict]):
    """The route file in use, re-read when it changes (one stat per call)."""

    def __init__(self, path: Path | str | None):
        super().__init__(path, load_routes, {}, RouteError, lambda err: log.event(
            40, None, routes="reload failed", reason=str(err), kept="previous routes"))

    def route(self, domain: str) -> Route | None:
        return lookup(self.current(), domain)


async def next_hops(route: Route | None, domain: str, resolver: Resolver, default_port: int) -> list[Hop]:
    """Every address to try for ``domain`` under ``route``, in order: the route's hosts in the
    order listed, each host's MX records by preference, then A, AAAA. A host that has no
    address, or whose lookup fails, is skipped while another host remains."""
    route = route or DNS_ROUTE
    targets = route.targets or (Target(domain, route.port, False),)
    hops: list[Hop] = []
    failure: DNSError | None = None
    base = 0
    for target in targets:
        port = target.port or default_port
        try:
            if target.bracketed:
                host = target.host
                addrs = await resolver.addresses(host[5:] if host[:5].lower() == "ipv6:" else host)
                if not addrs:
                    raise DNSError(f"Host {host} has no address", temporary=False, status="5.1.2")
                found = [Hop(f"[{host}]", a, port, base) for a in addrs]
            else:
                mail_hosts: list[MailHost] = await resolver.mail_hosts(target.host)
                found = [Hop(h.name, a, port, base + h.preference, not h.implicit, getattr(h, "secure", False))
                         for h in mail_hosts for a in h.addresses]
        except DNSError as err:
            # a temporary failure of any host wins over a permanent one: the mail waits
            if failure is None or (err.temporary and not failure.temporary):
                failure = err
            found = []
        hops += found
        base = max([h.preference for h in hops], default=base) + 1
    if not hops:
        raise failure or DNSError(f"No host to deliver to for {domain}", temporary=False, status="5.4.4")
    return hops


def drop_self(hops: list[Hop], own_names: frozenset[str], own_addrs: frozenset[tuple[str, int]]) -> list[Hop]:
    """RFC 5321 §5.1: when this server is one of the MX hosts, only hosts of a lower preference
    (more preferred) may be used; the others would hand the mail back to us. ``own_addrs`` are
    (address, port) pairs we listen on. Returns the usable hops ([] means the mail would loop)."""
    mine = [h.preference for h in hops
            if h.name.lower().rstrip(".") in own_names or (h.addr, h.port) in own_addrs]
    if not mine:
        return hops
    limit = min(mine)
    return [h for h in hops if h.preference < limit]

