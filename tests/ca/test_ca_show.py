"""``mailward ca show``: sendmail's DN form and the +XX form an access map needs ("sendmail cf/README, STARTTLS")."""

from __future__ import annotations

import hashlib
import json
import subprocess

from ca_testlib import PASSPHRASE, one_line_error
from mailward.ca import authority
from mailward.ca.show import show

# cf/README: "Darth Mail (Cert)" is encoded as "Darth+20Mail+20+28Cert+29".
ENCODED_CA = "/C=US/ST=California/O=Example+20Org/OU=Mail/L=Town/CN=Darth+20Mail+20+28Cert+29"


def test_show_prints_both_dn_forms_and_access_map_lines(ca_dir, certs, cli):
    authority.issue(ca_dir, "relay.example", ["192.0.2.1"], certs / "c.pem", certs / "k.pem",
                    usage="client", passphrase=PASSPHRASE)
    result = cli("ca", "show", certs / "c.pem")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "issuer:         /C=US/ST=California/O=Example Org/OU=Mail/L=Town/CN=Darth Mail (Cert)" in out
    assert f"cert_issuer:    {ENCODED_CA}" in out
    assert "cert_subject:   /C=US/ST=California/O=Example+20Org/OU=Mail/L=Town/CN=relay.example" in out
    assert f"CERTISSUER:{ENCODED_CA}\tRELAY" in out
    assert "CERTSUBJECT:/C=US/ST=California/O=Example+20Org/OU=Mail/L=Town/CN=relay.example\tRELAY" in out
    assert "cn_subject:     relay.example" in out and "cn_issuer:      Darth Mail (Cert)" in out
    assert "DNS:relay.example, IP:192.0.2.1" in out
    assert "usage:          client" in out


def test_fingerprints_match_openssl(ca_dir, certs, openssl):
    authority.issue(ca_dir, "mx.example", None, certs / "c.pem", certs / "k.pem", passphrase=PASSPHRASE)
    info = show(certs / "c.pem")
    printed = openssl("x509", "-in", certs / "c.pem", "-noout", "-fingerprint", "-sha256").stdout
    assert printed.strip().split("=", 1)[1] == info.fingerprint_sha256
    pubkey = subprocess.run(["openssl", "x509", "-in", str(certs / "c.pem"), "-noout", "-pubkey"],
                            capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pubkey,
                         capture_output=True, check=True).stdout
    assert hashlib.sha256(der).hexdigest() == info.pubkey_sha256
    serial = openssl("x509", "-in", certs / "c.pem", "-noout", "-serial").stdout.strip().split("=")[1]
    assert serial.lstrip("0") == info.serial


def test_show_json_and_the_ca_itself(ca_dir, cli):
    result = cli("ca", "show", "--json", ca_dir / "ca.pem")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["cert_subject"] == data["cert_issuer"] == ENCODED_CA
    assert data["is_ca"] and data["self_signed"] and data["key"] == "EC P-256"
    assert data["days_left"] > 3600


def test_show_garbage_is_one_line_exit_2(tmp_path, cli):
    (tmp_path / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
    one_line_error(cli("ca", "show", tmp_path / "junk.pem"), "junk.pem", "not a valid PEM certificate")
    one_line_error(cli("ca", "show", tmp_path / "missing.pem"), "missing.pem", "no such file")


def test_show_a_chain_file_shows_every_certificate(ca_dir, certs, cli):
    authority.issue(ca_dir, "mx.example", None, certs / "c.pem", certs / "k.pem", passphrase=PASSPHRASE)
    chain = certs / "chain.pem"
    chain.write_bytes((certs / "c.pem").read_bytes() + (ca_dir / "ca.pem").read_bytes())
    result = cli("ca", "show", chain)
    assert result.returncode == 0, result.stderr
    assert f"file:           {chain} (certificate 1 of 2)" in result.stdout
    assert f"file:           {chain} (certificate 2 of 2)" in result.stdout
    assert result.stdout.count("cert_subject:") == 2
