"""An active attacker against mailward's DANE code (RFC 7672, RFC 7671, RFC 6698).

DNS: a lab of its own (real NSD + validating Unbound, tests/dane/dnssec.py) with a signed
``attack.test`` (CNAME loop, a TLSA RRset too big for UDP, usable and unusable records mixed,
TLSA owners that are CNAMEs, secure NODATA/NXDOMAIN, a denial whose NSEC was changed after
signing) and an unsigned ``open.test``; between mailward and Unbound, a proxy
(tests/dane/proxy.py) that drops or fails chosen queries, strips AD or truncates UDP answers.
The rule: nothing an attacker does to DNS may turn ``secure`` into ``insecure`` or ``none``;
what cannot be answered is ``bogus`` (the delivery defers).

Matching: certificate chains made to order (tests/dane/certs.py) in odd orders, with the
trust anchor absent, with constraints broken (basic constraints, path length, key usage,
name constraints, unknown critical extensions, dates), wildcard and IDN names, digest
agility (RFC 7671 §9), malformed records and certificates. The rule: never an exception,
never a match that OpenSSL's DANE code would refuse.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import dns.flags
import dns.message
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailward import dane
from mailward.dns import Resolver, SecureResolver
from tests.dane import certs
from tests.dane.dnssec import DnssecLab, Zone, missing_tools
from tests.dane.proxy import DnsProxy


def run(coro):
    return asyncio.run(coro)


# ---- the certificates ------------------------------------------------------------------------

ROOT = certs.make("Attack Root", ca=True)
INTER = certs.make("Attack Intermediate", issuer=ROOT, ca=True)
LEAF = certs.make("mx.victim.example", issuer=INTER, sans=["mx.victim.example"])
CHAIN = [LEAF.der, INTER.der, ROOT.der]
NAMES = ["mx.victim.example", "victim.example"]


def ta(cert: certs.Cert, selector: int = 0, mtype: int = 1) -> dane.TLSA:
    return dane.tlsa_for(cert.der, 2, selector, mtype)


def ee(cert: certs.Cert, selector: int = 1, mtype: int = 1) -> dane.TLSA:
    return dane.tlsa_for(cert.der, 3, selector, mtype)


# ---- DNS: the lab ----------------------------------------------------------------------------

GOOD = str(ee(LEAF))
BIG = [f"_25._tcp.big TLSA 3 0 0 {bytes([i]) .hex() * 400}" for i in range(40)]
MIXED = ["0 0 1 " + "11" * 32, "1 1 1 " + "22" * 32, "3 2 1 " + "44" * 32, "3 1 9 " + "55" * 32,
         "255 1 1 " + "66" * 32, "3 0 0 " + "77" * 8, GOOD]
SHORT = "3 1 1 " + "33" * 31      # a SHA2-256 digest one byte short
NSEC_OLD = "nsy.attack.test. A AAAA RRSIG NSEC"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    missing = missing_tools()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/install-test-deps)")
    records = "\n".join([
        "mx A 127.0.3.1", "mx AAAA ::1", f"_25._tcp.mx TLSA {GOOD}",
        "loop1 CNAME loop2", "loop2 CNAME loop1", f"_25._tcp.loop1 TLSA {GOOD}",
        "big A 127.0.3.2", *BIG, f"_25._tcp.big TLSA {GOOD}",
        "mixed A 127.0.3.3", *[f"_25._tcp.mixed TLSA {m}" for m in MIXED],
        "short A 127.0.3.9", f"_25._tcp.short TLSA {SHORT}", f"_25._tcp.short TLSA {GOOD}",
        "tlsaalias A 127.0.3.4", "_25._tcp.tlsaalias CNAME _25._tcp.mx.open.test.",
        "tlsaalias2 A 127.0.3.5", "_25._tcp.tlsaalias2 CNAME _25._tcp.mx",
        "nodata A 127.0.3.6", '_25._tcp.nodata TXT "not a TLSA record"',
        "nsx A 127.0.3.7", "nsx AAAA ::7", "nsy A 127.0.3.8", "nsy AAAA ::8",
    ]) + "\n"
    signed = Zone("attack.test", records, broken="tamper",
                  tamper=((NSEC_OLD, "nsy.attack.test. A AAAA TXT RRSIG NSEC"),))
    plain = Zone("open.test", f"mx A 127.0.3.20\n_25._tcp.mx TLSA {GOOD}\n", signed=False)
    lab = DnssecLab([signed, plain], tmp_path_factory.mktemp("attack") / "dns", port53=False)
    lab.start()
    yield lab
    lab.stop()


@pytest.fixture()
def resolver(lab) -> SecureResolver:
    return SecureResolver([f"127.0.0.1:{lab.port}"], timeout=5)


def proxied(lab, rule, timeout: float = 1.0):
    proxy = DnsProxy(lab.port, rule).start()
    return proxy, SecureResolver([proxy.address], timeout=timeout)


def test_a_cname_loop_is_bogus_not_an_exception(resolver):
    got = run(dane.tlsa_lookup(resolver, "loop1.attack.test"))
    assert got.state == "bogus" and got.failure == "dnssec-invalid", got


def test_a_tlsa_rrset_too_big_for_udp_comes_over_tcp(lab):
    proxy, resolver = proxied(lab, lambda q, t: None, timeout=5)
    try:
        got = run(dane.tlsa_lookup(resolver, "big.attack.test"))
    finally:
        proxy.stop()
    assert got.state == "secure" and len(got.records) == 41
    assert ("_25._tcp.big.attack.test", "TLSA", "tcp") in proxy.seen     # TC, then TCP
    assert dane.match_chain(got.usable, CHAIN, NAMES).ok


def test_usable_and_unusable_records_mixed(resolver):
    got = run(dane.tlsa_lookup(resolver, "mixed.attack.test"))
    assert got.state == "secure" and len(got.records) == len(MIXED)
    # an RRset has no order (RFC 2181 §5): Unbound may hand the records out in any order
    assert sorted(str(r) for r in got.usable) == sorted([MIXED[-2], GOOD]) and got.authenticate and got.failure == ""
    assert dane.match_chain(got.records, CHAIN, NAMES).ok      # the unusable ones are ignored


def test_a_record_with_a_wrong_digest_length_never_downgrades(lab):
    """dnspython 2.9 refuses the whole answer (FormError; over UDP it ignores it and waits for
    another), so the RRset cannot be read: bogus, the delivery defers (fails closed, where
    RFC 7672 §3.1.3 would ignore just that record; docs/dane.md, limits). Older dnspython
    reads it: the short record is unusable and the good one is used."""
    resolver = SecureResolver([f"127.0.0.1:{lab.port}"], timeout=1)
    got = run(dane.tlsa_lookup(resolver, "short.attack.test"))
    if got.state == "secure":
        assert [str(r) for r in got.usable] == [GOOD] and len(got.records) == 2
    else:
        assert got.state == "bogus" and got.failure == "dnssec-invalid", got


def test_tlsa_owner_as_cname(resolver):
    """RFC 7671 §7: a TLSA RRset reached through a CNAME is as secure as the whole chain."""
    into_unsigned = run(dane.tlsa_lookup(resolver, "tlsaalias.attack.test"))
    assert into_unsigned.state == "insecure"
    signed = run(dane.tlsa_lookup(resolver, "tlsaalias2.attack.test"))
    assert signed.state == "secure" and [str(r) for r in signed.usable] == [GOOD]


def test_secure_nodata_and_nxdomain_are_none(resolver):
    nodata = run(dane.tlsa_lookup(resolver, "nodata.attack.test"))
    nxdomain = run(dane.tlsa_lookup(resolver, "nsy.attack.test"))
    assert (nodata.state, nxdomain.state) == ("none", "none")


def test_a_denial_with_a_broken_signature_is_bogus(resolver):
    got = run(dane.tlsa_lookup(resolver, "nsx.attack.test"))
    assert got.state == "bogus" and got.failure == "dnssec-invalid"


def test_unsigned_zone_stays_insecure(resolver):
    assert run(dane.tlsa_lookup(resolver, "mx.open.test")).state == "insecure"


@pytest.mark.parametrize("rule,what,big_state", [
    (lambda q, t: {"drop"} if q.question[0].rdtype == 28 else None, "AAAA dropped", "bogus"),
    (lambda q, t: {"servfail"} if q.question[0].rdtype == 28 else None, "AAAA SERVFAIL", "bogus"),
    (lambda q, t: {"drop"} if q.question[0].rdtype == 52 else None, "TLSA dropped", "bogus"),
    (lambda q, t: {"servfail"} if q.question[0].rdtype == 52 else None, "TLSA SERVFAIL", "bogus"),
    (lambda q, t: {"drop"} if q.question[0].rdtype == 1 else None, "A dropped", "bogus"),
    (lambda q, t: {"tc"} if t == "udp" else {"drop"}, "UDP truncated, TCP dropped", "bogus"),
    (lambda q, t: {"drop"} if q.question[0].rdtype == 52 and t == "tcp" else None,
     "TLSA over TCP dropped", "secure"),
], ids=["aaaa-drop", "aaaa-servfail", "tlsa-drop", "tlsa-servfail", "a-drop", "tc-no-tcp", "tcp-tlsa-drop"])
def test_failed_queries_are_bogus_never_insecure(lab, rule, what, big_state):
    """``mx`` (small answers) and ``big`` (its TLSA RRset needs TCP) through the attacker."""
    proxy, resolver = proxied(lab, rule)
    try:
        started = time.monotonic()
        big = run(dane.tlsa_lookup(resolver, "big.attack.test"))
        mx = run(dane.tlsa_lookup(resolver, "mx.attack.test"))
    finally:
        proxy.stop()
    assert big.state == "bogus" and big.failure == "dnssec-invalid", (what, big)
    assert mx.state == big_state, (what, mx)
    assert time.monotonic() - started < 8


def test_truncated_udp_falls_back_to_tcp(lab):
    proxy, resolver = proxied(lab, lambda q, t: {"tc"} if t == "udp" else None)
    try:
        got = run(dane.tlsa_lookup(resolver, "mx.attack.test"))
    finally:
        proxy.stop()
    assert got.state == "secure" and {t for *_, t in proxy.seen} == {"udp", "tcp"}


def test_a_resolver_that_strips_ad_is_found_by_validates(lab, resolver):
    """Stripping AD looks, answer by answer, like an unsigned zone: DANE becomes 'insecure'.
    No single lookup can tell; Resolver.validates() can, at startup (docs/dane.md)."""
    proxy, stripped = proxied(lab, lambda q, t: {"strip-ad"})
    try:
        assert run(dane.tlsa_lookup(stripped, "mx.attack.test")).state == "insecure"
        assert run(stripped.validates("attack.test")) is False
    finally:
        proxy.stop()
    assert run(resolver.validates("attack.test")) is True
    assert run(resolver.validates("open.test")) is False       # unsigned: no AD
    from tests.dane.dnssec import free_port
    assert run(SecureResolver([f"127.0.0.1:{free_port()}"], timeout=0.5).validates()) is False


# ---- DNS: the attacker between the validating resolver and the authoritative server ---------

ONPATH = ("ok", "strip", "fakenx", "fakenodata", "forged", "fakeaaaa", "fakecname")


def _onpath_rewrite(query, response):
    """What an attacker on the wire to NSD does to the answers about NAME.path.test."""
    import dns.rcode
    import dns.rdatatype
    import dns.rrset
    q = query.question[0]
    name, rdtype = q.name.to_text(omit_final_dot=True), q.rdtype
    soa = dns.rrset.from_text("path.test.", 30, "IN", "SOA", "ns.path.test. hostmaster.path.test. 1 3600 600 86400 30")
    if rdtype == dns.rdatatype.TLSA and name == "_25._tcp.strip.path.test":
        response.answer = [r for r in response.answer if r.rdtype != dns.rdatatype.RRSIG]
    elif rdtype == dns.rdatatype.TLSA and name in ("_25._tcp.fakenx.path.test", "_25._tcp.fakenodata.path.test"):
        forged = dns.message.make_response(query)
        forged.flags |= dns.flags.AA
        if "fakenx" in name:
            forged.set_rcode(dns.rcode.NXDOMAIN)
        forged.authority = [soa]
        return forged
    elif rdtype == dns.rdatatype.TLSA and name == "_25._tcp.forged.path.test":
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.TLSA:
                fake = dns.rrset.from_text(rrset.name, rrset.ttl, "IN", "TLSA", "3 1 1 " + "ab" * 32)
                response.answer = [fake if r is rrset else r for r in response.answer]
                break
    elif rdtype == dns.rdatatype.AAAA and name == "fakeaaaa.path.test":
        forged = dns.message.make_response(query)
        forged.flags |= dns.flags.AA
        forged.set_rcode(dns.rcode.NXDOMAIN)
        forged.authority = [soa]
        return forged
    elif rdtype == dns.rdatatype.MX and name == "mxstrip.path.test":
        response.answer = [r for r in response.answer if r.rdtype != dns.rdatatype.RRSIG]
    elif rdtype == dns.rdatatype.MX and name == "mxgone.path.test":
        forged = dns.message.make_response(query)
        forged.flags |= dns.flags.AA
        forged.authority = [soa]
        return forged
    elif rdtype == dns.rdatatype.A and name == "fakecname.path.test":
        forged = dns.message.make_response(query)
        forged.flags |= dns.flags.AA
        forged.answer = [dns.rrset.from_text(q.name, 30, "IN", "CNAME", "mx.open.test.")]
        return forged
    return None


@pytest.fixture(scope="module")
def onpath(tmp_path_factory):
    """A signed path.test whose answers pass through an attacker before Unbound validates them."""
    if missing_tools():
        pytest.skip(f"not installed: {', '.join(missing_tools())}")
    lab_box: list[DnssecLab] = []
    proxy = DnsProxy(lambda: lab_box[0].nsd_port, lambda q, t: None, rewrite=_onpath_rewrite)
    records = "".join(f"{h} A 127.0.5.{i + 1}\n{h} AAAA ::{i + 1}\n_25._tcp.{h} TLSA {GOOD}\n"
                      for i, h in enumerate(ONPATH))
    records += "".join(f"{m} MX 10 ok\n{m} A 127.0.5.50\n" for m in ("mxok", "mxstrip", "mxgone"))
    zones = [Zone("path.test", records), Zone("open.test", "mx A 127.0.3.20\n", signed=False)]
    lab = DnssecLab(zones, tmp_path_factory.mktemp("onpath") / "dns", port53=False, stub_port=proxy.port)
    lab_box.append(lab)
    proxy.start()
    lab.start()
    yield SecureResolver([f"127.0.0.1:{lab.port}"], timeout=5)
    lab.stop()
    proxy.stop()


@pytest.mark.parametrize("host", ONPATH)
def test_an_attacker_before_the_validator_gets_bogus_not_insecure(onpath, host):
    """Signatures stripped, an unsigned NXDOMAIN or NODATA, a forged TLSA record, a forged
    AAAA denial, an unsigned CNAME slipped in: Unbound refuses each (SERVFAIL) and mailward
    says bogus (defer) — never insecure or none, which would let the mail go without DANE."""
    got = run(dane.tlsa_lookup(onpath, f"{host}.path.test"))
    if host == "ok":
        assert got.state == "secure" and [str(r) for r in got.usable] == [GOOD]
    else:
        assert got.state == "bogus" and got.failure == "dnssec-invalid", (host, got)


def test_an_attacker_cannot_unsign_or_remove_the_mx_rrset(onpath):
    """MX signatures stripped, or an unsigned "no MX" that would make the domain its own
    (implicit) MX host: a temporary failure (the mail waits), never an unsigned MX list."""
    from mailward.dns import DNSError
    hosts = run(onpath.mail_hosts("mxok.path.test"))
    assert [(h.name, h.secure, h.implicit) for h in hosts] == [("ok.path.test", True, False)]
    for domain in ("mxstrip.path.test", "mxgone.path.test"):
        with pytest.raises(DNSError) as err:
            run(onpath.mail_hosts(domain))
        assert err.value.temporary and err.value.servfail, domain


def test_ad_is_only_believed_from_named_servers():
    """A dnssec Resolver without servers would ask resolv.conf's resolvers: not trusted."""
    query = dns.message.make_query("mx.attack.test", "TLSA")
    answer = dns.message.make_response(query)
    answer.flags |= dns.flags.AD
    try:
        system = Resolver((), dnssec=True)
    except Exception:                      # no resolv.conf here: nothing to check
        pytest.skip("no system resolver configuration")
    assert system.ad_trusted is False and system._secure(answer) is False
    named = Resolver(["127.0.0.1:53"], dnssec=True)
    assert named.ad_trusted and named._secure(answer)
    assert Resolver(["127.0.0.1:53"]).ad_trusted is False


