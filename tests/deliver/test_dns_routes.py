"""The resolver seam and routing against a real DNS server (NSD on loopback)."""

from __future__ import annotations

import asyncio
import random

import pytest

from mailward.deliver import routes
from mailward.dns import DNSError, Resolver, parse_server


def run(coro):
    return asyncio.run(coro)


def test_mx_in_preference_order(dns_server):
    hosts = run(Resolver([dns_server], timeout=3).mail_hosts("order.test"))
    assert [(h.name, h.preference, h.addresses) for h in hosts] == [
        ("mx1.order.test", 10, ("127.0.0.11",)), ("mx2.order.test", 20, ("127.0.0.12",))]


def test_equal_preference_is_randomised(dns_server):
    seen = set()
    resolver = Resolver([dns_server], timeout=3, rng=random.Random(1))
    for _ in range(12):
        seen.add(tuple(h.name for h in run(resolver.mail_hosts("same.test"))))
    assert seen == {("a.same.test", "b.same.test"), ("b.same.test", "a.same.test")}


def test_no_mx_means_the_domains_address(dns_server):
    (host,) = run(Resolver([dns_server], timeout=3).mail_hosts("nomx.test"))
    assert host.name == "nomx.test" and host.addresses == ("127.0.0.41",)


def test_null_mx_is_permanent_556(dns_server):
    with pytest.raises(DNSError) as info:
        run(Resolver([dns_server], timeout=3).mail_hosts("null.test"))
    assert not info.value.temporary and info.value.code == 556 and info.value.status == "5.1.10"


def test_nxdomain_and_nodata_are_permanent(dns_server):
    for name in ("nosuch.test", "nodata.test"):
        with pytest.raises(DNSError) as info:
            run(Resolver([dns_server], timeout=3).mail_hosts(name))
        assert not info.value.temporary, name


def test_servfail_is_temporary(dns_server):
    with pytest.raises(DNSError) as info:
        run(Resolver([dns_server], timeout=3).mail_hosts("x.broken.test"))
    assert info.value.temporary and info.value.status.startswith("4.")


def test_unreachable_resolver_is_temporary():
    with pytest.raises(DNSError) as info:
        run(Resolver(["127.0.0.1:9"], timeout=0.5).mail_hosts("order.test"))
    assert info.value.temporary


def test_parse_server():
    assert parse_server("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_server("[::1]:54") == ("::1", 54)
    with pytest.raises(ValueError):
        parse_server("dns.example")


def test_route_file_format_and_lookup_order(tmp_path):
    f = tmp_path / "routes"
    f.write_text("# test routes\nexample.com  [smart.example.net]:2525\n.example.com relay.example.net\n"
                 "lists.example.org  local\nold.example esmtp:[192.0.2.1]\n.  [default.example]\n")
    table = routes.load_routes(f)
    found = routes.lookup(table, "example.com")
    assert (found.kind, found.host, found.port, found.key) == ("direct", "smart.example.net", 2525, "example.com")
    assert found.targets == (routes.Target("smart.example.net", 2525, True),)
    assert routes.lookup(table, "a.b.example.com").host == "relay.example.net"
    assert routes.lookup(table, "a.b.example.com").kind == "mx"
    assert routes.lookup(table, "LISTS.example.org.").kind == "local"
    old = routes.lookup(table, "old.example")
    assert (old.kind, old.host, old.port, old.key, old.text) == ("direct", "192.0.2.1", None, "old.example",
                                                                 "esmtp:[192.0.2.1]")
    assert routes.lookup(table, "elsewhere.net").host == "default.example"


@pytest.mark.parametrize("line, fragment", [("a.example [x", "unbalanced"), ("a.example [x]:99999", "bad port"),
                                             ("a.example", "expected 'DOMAIN TARGET'")])
def test_route_file_errors_name_file_and_line(tmp_path, line, fragment):
    f = tmp_path / "routes"
    f.write_text("# first\n" + line + "\n")
    with pytest.raises(routes.RouteError) as info:
        routes.load_routes(f)
    assert f"{f}:2:" in str(info.value) and fragment in str(info.value)


def test_next_hops_direct_route_and_mx(dns_server):
    resolver = Resolver([dns_server], timeout=3)
    hops = run(routes.next_hops(routes.Route("direct", "127.0.0.9", 2526), "x.example", resolver, 25))
    # a bracketed route keeps its brackets as ${server_name} (sendmail 8.17)
    assert hops == [routes.Hop("[127.0.0.9]", "127.0.0.9", 2526)]
    assert hops[0].relay == "[127.0.0.9] [127.0.0.9]" and hops[0].sni == ""
    hops = run(routes.next_hops(None, "order.test", resolver, 2525))
    assert [(h.addr, h.port) for h in hops] == [("127.0.0.11", 2525), ("127.0.0.12", 2525)]
    hops = run(routes.next_hops(routes.Route("mx", "order.test"), "other.example", resolver, 25))
    assert hops[0].name == "mx1.order.test"


def test_drop_self_keeps_only_more_preferred_mx_hosts():
    hops = [routes.Hop("mx1.example", "192.0.2.1", 25, 10), routes.Hop("me.example", "192.0.2.2", 25, 20),
            routes.Hop("mx3.example", "192.0.2.3", 25, 30)]
    assert routes.drop_self(hops, frozenset({"other.example"}), frozenset()) == hops
    assert routes.drop_self(hops, frozenset({"me.example"}), frozenset()) == hops[:1]
    assert routes.drop_self(hops, frozenset(), frozenset({("192.0.2.1", 25)})) == []   # we are the best MX
