"""Revocation and the hash-named CApath folder, proven with the real openssl."""

from __future__ import annotations

import os
import shutil

import pytest
from cryptography import x509

from ca_testlib import PASSPHRASE, one_line_error, snapshot
from mailward.ca import authority, revocation
from mailward.ca.index import read_index
from mailward.ca.rehash import name_hash, rehash, subject_hash
from mailward.ca.store import CAError


@pytest.fixture
def two_certs(ca_dir, certs):
    for name in ("good", "bad"):
        authority.issue(ca_dir, f"{name}.example", None, certs / f"{name}.pem", certs / f"{name}.key",
                        usage="both", passphrase=PASSPHRASE)
    return certs / "good.pem", certs / "bad.pem"


def test_crl_check_rejects_a_revoked_certificate_after_ca_crl(ca_dir, two_certs, cli, openssl):
    good, bad = two_certs
    result = cli("ca", "revoke", bad, "--ca", ca_dir, "--reason", "keyCompromise")
    assert result.returncode == 0, result.stderr
    # Revoked in the index, but not yet published: the old CRL still lets it through.
    assert openssl("verify", "-crl_check", "-CAfile", ca_dir / "ca.pem", "-CRLfile", ca_dir / "crl.pem",
                   bad).returncode == 0
    result = cli("ca", "crl", "--ca", ca_dir, "--passphrase-env", "MAILWARD_TEST_PW", "--out", "served-crl.pem")
    assert result.returncode == 0, result.stderr
    for crl in (ca_dir / "crl.pem", ca_dir.parent / "served-crl.pem"):
        refused = openssl("verify", "-crl_check", "-CAfile", ca_dir / "ca.pem", "-CRLfile", crl, bad)
        assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
        accepted = openssl("verify", "-crl_check", "-CAfile", ca_dir / "ca.pem", "-CRLfile", crl, good)
        assert accepted.returncode == 0, accepted.stderr
    text = openssl("crl", "-in", ca_dir / "crl.pem", "-noout", "-text").stdout
    assert "Key Compromise" in text and "X509v3 CRL Number" in text
    assert [e.status for e in read_index(ca_dir / "index.txt")] == ["V", "R"]


def test_crl_numbers_increase(ca_dir):
    numbers = []
    for _ in range(3):
        revocation.make_crl(ca_dir, PASSPHRASE)
        crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
        numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    assert numbers == sorted(numbers) and len(set(numbers)) == 3


def test_revoke_by_serial_and_twice(ca_dir, two_certs, cli):
    _, bad = two_certs
    serial = x509.load_pem_x509_certificate(bad.read_bytes()).serial_number
    entry = revocation.revoke(ca_dir, serial=serial)
    assert entry.status == "R" and entry.serial == serial
    before = snapshot(ca_dir)
    one_line_error(cli("ca", "revoke", bad, "--ca", ca_dir), str(bad), "already revoked")
    assert snapshot(ca_dir) == before


def test_revoking_a_certificate_of_another_ca_is_refused(ca_dir, tmp_path, certs, cli):
    other = tmp_path / "other-ca"
    authority.init_ca(other, "Other CA")
    authority.issue(other, "x.example", None, certs / "x.pem", certs / "x.key")
    before = snapshot(ca_dir)
    one_line_error(cli("ca", "revoke", certs / "x.pem", "--ca", ca_dir), "x.pem", "not issued by")
    assert snapshot(ca_dir) == before
    with pytest.raises(CAError, match="not in"):
        revocation.revoke(ca_dir, serial=12345)


