"""Routing: where mail for a recipient domain goes (sendmail's mailertable, then DNS).

The route file (``delivery.route_file``) has one route a line, ``#`` comments::

    example.com         [smarthost.example.net]:2525   # that host and port, no MX lookup
    .example.com        relay.example.net              # subdomains: MX lookup of relay.example.net
    lists.example.org   local                          # deliver here (Maildir)
    .                   [smarthost.example.net]        # the default for every other domain

The left side is a domain (exact match) or ``.domain`` (any subdomain of it); ``.`` alone is the
default. The first match wins in this order: the domain, then ``.parent`` for each parent
from the closest, then ``.``. sendmail's mailer prefixes ``esmtp:``, ``smtp:``, ``relay:``
are accepted and ignored; ``local:`` and ``local`` mean local delivery. A bracketed host
is used as is (its A/AAAA, or an address literal); a bare host is looked up as a mail
domain (its MX records, RFC 5321 §5.1). Without a route, the recipient's own domain is
looked up in DNS. Ports default to ``delivery.smtp_port``.

Failure behaviour: :func:`load_routes` raises :class:`RouteError` naming ``file:line`` and the
fix; :func:`next_hops` raises :class:`mailward.dns.DNSError` (temporary → defer, permanent →
bounce). :class:`RouteTable` re-reads the file when it changes and keeps the previous table
(logging why) when the new one is broken.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailward import log
from mailward.fsutil import ReloadingFile
from mailward.dns import MailHost, Resolver


class RouteError(Exception):
    pass


@dataclass(frozen=True)
class Route:
    kind: str            # "local", "mx" (look up MX of host), "direct" ([host]: its addresses)
    host: str = ""
    port: int | None = None
    key: str = ""        # the route file key that matched ("" for DNS)


DNS_ROUTE = Route("mx")


@dataclass(frozen=True)
class Hop:
    """One address to try, in order: ``name`` is sendmail's ${server_name}, ``addr`` its ${server_addr}."""
    name: str
    addr: str
    port: int
    preference: int = 0

    @property
    def relay(self) -> str:
        """As sendmail logs a relay: ``mx.example. [192.0.2.1]``."""
        return f"{self.name}. [{self.addr}]" if self.name != self.addr else f"[{self.addr}]"


def parse_target(text: str, where: str) -> Route:
    target = text.strip()
    mailer, colon, rest = target.partition(":")
    if colon and mailer.lower() in ("esmtp", "smtp", "relay", "local") and not target.startswith("["):
        if mailer.lower() == "local":
            return Route("local")
        target = rest
    if target.lower() == "local":
        return Route("local")
    if target.startswith("["):
        host, close, rest = target[1:].partition("]")
        if not close or not host:
            raise RouteError(f"{where}: unbalanced brackets in {text!r}; write [host] or [host]:port")
        port = None
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit() or not 0 < int(rest[1:]) < 65536:
                raise RouteError(f"{where}: bad port in {text!r}; write [host]:port with 1-65535")
            port = int(rest[1:])
        return Route("direct", host, port)
    host, colon, port_text = target.rpartition(":") if ":" in target else (target, "", "")
    if colon:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise RouteError(f"{where}: bad port in {text!r}")
        return Route("mx", host, int(port_text))
    if not target or any(c in target for c in " \t[]@"):
        raise RouteError(f"{where}: {text!r} is not a host; write [host]:port, host or local")
    return Route("mx", target)


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
        table[key] = Route(route.kind, route.host, route.port, key)
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
    """Every address to try for ``domain`` under ``route``, in order (MX preference, then A, AAAA)."""
    route = route or DNS_ROUTE
    port = route.port or default_port
    if route.kind == "direct":
        addrs = await resolver.addresses(route.host)
        if not addrs:
            from mailward.dns import DNSError
            raise DNSError(f"Host {route.host} has no address", temporary=False, status="5.1.2")
        return [Hop(route.host, a, port) for a in addrs]
    hosts: list[MailHost] = await resolver.mail_hosts(route.host or domain)
    return [Hop(h.name, a, port, h.preference) for h in hosts for a in h.addresses]


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

