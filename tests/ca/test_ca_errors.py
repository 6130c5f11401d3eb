"""Bad input: one line naming the file, exit code 2, no traceback, the CA folder unchanged."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca_testlib import PASSPHRASE, one_line_error, snapshot
from mailward.ca import authority
from mailward.ca.keys import generate_key, key_pem
from mailward.ca.store import CAError

PW = ("--passphrase-env", "MAILWARD_TEST_PW")


@pytest.fixture
def csr(tmp_path):
    authority.request("req.example", None, tmp_path / "req.key", tmp_path / "req.csr")
    return tmp_path / "req.csr"


def _unchanged(ca_dir, before, *outputs):
    assert snapshot(ca_dir) == before
    for path in outputs:
        assert not path.exists(), path
    assert not list(ca_dir.parent.glob(".*.tmp")) and not list(ca_dir.rglob(".*.tmp"))


def test_csr_with_a_bad_signature(ca_dir, csr, tmp_path, cli):
    der = bytearray(x509.load_pem_x509_csr(csr.read_bytes()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the signature
    forged = x509.load_der_x509_csr(bytes(der))  # still parses ...
    assert not forged.is_signature_valid          # ... but does not verify
    bad = tmp_path / "forged.csr"
    bad.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    before = snapshot(ca_dir)
    one_line_error(cli("ca", "sign", bad, "--ca", ca_dir, "--out", tmp_path / "out.pem", *PW),
                   str(bad), "signature does not verify")
    _unchanged(ca_dir, before, tmp_path / "out.pem")


def test_expired_ca(tmp_path, csr, cli):
    ca_dir = tmp_path / "old-ca"
    authority.init_ca(ca_dir, "Old CA", days=10, valid_from=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=20))
    before = snapshot(ca_dir)
    one_line_error(cli("ca", "sign", csr, "--ca", ca_dir, "--out", tmp_path / "out.pem"),
                   str(ca_dir / "ca.pem"), "expired")
    one_line_error(cli("ca", "issue", "--ca", ca_dir, "--cn", "a.example", "--cert-out", tmp_path / "c.pem",
                       "--key-out", tmp_path / "k.pem"), "expired")
    one_line_error(cli("ca", "crl", "--ca", ca_dir), "expired")
    _unchanged(ca_dir, before, tmp_path / "out.pem", tmp_path / "c.pem", tmp_path / "k.pem")


def test_wrong_passphrase_and_no_passphrase(ca_dir, csr, tmp_path, cli):
    before = snapshot(ca_dir)
    result = cli("ca", "sign", csr, "--ca", ca_dir, "--out", tmp_path / "out.pem", "--passphrase-env", "WRONG",
                 env={"WRONG": "not it"})
    one_line_error(result, str(ca_dir / "private" / "ca-key.pem"), "wrong passphrase")
    (tmp_path / "pw").write_text("also wrong\n")
    one_line_error(cli("ca", "issue", "--ca", ca_dir, "--cn", "a.example", "--cert-out", tmp_path / "c.pem",
                       "--key-out", tmp_path / "k.pem", "--passphrase-file", tmp_path / "pw"), "wrong passphrase")
    # No terminal and no passphrase option: a clear error, not a hang.
    one_line_error(cli("ca", "crl", "--ca", ca_dir), "ca-key.pem", "no terminal")
    one_line_error(cli("ca", "crl", "--ca", ca_dir, "--passphrase-file", tmp_path / "nofile"), "nofile")
    _unchanged(ca_dir, before, tmp_path / "out.pem", tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises(CAError, match="wrong passphrase"):
        authority.load_ca(ca_dir, b"nope")


@pytest.mark.parametrize("content", [
    "",
    "garbage\n",
    "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
])
def test_garbage_pem_as_a_request(ca_dir, tmp_path, cli, content):
    junk = tmp_path / "junk.csr"
    junk.write_text(content)
    before = snapshot(ca_dir)
    one_line_error(cli("ca", "sign", junk, "--ca", ca_dir, "--out", tmp_path / "out.pem", *PW),
                   str(junk), "not a valid certificate request")
    _unchanged(ca_dir, before, tmp_path / "out.pem")


def test_damaged_ca_certificate_and_mismatched_ca_key(ca_dir, csr, tmp_path, cli):
    good_cert = (ca_dir / "ca.pem").read_bytes()
    (ca_dir / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    before = snapshot(ca_dir)
    one_line_error(cli("ca", "sign", csr, "--ca", ca_dir, "--out", tmp_path / "out.pem", *PW),
                   str(ca_dir / "ca.pem"), "not a valid PEM certificate")
    _unchanged(ca_dir, before, tmp_path / "out.pem")
    (ca_dir / "ca.pem").write_bytes(good_cert)
    (ca_dir / "private" / "ca-key.pem").write_bytes(key_pem(generate_key(), PASSPHRASE))
    before = snapshot(ca_dir)
    one_line_error(cli("ca", "sign", csr, "--ca", ca_dir, "--out", tmp_path / "out.pem", *PW),
                   str(ca_dir / "private" / "ca-key.pem"), "does not belong")
    _unchanged(ca_dir, before, tmp_path / "out.pem")


def test_not_a_ca_folder_and_init_over_an_existing_ca(ca_dir, tmp_path, cli):
    one_line_error(cli("ca", "issue", "--ca", tmp_path / "nowhere", "--cn", "a.example", "--cert-out", "c.pem",
                       "--key-out", "k.pem"), "nowhere", "mailward ca init")
    before = snapshot(ca_dir)
    one_line_error(cli("ca", "init", ca_dir, "--cn", "Again", "--no-passphrase"), str(ca_dir), "already exists")
    assert snapshot(ca_dir) == before


def test_bad_values_on_the_command_line(ca_dir, tmp_path, cli):
    before = snapshot(ca_dir)
    for args, words in [
        (("--san", "not a name!"), ("--san",)),
        (("--subject", "/C=Germany"), ("two-letter",)),
        (("--days", "0"), ("--days",)),
    ]:
        result = cli("ca", "issue", "--ca", ca_dir, "--cn", "a.example", "--cert-out", tmp_path / "c.pem",
                     "--key-out", tmp_path / "k.pem", *PW, *args)
        one_line_error(result, *words)
    one_line_error(cli("ca", "revoke", "--ca", ca_dir, "--serial", "XYZ"), "--serial")
    _unchanged(ca_dir, before, tmp_path / "c.pem", tmp_path / "k.pem")


@pytest.mark.parametrize("sub", ["init", "request", "sign", "issue", "self-signed", "revoke", "crl", "show",
                                 "check", "rehash"])
def test_every_subcommand_has_help(sub):
    result = subprocess.run([sys.executable, "-m", "mailward", "ca", sub, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: mailward ca " + sub in result.stdout