def test_rehash_folder_works_as_openssl_capath(ca_dir, tmp_path, two_certs, openssl):
    good, bad = two_certs
    capath = tmp_path / "capath"
    capath.mkdir()
    shutil.copy(ca_dir / "ca.pem", capath / "mail-ca.pem")
    other = tmp_path / "other-ca"
    authority.init_ca(other, "Other CA")
    shutil.copy(other / "ca.pem", capath / "other-ca.pem")
    revocation.revoke(ca_dir, bad)
    revocation.make_crl(ca_dir, PASSPHRASE)
    shutil.copy(ca_dir / "crl.pem", capath / "mail-ca.crl")

    made, skipped = rehash(capath)
    assert skipped == []
    ca_hash = openssl("x509", "-hash", "-noout", "-in", capath / "mail-ca.pem").stdout.strip()
    crl_hash = openssl("crl", "-hash", "-noout", "-in", capath / "mail-ca.crl").stdout.strip()
    assert (f"{ca_hash}.0", "mail-ca.pem") in made and (f"{crl_hash}.r0", "mail-ca.crl") in made
    assert os.readlink(capath / f"{ca_hash}.0") == "mail-ca.pem"

    assert openssl("verify", "-CApath", capath, good).returncode == 0
    assert openssl("verify", "-CApath", capath, bad).returncode == 0  # no CRL check asked for
    refused = openssl("verify", "-crl_check", "-CApath", capath, bad)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    assert openssl("verify", "-crl_check", "-CApath", capath, good).returncode == 0
    # Without the links OpenSSL's CApath lookup finds nothing: the links are what make it work.
    for link, _ in made:
        (capath / link).unlink()
    assert openssl("verify", "-CApath", capath, "-no-CAfile", "-no-CAstore", good).returncode != 0


def test_rehash_is_idempotent_and_keeps_regular_files(ca_dir, tmp_path, cli):
    capath = tmp_path / "capath"
    capath.mkdir()
    shutil.copy(ca_dir / "ca.pem", capath / "ca.pem")
    shutil.copy(ca_dir / "ca.pem", capath / "ca-copy.pem")  # a duplicate gets no second link
    (capath / "deadbeef.0").symlink_to("gone.pem")           # a stale link is removed
    (capath / "notes.txt").write_text("not a cert")
    (capath / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n")
    first = cli("ca", "rehash", capath)
    assert first.returncode == 0, first.stderr
    assert "junk.pem" in first.stderr and "duplicate" in first.stderr
    h = subject_hash(x509.load_pem_x509_certificate((capath / "ca.pem").read_bytes()))
    assert sorted(p.name for p in capath.iterdir() if p.is_symlink()) == [f"{h}.0"]
    state = snapshot(capath)
    assert cli("ca", "rehash", capath).returncode == 0
    assert snapshot(capath) == state


def test_ca_folder_itself_can_be_rehashed(ca_dir, two_certs, openssl):
    rehash(ca_dir)
    good, _ = two_certs
    assert openssl("verify", "-crl_check", "-CApath", ca_dir, good).returncode == 0


def test_name_hash_matches_subject_hash(ca_dir):
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    assert name_hash(ca.subject) == subject_hash(ca)


def test_openssl_ca_reads_the_same_folder(ca_dir, two_certs, tmp_path, openssl):
    """The index is OpenSSL's format: `openssl ca` sees our statuses and makes a CRL from it."""
    _, bad = two_certs
    revocation.revoke(ca_dir, bad, reason="superseded")
    (tmp_path / "openssl.cnf").write_text(
        f"[ca]\ndefault_ca = mw\n[mw]\ndir = {ca_dir}\ndatabase = $dir/index.txt\nnew_certs_dir = $dir/certs\n"
        "certificate = $dir/ca.pem\nprivate_key = $dir/private/ca-key.pem\ncrlnumber = $dir/crlnumber\n"
        "default_md = sha256\ndefault_crl_days = 7\npolicy = pol\n[pol]\ncommonName = supplied\n")
    statuses = {}
    for entry in read_index(ca_dir / "index.txt"):
        result = openssl("ca", "-config", tmp_path / "openssl.cnf", "-status", f"{entry.serial:X}")
        statuses[entry.status] = result.stdout + result.stderr
    assert "=Valid (V)" in statuses["V"] and "=Revoked (R)" in statuses["R"]
    result = openssl("ca", "-config", tmp_path / "openssl.cnf", "-gencrl", "-passin",
                     f"pass:{PASSPHRASE.decode()}", "-out", tmp_path / "openssl.crl")
    assert result.returncode == 0, result.stderr
    refused = openssl("verify", "-crl_check", "-CAfile", ca_dir / "ca.pem", "-CRLfile", tmp_path / "openssl.crl", bad)
    assert "certificate revoked" in refused.stdout + refused.stderr
