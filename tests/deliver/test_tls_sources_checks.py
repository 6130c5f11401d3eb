"""The session checks and the TLS-RPT counting of mailward.deliver.tls_sources, on real
certificates from mailward's own CA and a real TLS-RPT store in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailward.dane import tlsa_for
from mailward.deliver.routes import Hop
from mailward.deliver.tls_sources import HopTls, TlsSources, check_session
from mailward.policy.tls_requirement import DaneView, StsView, decide
from mailward.tls.facts import TLSFacts
from mailward.tls.names import cert_matches_host, name_matches
from mailward.tlsrpt.store import TlsRptStore

OK = TLSFacts(verify="OK", tls_version="TLSv1.3", verifymsg="ok")
FAIL = TLSFacts(verify="FAIL", tls_version="TLSv1.3", verifymsg="self-signed certificate")


def _der(pem: Path) -> bytes:
    return x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def certs(tmp_path_factory, pki):
    from mailward.ca import authority
    d = tmp_path_factory.mktemp("checks")
    authority.issue(pki.dir / "ca", "mx.example.test", ["mx.example.test", "*.mail.example.test"],
                    d / "mx.pem", d / "mx-key.pem", usage="both")
    return {"mx": _der(d / "mx.pem"), "other": _der(pki.other_cert)}


HOP = Hop("mx.example.test", "127.0.0.1", 25, 10, True, True)


def test_names():
    assert name_matches("*.example.test", "mx.example.test")
    assert not name_matches("*.example.test", "example.test")
    assert not name_matches("*.example.test", "a.mx.example.test")
    assert not name_matches("mx*.example.test", "mx1.example.test")
    assert name_matches("MX.Example.Test.", "mx.example.test")


def test_host_name_in_the_certificate(certs):
    assert cert_matches_host(certs["mx"], "mx.example.test")
    assert cert_matches_host(certs["mx"], "in.mail.example.test")
    assert not cert_matches_host(certs["mx"], "mx.other.test")
    assert not cert_matches_host(b"not a certificate", "mx.example.test")


def test_sts_and_verify_need_verify_ok_and_the_name(certs):
    sts = HopTls(decide(mx=HOP.name, sts=StsView("enforce", True)), "example.test")
    assert check_session(sts, HOP, OK, [certs["mx"]]).ok
    assert check_session(sts, HOP, OK, [certs["mx"]]).fields == {"policy": "mta-sts", "sts": "enforce"}
    bad = check_session(sts, HOP, FAIL, [certs["mx"]])
    assert (bad.ok, bad.failure) == (False, "certificate-not-trusted")
    other = check_session(sts, Hop("mx.other.test", "127.0.0.1", 25), OK, [certs["mx"]])
    assert (other.ok, other.failure) == (False, "certificate-host-mismatch")
    floor = HopTls(decide(mx=HOP.name, floor="verify"))
    assert check_session(floor, HOP, OK, [certs["mx"]]).fields == {"policy": "floor", "level": "verify"}


def test_dane_matches_the_chain_and_ignores_pkix(certs):
    record = tlsa_for(certs["mx"], 3, 1, 1)
    from mailward.dane import DaneLookup
    lookup = DaneLookup("secure", (record,), "TLSA found", f"_25._tcp.{HOP.name}", usable=(record,))
    hop_tls = HopTls(decide(mx=HOP.name, dane=DaneView("secure", True, True)), "example.test", dane=lookup)
    assert check_session(hop_tls, HOP, FAIL, [certs["mx"]]).fields == {"policy": "dane", "dane": "verified"}
    miss = check_session(hop_tls, HOP, OK, [certs["other"]])
    assert (miss.ok, miss.fields["dane"], miss.failure) == (False, "failed", "validation-failure")


def test_the_access_map_is_never_second_guessed(certs):
    from mailward.policy.tls_requirement import AccessView
    hop_tls = HopTls(decide(mx=HOP.name, access=AccessView("TLS_Srv:mx.example.test", "VERIFY")))
    assert check_session(hop_tls, HOP, FAIL, [certs["other"]]).ok


def _counts(folder: Path) -> dict:
    store = TlsRptStore.read_only(folder)
    out = {}
    for day in store.days():
        for domain, policies in store.domains(day).items():
            for key, pc in policies.items():
                out[(domain, key.policy_type)] = (pc.successes, sorted(f.result_type for f in pc.failures))
    return out


def test_tls_rpt_counts_and_skips_reports(tmp_path):
    store = TlsRptStore(tmp_path / "tlsrpt")
    sources = TlsSources(recorder=store)
    dane = HopTls(decide(mx=HOP.name, dane=DaneView("secure", True, True)), "dane.example")
    sources.record(dane, HOP)
    sources.record(dane, HOP, failure="validation-failure", why="no match")
    sources.record(HopTls(decide(mx=HOP.name), "plain.example"), HOP)
    sources.record(HopTls(decide(mx=HOP.name), "report.example", report=True), HOP)   # RFC 8460 §5.3
    testing = HopTls(decide(mx=HOP.name, sts=StsView("testing", False)), "sts.example",
                     mx_mismatch="mx.example.test matches no mx of the policy (other.sts.example)")
    sources.record(testing, HOP)
    store.close()
    counts = _counts(tmp_path / "tlsrpt")
    assert counts[("dane.example", "tlsa")] == (1, ["validation-failure"])
    assert counts[("plain.example", "no-policy-found")] == (1, [])
    assert counts[("sts.example", "sts")] == (0, ["validation-failure"])
    assert not any(domain == "report.example" for domain, _ in counts)