# ---- matching: chain shapes ------------------------------------------------------------------

@pytest.mark.parametrize("order", [
    [LEAF.der, ROOT.der, INTER.der],
    [LEAF.der, INTER.der, INTER.der, ROOT.der, LEAF.der],
    [LEAF.der, ROOT.der, ROOT.der, INTER.der],
], ids=["reversed", "duplicates", "root-twice"])
def test_chain_order_and_duplicates_do_not_matter(order):
    for record in (ta(ROOT), ta(INTER, 1, 2)):
        assert dane.match_chain([record], order, NAMES).ok


def test_trust_anchor_absent_from_the_chain():
    """RFC 7671 §5.2.2: a Full(0) DANE-TA record carries the trust anchor itself, so the
    server need not send it; a digest record needs it sent."""
    short = [LEAF.der, INTER.der]
    assert dane.match_chain([ta(ROOT, 0, 0)], short, NAMES).ok
    assert dane.match_chain([ta(ROOT, 1, 0)], short, NAMES).ok
    for mtype in (1, 2):
        assert not dane.match_chain([ta(ROOT, 0, mtype)], short, NAMES).ok
    other = certs.make("Other Root", ca=True)
    assert not dane.match_chain([ta(other, 0, 0), ta(other, 1, 0)], short, NAMES).ok
    junk = [dane.TLSA(2, 0, 0, b"\x30\x03\x02\x01\x00"), dane.TLSA(2, 1, 0, b"not a key")]
    assert dane.match_chain(junk, short, NAMES).failure == "validation-failure"
    from cryptography.hazmat.primitives.asymmetric import x25519
    odd_key = x25519.X25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert dane.match_chain(junk + [dane.TLSA(2, 1, 0, odd_key), ta(ROOT, 1, 0)], short, NAMES).ok


