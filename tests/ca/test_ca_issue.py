"""Issuing: the real openssl accepts what mailward issues, with the right extensions and files."""

from __future__ import annotations

import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from ca_testlib import CA_CN, PASSPHRASE
from mailward.ca import authority
from mailward.ca.index import read_index
from mailward.ca.store import CAError

PURPOSES = {"server": ("sslserver",), "client": ("sslclient",), "both": ("sslserver", "sslclient")}


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.mark.parametrize("usage", ["server", "client", "both"])
def test_openssl_verify_accepts_issued_certificates(ca_dir, certs, openssl, usage):
    cert, key = certs / f"{usage}.pem", certs / f"{usage}.key"
    authority.issue(ca_dir, f"{usage}.example", ["127.0.0.1"], cert, key, usage=usage, passphrase=PASSPHRASE)
    for purpose in PURPOSES[usage]:
        result = openssl("verify", "-purpose", purpose, "-CAfile", ca_dir / "ca.pem", cert)
        assert result.returncode == 0 and f"{cert}: OK" in result.stdout, result.stderr
    other = {"server": "sslclient", "client": "sslserver"}.get(usage)
    if other:  # a server-only certificate is refused for client use and vice versa
        assert openssl("verify", "-purpose", other, "-CAfile", ca_dir / "ca.pem", cert).returncode != 0


def test_extensions_of_an_issued_certificate(ca_dir, certs):
    authority.issue(ca_dir, "mx.example", ["mx2.example", "192.0.2.7", "::1"], certs / "c.pem", certs / "k.pem",
                    usage="both", passphrase=PASSPHRASE)
    cert, ca = _cert(certs / "c.pem"), _cert(ca_dir / "ca.pem")
    ext = cert.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mx.example", "mx2.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.7", "::1"]
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest != ca_ski
    assert cert.serial_number.bit_length() > 64
    # Without --subject the DN is the CA's with the CN replaced (the seed's DN form).
    assert cert.subject.rfc4514_string() == "CN=mx.example,L=Town,OU=Mail,O=Example Org,ST=California,C=US"


