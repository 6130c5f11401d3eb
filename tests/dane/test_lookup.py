"""DNSSEC status and TLSA lookups against a real validating Unbound (tests/dane/conftest.py):
what mailward.dns reports as secure, and each state of mailward.dane.tlsa_lookup."""

from __future__ import annotations

import asyncio

import pytest

from mailward import dane
from mailward.dns import DNSError, Resolver, SecureResolver


def run(coro):
    return asyncio.run(coro)


@pytest.fixture()
def resolver(world) -> SecureResolver:
    return SecureResolver([world.resolver], timeout=5)


def test_mail_hosts_report_the_mx_rrsets_ad_bit(world, resolver):
    hosts = run(resolver.mail_hosts("dane.test"))
    assert [(h.name, h.addresses, h.secure) for h in hosts] == [("ee-good.dane.test", ("127.0.2.1",), True)]
    implicit = run(resolver.mail_hosts("nomx.sub.dane.test"))
    assert implicit[0].implicit and implicit[0].secure
    plain = run(resolver.mail_hosts("plain.test"))
    assert [(h.name, h.secure) for h in plain] == [("mx.plain.test", False)]


def test_a_resolver_without_dnssec_never_reports_secure(world):
    plain = Resolver([world.resolver], timeout=5)
    assert run(plain.mail_hosts("dane.test"))[0].secure is False
    assert run(plain.address_lookup("ee-good.dane.test")).secure is False
    assert run(plain.addresses("ee-good.dane.test")) == ("127.0.2.1",)   # the old call, unchanged


def test_secure_resolver_needs_servers():
    with pytest.raises(ValueError):
        SecureResolver([])


def test_address_lookup_status_and_cname(resolver):
    got = run(resolver.address_lookup("ee-good.dane.test"))
    assert (got.addresses, got.secure, got.canonical) == (("127.0.2.1",), True, "ee-good.dane.test")
    alias = run(resolver.address_lookup("alias.dane.test"))
    assert (alias.addresses, alias.secure, alias.canonical) == (("127.0.2.1",), True, "ee-good.dane.test")
    assert run(resolver.address_lookup("mx.plain.test")).secure is False
    assert run(resolver.address_lookup("outside.dane.test")).secure is False


def test_bogus_answers_are_temporary_servfail(resolver):
    with pytest.raises(DNSError) as err:
        run(resolver.mail_hosts("bogus.test"))
    assert err.value.temporary and err.value.servfail and err.value.code == 451
    assert "SERVFAIL" in str(err.value)


def test_secure_tlsa_records(world, resolver):
    got = run(dane.tlsa_lookup(resolver, "ee-good.dane.test", world.port))
    assert got.state == "secure" and got.failure == ""
    assert got.owner == f"_{world.port}._tcp.ee-good.dane.test"
    assert [(r.usage, r.selector, r.mtype) for r in got.usable] == [(3, 1, 1)]
    assert got.tls_required and got.authenticate


def test_only_unusable_records_still_require_tls(world, resolver):
    got = run(dane.tlsa_lookup(resolver, "unusable.dane.test", world.port))
    assert got.state == "secure" and len(got.records) == 2 and got.usable == ()
    assert got.tls_required and not got.authenticate
    assert got.failure == "tlsa-invalid"


def test_secure_denial_is_none(world, resolver):
    got = run(dane.tlsa_lookup(resolver, "notlsa.dane.test", world.port))
    assert (got.state, got.records, got.tls_required) == ("none", (), False)


def test_unsigned_zone_is_insecure(world, resolver):
    got = run(dane.tlsa_lookup(resolver, "mx.plain.test", world.port))
    assert got.state == "insecure" and not got.tls_required
    assert "not DNSSEC-signed" in got.reason


def test_cname_to_an_unsigned_zone_is_insecure(world, resolver):
    assert run(dane.tlsa_lookup(resolver, "outside.dane.test", world.port)).state == "insecure"


def test_expired_zone_is_bogus(world, resolver):
    got = run(dane.tlsa_lookup(resolver, "mx.bogus.test", world.port))
    assert got.state == "bogus" and got.failure == "dnssec-invalid" and "SERVFAIL" in got.reason


def test_broken_tlsa_signature_is_bogus(world, resolver):
    got = run(dane.tlsa_lookup(resolver, "badtlsa.dane.test", world.port))
    assert got.state == "bogus" and got.failure == "dnssec-invalid"
    assert got.owner == f"_{world.port}._tcp.badtlsa.dane.test"


def test_cname_tries_the_expanded_name_first(world, resolver):
    got = run(dane.tlsa_lookup(resolver, "alias.dane.test", world.port))
    assert got.state == "secure" and got.owner == f"_{world.port}._tcp.ee-good.dane.test"


def test_cname_falls_back_to_the_original_name(world, resolver):
    got = run(dane.tlsa_lookup(resolver, "alias2.dane.test", world.port))
    assert got.state == "secure" and got.owner == f"_{world.port}._tcp.alias2.dane.test"


def test_unreachable_resolver_is_bogus_not_an_exception(world):
    from tests.dane.dnssec import free_port

    dead = SecureResolver([f"127.0.0.1:{free_port()}"], timeout=0.5)
    got = run(dane.tlsa_lookup(dead, "ee-good.dane.test", world.port))
    assert got.state == "bogus" and "no answer" in got.reason


def test_reference_names_add_the_expanded_name(world, resolver):
    got = run(dane.tlsa_lookup(resolver, "alias.dane.test", world.port))
    assert dane.reference_names("Alias.dane.test.", "dane.test", got) == [
        "alias.dane.test", "dane.test", "ee-good.dane.test"]
    assert dane.reference_names("mx.example", "", None) == ["mx.example"]


def test_a_bogus_aaaa_beside_a_good_a_is_bogus_not_insecure(world, resolver):
    got = run(resolver.address_lookup("badaaaa.dane.test"))
    assert got.addresses == ("127.0.2.23",) and not got.secure and "SERVFAIL" in got.failure
    assert run(resolver.addresses("badaaaa.dane.test")) == ("127.0.2.23",)   # as before
    lookup = run(dane.tlsa_lookup(resolver, "badaaaa.dane.test", world.port))
    assert lookup.state == "bogus" and lookup.failure == "dnssec-invalid"