def test_a_leaf_that_is_a_ca():
    """A CA:TRUE leaf issued under the trust anchor is accepted when its keyUsage allows a TLS
    server (digitalSignature), refused when it allows only certificate signing (as OpenSSL);
    a self-signed CA leaf does not become its own DANE-TA trust anchor."""
    leaf = certs.make("mx.victim.example", issuer=INTER, ca=True, sans=["mx.victim.example"],
                      digital_signature=True)
    assert dane.match_chain([ta(ROOT)], [leaf.der, INTER.der, ROOT.der], NAMES).ok
    signer = certs.make("mx.victim.example", issuer=INTER, ca=True, sans=["mx.victim.example"])
    assert not dane.match_chain([ta(ROOT)], [signer.der, INTER.der, ROOT.der], NAMES).ok
    lone = certs.make("mx.victim.example", ca=True, sans=["mx.victim.example"])
    assert not dane.match_chain([ta(lone)], [lone.der], NAMES).ok
    assert dane.match_chain([ee(lone)], [lone.der], NAMES).ok


def test_dates_on_the_path():
    past = certs.NOW - dt.timedelta(days=60)
    old_inter = certs.make("Old Intermediate", issuer=ROOT, ca=True, not_before=past,
                           not_after=past + dt.timedelta(days=1))
    leaf = certs.make("mx.victim.example", issuer=old_inter, sans=["mx.victim.example"])
    got = dane.match_chain([ta(ROOT)], [leaf.der, old_inter.der, ROOT.der], NAMES)
    assert not got.ok and "not valid now" in got.reason
    assert dane.match_chain([ee(leaf)], [leaf.der, old_inter.der], NAMES).ok    # DANE-EE: no dates
    future = certs.make("mx.victim.example", issuer=INTER, sans=["mx.victim.example"],
                        not_before=certs.NOW + dt.timedelta(days=1))
    assert not dane.match_chain([ta(ROOT)], [future.der, INTER.der, ROOT.der], NAMES).ok