def test_ca_folder_layout_and_modes(ca_dir, certs):
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((ca_dir / "private").stat().st_mode) == 0o700
    assert stat.S_IMODE((ca_dir / "private" / "ca-key.pem").stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in (ca_dir / "private" / "ca-key.pem").read_bytes()
    for name in ("ca.pem", "index.txt", "index.txt.attr", "crlnumber", "crl.pem", "certs"):
        assert (ca_dir / name).exists(), name
    ca = _cert(ca_dir / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.subject == ca.issuer
    assert "CN=Darth Mail (Cert)" in ca.subject.rfc4514_string()
    assert not list(ca_dir.glob(".*.tmp")) and not list(ca_dir.parent.glob(".ca.*"))


def test_issued_key_is_unencrypted_0600_and_matches(ca_dir, certs):
    authority.issue(ca_dir, "mx.example", None, certs / "c.pem", certs / "k.pem", passphrase=PASSPHRASE)
    assert stat.S_IMODE((certs / "k.pem").stat().st_mode) == 0o600
    key = serialization.load_pem_private_key((certs / "k.pem").read_bytes(), None)  # no passphrase needed
    assert key.public_key() == _cert(certs / "c.pem").public_key()


def test_serials_are_unique_and_recorded_in_the_index(ca_dir, certs):
    serials = []
    for i in range(5):
        cert = authority.issue(ca_dir, f"h{i}.example", None, certs / f"{i}.pem", certs / f"{i}.key",
                               passphrase=PASSPHRASE)
        serials.append(cert.serial_number)
    entries = read_index(ca_dir / "index.txt")
    assert [e.serial for e in entries] == serials and len(set(serials)) == 5
    assert all(e.status == "V" for e in entries)
    assert entries[0].subject.endswith("/CN=h0.example")
    for serial in serials:
        assert (ca_dir / "certs" / f"{serial:X}.pem").exists() or (ca_dir / "certs" / f"0{serial:X}.pem").exists()


def test_rsa_ca_and_rsa_keys(tmp_path, certs, openssl):
    ca = tmp_path / "rsa-ca"
    authority.init_ca(ca, "RSA CA", key_type="rsa")
    authority.issue(ca, "rsa.example", None, certs / "c.pem", certs / "k.pem", key_type="rsa")
    cert = _cert(certs / "c.pem")
    assert cert.public_key().key_size == 3072
    assert _cert(ca / "ca.pem").public_key().key_size == 3072
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    assert openssl("verify", "-CAfile", ca / "ca.pem", certs / "c.pem").returncode == 0


def test_request_then_sign_with_the_cli(ca_dir, certs, cli, openssl):
    result = cli("ca", "request", "--cn", "relay.example", "--san", "relay2.example",
                 "--key-out", certs / "r.key", "--csr-out", certs / "r.csr")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((certs / "r.key").stat().st_mode) == 0o600
    assert openssl("req", "-verify", "-noout", "-in", certs / "r.csr").returncode == 0
    result = cli("ca", "sign", certs / "r.csr", "--ca", ca_dir, "--out", certs / "r.pem", "--client",
                 "--san", "10.0.0.1", "--passphrase-env", "MAILWARD_TEST_PW")
    assert result.returncode == 0, result.stderr
    verify = openssl("verify", "-purpose", "sslclient", "-CAfile", ca_dir / "ca.pem", certs / "r.pem")
    assert verify.returncode == 0, verify.stderr
    san = _cert(certs / "r.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["relay.example", "relay2.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    assert _cert(certs / "r.pem").subject.rfc4514_string() == "CN=relay.example"


def test_issue_with_the_cli_and_a_passphrase_file(ca_dir, certs, cli, tmp_path, openssl):
    (tmp_path / "pw").write_bytes(PASSPHRASE + b"\n")
    result = cli("ca", "issue", "--ca", ca_dir, "--cn", "mx.example", "--both", "--passphrase-file",
                 tmp_path / "pw", "--cert-out", certs / "mx.pem", "--key-out", certs / "mx.key")
    assert result.returncode == 0, result.stderr
    assert openssl("verify", "-CAfile", ca_dir / "ca.pem", certs / "mx.pem").returncode == 0


def test_init_with_the_cli_needs_a_passphrase_source(tmp_path, cli):
    result = cli("ca", "init", tmp_path / "newca", "--cn", "New CA")
    assert result.returncode == 2 and "--no-passphrase" in result.stderr
    assert not (tmp_path / "newca").exists()
    result = cli("ca", "init", tmp_path / "newca", "--cn", "New CA", "--passphrase-env", "MAILWARD_TEST_PW")
    assert result.returncode == 0, result.stderr
    assert b"ENCRYPTED" in (tmp_path / "newca" / "private" / "ca-key.pem").read_bytes()


def test_self_signed_fails_openssl_verify(ca_dir, certs, openssl):
    authority.self_signed("rogue.example", certs / "s.pem", certs / "s.key")
    result = openssl("verify", "-CAfile", ca_dir / "ca.pem", certs / "s.pem")
    assert result.returncode != 0 and "self-signed" in (result.stdout + result.stderr)


def test_issue_refuses_to_overwrite_a_key_without_force(ca_dir, certs):
    authority.issue(ca_dir, "a.example", None, certs / "c.pem", certs / "k.pem", passphrase=PASSPHRASE)
    before = (certs / "k.pem").read_bytes()
    with pytest.raises(CAError, match="already exists"):
        authority.issue(ca_dir, "a.example", None, certs / "c.pem", certs / "k.pem", passphrase=PASSPHRASE)
    assert (certs / "k.pem").read_bytes() == before
    authority.issue(ca_dir, "a.example", None, certs / "c.pem", certs / "k.pem", passphrase=PASSPHRASE, force=True)
    assert (certs / "k.pem").read_bytes() != before


def test_leaf_never_outlives_the_ca(tmp_path, certs):
    ca = tmp_path / "short"
    authority.init_ca(ca, "Short CA", days=30)
    cert = authority.issue(ca, "a.example", None, certs / "c.pem", certs / "k.pem", days=825)
    assert cert.not_valid_after_utc <= _cert(ca / "ca.pem").not_valid_after_utc


@pytest.mark.parametrize("subject,message", [
    ("C=US/O=x", "expected the form"),
    ("/C=USA", "two-letter"),
    ("/XX=1", "unknown attribute"),
])
def test_bad_subjects_are_one_line_errors(tmp_path, subject, message):
    with pytest.raises(CAError, match=message):
        authority.init_ca(tmp_path / "x", "CA", subject)
    assert not (tmp_path / "x").exists()


def test_ca_cn_appears_as_given(ca_dir):
    assert authority.load_ca(ca_dir, PASSPHRASE)[0].subject.rfc4514_string().startswith(f"CN={CA_CN}")


def test_san_forms(ca_dir, certs):
    cert = authority.issue(ca_dir, "mx.example", ["DNS:*.example.com", "IP:[::1]", "bücher.example", "MX.EXAMPLE."],
                           certs / "c.pem", certs / "k.pem", passphrase=PASSPHRASE)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["*.example.com", "xn--bcher-kva.example", "mx.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["::1"]
    with pytest.raises(CAError, match="not an IP address"):
        authority.issue(ca_dir, "mx.example", ["IP:mx.example"], certs / "d.pem", certs / "e.pem")
