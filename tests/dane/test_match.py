"""mailward.dane.match_chain: the truth table over usages × selectors × matching types with
certificates from mailward's own CA, the name and date rules that separate DANE-EE from
DANE-TA (RFC 7672 §3.1.1, §3.2), and the verdicts on the chains real STARTTLS receivers send
(their TLSA records read through the validating Unbound)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailward import dane
from mailward.ca import authority
from mailward.dns import SecureResolver
from tests.dane.conftest import HOSTS
from tests.dane.starttls import peer_chain

COMBOS = list(itertools.product((2, 3), (0, 1), (0, 1, 2)))


def flipped(record: dane.TLSA) -> dane.TLSA:
    return dane.TLSA(record.usage, record.selector, record.mtype, bytes([record.data[0] ^ 1]) + record.data[1:])


@pytest.mark.parametrize("usage,selector,mtype", COMBOS)
def test_truth_table(world, usage, selector, mtype):
    leaf, ca = world.chains["good"]
    record = dane.tlsa_for(ca if usage == 2 else leaf, usage, selector, mtype)
    assert len(record.data) == {0: len(record.data), 1: 32, 2: 64}[mtype]
    got = dane.match_chain([record], [leaf, ca], ["ee-good.dane.test"])
    assert (got.ok, got.usage, got.matched, got.failure) == (True, usage, record, "")
    bad = dane.match_chain([flipped(record)], [leaf, ca], ["ee-good.dane.test"])
    assert (bad.ok, bad.failure) == (False, "validation-failure")


@pytest.mark.parametrize("usage,selector,mtype", COMBOS)
def test_the_other_certificate_does_not_match(world, usage, selector, mtype):
    """A DANE-EE record of the CA, or a DANE-TA record of the leaf, is no match."""
    leaf, ca = world.chains["good"]
    record = dane.tlsa_for(leaf if usage == 2 else ca, usage, selector, mtype)
    assert not dane.match_chain([record], [leaf, ca], ["ee-good.dane.test"]).ok


@pytest.mark.parametrize("usage", (0, 1))
def test_pkix_usages_are_unusable(world, usage):
    leaf, ca = world.chains["good"]
    record = dane.tlsa_for(ca if usage == 0 else leaf, usage, 1, 1)
    assert not record.usable
    got = dane.match_chain([record], [leaf, ca], ["ee-good.dane.test"])
    assert (got.ok, got.failure) == (False, "tlsa-invalid")


def test_unknown_parameters_and_bad_digest_lengths_are_unusable():
    assert not dane.TLSA(3, 2, 1, b"\0" * 32).usable
    assert not dane.TLSA(3, 1, 3, b"\0" * 32).usable
    assert not dane.TLSA(4, 1, 1, b"\0" * 32).usable
    assert not dane.TLSA(3, 1, 1, b"\0" * 31).usable
    assert not dane.TLSA(3, 1, 2, b"\0" * 32).usable
    assert not dane.TLSA(3, 1, 0, b"").usable
    assert dane.TLSA(2, 0, 2, b"\0" * 64).usable


def test_text_form():
    record = dane.TLSA.parse("3 1 1 AB12 cd34")
    assert record == dane.TLSA(3, 1, 1, bytes.fromhex("ab12cd34"))
    assert str(record) == "3 1 1 ab12cd34" and repr(record) == "TLSA(3 1 1 ab12cd34)"
    with pytest.raises(ValueError):
        dane.TLSA.parse("3 1 1")


def test_dane_ee_ignores_names_and_dates_dane_ta_does_not(world):
    for kind, ta_failure in (("wrongname", "certificate-host-mismatch"), ("expired", "validation-failure"),
                             ("expiredright", "validation-failure")):
        leaf, ca = world.chains[kind]
        ee = dane.match_chain([dane.tlsa_for(leaf, 3, 1, 1)], [leaf, ca], ["ee-good.dane.test"])
        assert ee.ok and ee.usage == 3, kind
        ta = dane.match_chain([dane.tlsa_for(ca, 2, 0, 1)], [leaf, ca], ["ee-good.dane.test"])
        assert (ta.ok, ta.failure) == (False, ta_failure), kind


def test_dane_ta_names(world):
    leaf, ca = world.chains["good"]          # *.dane.test
    record = dane.tlsa_for(ca, 2, 1, 1)
    for names, ok in ((["mx.dane.test"], True), (["MX.Dane.Test."], True), (["a.b.dane.test"], False),
                      (["dane.test"], False), (["elsewhere.example", "mx.dane.test"], True), ([], False)):
        assert dane.match_chain([record], [leaf, ca], names).ok is ok, names
    wrong, ca = world.chains["wrongname"]    # mx.elsewhere.example
    assert dane.match_chain([record], [wrong, ca], ["ee-good.dane.test", "mx.elsewhere.example"]).ok


def test_name_matching_rules():
    assert dane.name_matches("*.example.com", "mx.example.com")
    assert not dane.name_matches("*.example.com", "a.mx.example.com")
    assert not dane.name_matches("*.example.com", "example.com")
    assert not dane.name_matches("m*.example.com", "mx.example.com")
    assert not dane.name_matches("mx.*.com", "mx.example.com")
    assert dane.name_matches("MX.example.com.", "mx.EXAMPLE.com")


def test_subject_cn_only_without_dns_san(world, tmp_path):
    ca_cert, ca_key = authority.load_ca(world.certs / "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME,
                                                                                 "mx.dane.test")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(ca_key, authority.signature_hash(ca_key)))
    chain = [leaf.public_bytes(serialization.Encoding.DER), world.chains["good"][1]]
    record = dane.tlsa_for(world.chains["good"][1], 2, 0, 1)
    assert dane.match_chain([record], chain, ["mx.dane.test"]).ok
    assert dane.cert_names(leaf) == ["mx.dane.test"]


def test_trust_anchor_must_be_presented(world):
    leaf, ca = world.chains["good"]
    got = dane.match_chain([dane.tlsa_for(ca, 2, 1, 1)], [leaf], ["mx.dane.test"])
    assert (got.ok, got.failure) == (False, "validation-failure")


def test_a_self_signed_leaf_is_not_its_own_trust_anchor(world):
    (self_cert,) = world.chains["self"]
    assert not dane.match_chain([dane.tlsa_for(self_cert, 2, 0, 1)], [self_cert], ["ee-self.dane.test"]).ok
    assert dane.match_chain([dane.tlsa_for(self_cert, 3, 0, 1)], [self_cert], ["x.example"]).ok


def test_one_matching_record_of_many_is_enough(world):
    leaf, ca = world.chains["good"]
    records = [flipped(dane.tlsa_for(leaf, 3, 1, 1)), dane.TLSA(1, 1, 1, b"\0" * 32), dane.tlsa_for(ca, 2, 1, 2)]
    got = dane.match_chain(records, [leaf, ca], ["mx.dane.test"])
    assert got.ok and got.usage == 2


def test_bad_peer_data_is_a_verdict_not_an_exception(world):
    record = dane.tlsa_for(world.chains["good"][0], 3, 1, 1)
    assert dane.match_chain([record], [b"not a certificate"], ["mx.dane.test"]).failure == "validation-failure"
    assert dane.match_chain([record], [], ["mx.dane.test"]).failure == "validation-failure"


def test_now_is_the_callers(world):
    leaf, ca = world.chains["good"]
    record = dane.tlsa_for(ca, 2, 1, 1)
    later = dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc)
    assert not dane.match_chain([record], [leaf, ca], ["mx.dane.test"], now=later).ok
    assert dane.match_chain([dane.tlsa_for(leaf, 3, 1, 1)], [leaf, ca], ["mx.dane.test"], now=later).ok


@pytest.mark.parametrize("host", HOSTS, ids=[h.name for h in HOSTS])
def test_live_receivers(world, host):
    """TLSA from DNS (through Unbound), the chain from the receiver's STARTTLS handshake."""
    resolver = SecureResolver([world.resolver], timeout=5)
    lookup = asyncio.run(dane.tlsa_lookup(resolver, host.fqdn, world.port))
    assert lookup.state == "secure" and lookup.tls_required
    chain = peer_chain(host.addr, world.port)
    got = dane.match_chain(lookup.usable, chain, [host.fqdn])
    assert got.ok is host.verdict, got.reason