def _via(issuer_kwargs: dict, leaf_name: str = "mx.victim.example", extra_ca: bool = False):
    inter = certs.make("Bent Intermediate", issuer=ROOT, ca=True, **issuer_kwargs)
    top = inter
    chain = [inter.der]
    if extra_ca:
        lower = certs.make("Lower Intermediate", issuer=inter, ca=True)
        chain.insert(0, lower.der)
        top = lower
    leaf = certs.make(leaf_name, issuer=top, sans=[leaf_name])
    return dane.match_chain([ta(ROOT)], [leaf.der, *chain, ROOT.der], [leaf_name])


def test_issuer_constraints_are_enforced():
    assert _via({}).ok and _via({}, extra_ca=True).ok
    bad = {
        "no keyCertSign": _via({"key_cert_sign": False}),
        "pathlen 0 with a CA below": _via({"path_len": 0}, extra_ca=True),
        "permitted elsewhere": _via({"permitted": ("other.example",)}),
        "excluded": _via({"excluded": ("victim.example",)}),
        "unknown critical extension": _via({"unknown_critical": True}),
    }
    for what, got in bad.items():
        assert (got.ok, got.failure) == (False, "validation-failure"), what
    assert _via({"path_len": 0}).ok and _via({"permitted": ("victim.example",)}).ok
    assert _via({"permitted": (".victim.example",)}).ok
    not_ca = certs.make("Not A CA", issuer=ROOT, ca=False)
    leaf = certs.make("mx.victim.example", issuer=not_ca, sans=["mx.victim.example"])
    assert not dane.match_chain([ta(ROOT)], [leaf.der, not_ca.der, ROOT.der], NAMES).ok
    no_bc = certs.make("No Basic Constraints", issuer=ROOT)
    leaf = certs.make("mx.victim.example", issuer=no_bc, sans=["mx.victim.example"])
    assert not dane.match_chain([ta(ROOT)], [leaf.der, no_bc.der, ROOT.der], NAMES).ok


def test_certificates_not_for_tls_servers_fail_dane_ta_only():
    """OpenSSL's SSL-server purpose, which Postfix applies to DANE-TA chains
    (test_attacks_postfix.py compares): serverAuth in any extendedKeyUsage on the path, a
    leaf keyUsage that allows a TLS handshake."""
    def leaf(**kw):
        return certs.make("mx.victim.example", issuer=INTER, sans=["mx.victim.example"], **kw)

    for kw, ok in (({"eku": ("serverAuth",)}, True), ({"eku": ("clientAuth", "serverAuth")}, True),
                   ({"eku": ("clientAuth",)}, False), ({"eku": ("any",)}, False),
                   ({"leaf_usage": ("digital_signature",)}, True), ({"leaf_usage": ("key_agreement",)}, True),
                   ({"leaf_usage": ("crl_sign",)}, False)):
        c = leaf(**kw)
        got = dane.match_chain([ta(ROOT)], [c.der, INTER.der, ROOT.der], NAMES)
        assert got.ok is ok, (kw, got.reason)
        assert dane.match_chain([ee(c)], [c.der], NAMES).ok            # DANE-EE: no such checks
    for eku, ok in ((("clientAuth",), False), (("serverAuth",), True)):
        inter = certs.make("EKU Intermediate", issuer=ROOT, ca=True, eku=eku)
        c = certs.make("mx.victim.example", issuer=inter, sans=["mx.victim.example"])
        assert dane.match_chain([ta(ROOT)], [c.der, inter.der, ROOT.der], NAMES).ok is ok, eku


def test_an_unknown_critical_extension_on_the_leaf_fails_dane_ta_only():
    leaf = certs.make("mx.victim.example", issuer=INTER, sans=["mx.victim.example"], unknown_critical=True)
    assert not dane.match_chain([ta(ROOT)], [leaf.der, INTER.der, ROOT.der], NAMES).ok
    assert dane.match_chain([ee(leaf)], [leaf.der], NAMES).ok


# ---- matching: names -------------------------------------------------------------------------

def _ta_names(sans, cn="ignored.example", ip_sans=()):
    leaf = certs.make(cn, issuer=INTER, sans=sans, ip_sans=ip_sans)
    return lambda *names: dane.match_chain([ta(ROOT)], [leaf.der, INTER.der, ROOT.der], list(names)).ok


def test_wildcards():
    ok = _ta_names(["*.victim.example"])
    assert ok("mx.victim.example") and ok("MX.VICTIM.EXAMPLE.")
    assert not ok("victim.example") and not ok("a.mx.victim.example") and not ok(".victim.example")
    assert not _ta_names(["*.example"])("victim.example")         # too broad: OpenSSL refuses it
    assert not _ta_names(["*"])("victim")
    assert not _ta_names(["mx*.victim.example"])("mx1.victim.example")
    assert not _ta_names(["*.*.example"])("a.b.example")
    assert not ok("*.victim.example")            # a reference name is not a pattern


def test_trailing_dots_and_case():
    ok = _ta_names(["mx.victim.example."])
    assert ok("mx.victim.example") and ok("Mx.Victim.Example.")
    assert not ok("mx.victim.example..") and not _ta_names(["mx.victim.example.."])("mx.victim.example")


def test_idn_reference_names_match_a_labels():
    ok = _ta_names(["mx.xn--bcher-kva.example"])
    assert ok("mx.bücher.example") and ok("MX.BÜCHER.EXAMPLE.") and ok("mx.xn--bcher-kva.example")
    assert not ok("mx.bucher.example")
    assert not dane.name_matches("mx.bücher.example", "mx.xn--bcher-kva.example")   # a U-label SAN is invalid
    assert _ta_names(["*.xn--bcher-kva.example"])("mx.bücher.example")


def test_cn_only_without_dns_san():
    assert _ta_names([], cn="mx.victim.example")("mx.victim.example")
    assert _ta_names([], cn="mx.victim.example", ip_sans=("192.0.2.1",))("mx.victim.example")
    assert not _ta_names(["other.example"], cn="mx.victim.example")("mx.victim.example")


# ---- matching: records -----------------------------------------------------------------------

def test_digest_algorithm_agility():
    """RFC 7671 §9: with a SHA2-512 record for the same usage and selector, a match on the
    SHA2-256 record alone is not accepted; Full(0) records always count."""
    wrong = certs.make("mx.victim.example", issuer=INTER, sans=["mx.victim.example"])
    good256, good512, bad512 = ee(LEAF, 1, 1), ee(LEAF, 1, 2), ee(wrong, 1, 2)
    assert not dane.match_chain([good256, bad512], CHAIN, NAMES).ok
    assert dane.match_chain([ee(wrong, 1, 1), good512], CHAIN, NAMES).ok
    assert dane.match_chain([good256, ee(wrong, 0, 2)], CHAIN, NAMES).ok        # another selector
    assert dane.match_chain([good256, dane.tlsa_for(wrong.der, 2, 1, 2)], CHAIN, NAMES).ok   # another usage
    assert dane.match_chain([ee(LEAF, 1, 0), bad512], CHAIN, NAMES).ok          # Full(0) kept
    assert dane.match_chain([good256, dane.TLSA(3, 1, 2, b"\0" * 63)], CHAIN, NAMES).ok   # unusable 512
    assert dane.agile([good256, bad512, ta(ROOT, 1, 1), ta(ROOT, 1, 2)]) == [bad512, ta(ROOT, 1, 2)]


def test_malformed_records_are_unusable_not_errors():
    records = [dane.TLSA(3, 1, 1, b"\0" * 31), dane.TLSA(3, 1, 1, b"\0" * 33), dane.TLSA(3, 1, 2, b"\0" * 32),
               dane.TLSA(3, 2, 1, b"\0" * 32), dane.TLSA(3, 1, 3, b"\0" * 32), dane.TLSA(255, 1, 1, b"\0" * 32),
               dane.TLSA(3, 0, 0, b"")]
    assert not any(r.usable for r in records)
    assert dane.match_chain(records, CHAIN, NAMES).failure == "tlsa-invalid"
    huge = dane.TLSA(3, 0, 0, b"\x30" * 65535)
    started = time.monotonic()
    got = dane.match_chain([huge] * 200 + [dane.TLSA(2, 0, 0, b"\x30" * 65535)] * 20, CHAIN, NAMES)
    assert (got.ok, got.failure) == (False, "validation-failure") and time.monotonic() - started < 5
    for text in ("3 1 1 zz", "x 1 1 00", "3 1"):
        with pytest.raises(ValueError):
            dane.TLSA.parse(text)


# ---- matching: malformed certificates --------------------------------------------------------

def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    head = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + head + body


def _resigned(cert: certs.Cert, issuer: certs.Cert, old: bytes, new: bytes) -> bytes:
    """``cert`` with ``old`` replaced by ``new`` inside its tbsCertificate, signed again by
    ``issuer`` (a certificate cryptography would never build)."""
    tbs = cert.cert.tbs_certificate_bytes
    assert old in tbs
    tbs = tbs.replace(old, new)
    sig = issuer.key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    alg = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a8648ce3d040302")))    # ecdsa-with-SHA256
    return _tlv(0x30, tbs + alg + _tlv(0x03, b"\0" + sig))


def test_malformed_certificates_are_a_non_match_never_an_exception():
    record = ee(LEAF)
    for chain in ([b""], [b"\x30\x82\xff\xff"], [b"not a certificate"], [LEAF.der[:-10]], [b"\x00" * 5000]):
        got = dane.match_chain([record, ta(ROOT)], chain, NAMES)
        assert (got.ok, got.failure) == (False, "validation-failure"), chain[:1]
    # duplicate subjectAltName extensions (IssuerAltName's OID turned into SAN's), validly signed
    twice = certs.make("mx.victim.example", issuer=INTER, sans=["mx.victim.example"])
    from cryptography import x509
    builder_leaf = (x509.CertificateBuilder().subject_name(twice.cert.subject).issuer_name(INTER.cert.subject)
                    .public_key(twice.key.public_key()).serial_number(7)
                    .not_valid_before(certs.NOW - dt.timedelta(hours=1))
                    .not_valid_after(certs.NOW + dt.timedelta(days=1))
                    .add_extension(x509.SubjectAlternativeName([x509.DNSName("mx.victim.example")]), False)
                    .add_extension(x509.IssuerAlternativeName([x509.DNSName("evil.example")]), False)
                    .sign(INTER.key, hashes.SHA256()))
    dup = _resigned(certs.Cert(builder_leaf, twice.key), INTER, bytes.fromhex("0603551d12"),
                    bytes.fromhex("0603551d11"))
    got = dane.match_chain([ta(ROOT)], [dup, INTER.der, ROOT.der], NAMES)
    assert (got.ok, got.failure) == (False, "validation-failure") and "could not be checked" in got.reason
    assert dane.cert_names(x509.load_der_x509_certificate(dup)) == []     # not the CN instead
    # a public key of an algorithm cryptography does not know: its SPKI is still matched as bytes
    odd = _resigned(LEAF, INTER, bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06072a8648ce3d0209"))
    spki = dane.spki_der(x509.load_der_x509_certificate(odd))
    assert bytes.fromhex("06072a8648ce3d0209") in spki
    import hashlib
    assert dane.match_chain([dane.TLSA(3, 1, 1, hashlib.sha256(spki).digest())], [odd], NAMES).ok
    assert not dane.match_chain([ee(LEAF)], [odd], NAMES).ok
    assert dane.match_chain([ta(ROOT)], [odd, INTER.der, ROOT.der], NAMES).ok     # validly signed: fine


def test_spki_is_the_certificates_own_bytes():
    for c in (LEAF, INTER, ROOT):
        reencoded = c.cert.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        assert dane.spki_der(c.cert) == reencoded


def test_a_huge_chain_is_bounded():
    strangers = [certs.make(f"Stranger {i}", ca=True).der for i in range(40)]
    started = time.monotonic()
    got = dane.match_chain([ta(ROOT)], [LEAF.der, *strangers * 10, INTER.der, ROOT.der], NAMES)
    assert not got.ok and time.monotonic() - started < 5     # only the first MAX_PRESENTED are read
    assert dane.match_chain([ta(ROOT)], [LEAF.der, *strangers[:20], INTER.der, ROOT.der], NAMES).ok
