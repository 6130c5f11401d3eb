"""``mailward ca check`` / check_tls_files: each problem names the file, what and the fix."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography.hazmat.primitives import serialization

from ca_testlib import PASSPHRASE, one_line_error
from mailward.ca import authority, revocation
from mailward.ca.check import check_tls_files
from mailward.ca.keys import generate_key, key_pem
from mailward.ca.store import atomic_write

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def server(ca_dir, certs):
    cert, key = certs / "mx.pem", certs / "mx.key"
    authority.issue(ca_dir, "mx.example", ["127.0.0.1"], cert, key, usage="both", passphrase=PASSPHRASE)
    return cert, key


def _only(problems, severity, *words):
    matching = [p for p in problems if p.severity == severity and all(w in str(p) for w in words)]
    assert matching, [str(p) for p in problems]
    return matching[0]


def test_a_good_setup_has_no_problems(server, ca_dir):
    cert, key = server
    assert check_tls_files(cert, key, ca_dir / "ca.pem", None, ca_dir / "crl.pem", hostname="mx.example") == []


def test_key_that_does_not_match(server, ca_dir, certs):
    cert, _ = server
    authority.issue(ca_dir, "other.example", None, certs / "o.pem", certs / "o.key", passphrase=PASSPHRASE)
    p = _only(check_tls_files(cert, certs / "o.key", ca_dir / "ca.pem"), "error", "does not belong")
    assert p.file == str(certs / "o.key") and "mailward ca issue" in p.fix


def test_world_readable_key_and_open_folder(server, ca_dir, certs):
    cert, key = server
    os.chmod(key, 0o644)
    os.chmod(certs, 0o755)
    problems = check_tls_files(cert, key, ca_dir / "ca.pem")
    p = _only(problems, "error", "readable by group or others")
    assert p.file == str(key) and p.fix == f"chmod 600 {key}"
    p = _only(problems, "warning", "certificate folder")
    assert p.fix == f"chmod -R go-rwx {certs.resolve()}"


def test_expired_and_expiring_certificates(ca_dir, certs):
    authority.issue(ca_dir, "old.example", None, certs / "old.pem", certs / "old.key", days=10,
                    passphrase=PASSPHRASE, valid_from=NOW - dt.timedelta(days=20))
    _only(check_tls_files(certs / "old.pem", certs / "old.key", ca_dir / "ca.pem"), "error", "expired on")
    authority.issue(ca_dir, "soon.example", None, certs / "soon.pem", certs / "soon.key", days=10,
                    passphrase=PASSPHRASE)
    problems = check_tls_files(certs / "soon.pem", certs / "soon.key", ca_dir / "ca.pem")
    assert [p.severity for p in problems] == ["warning"] and "expires on" in problems[0].what
    # The same files seen two years on: error.
    later = check_tls_files(certs / "soon.pem", certs / "soon.key", ca_dir / "ca.pem",
                            when=NOW + dt.timedelta(days=730))
    _only(later, "error", "expired")


def test_encrypted_key_is_an_error(server, ca_dir, certs):
    cert, _ = server
    encrypted = certs / "enc.key"
    atomic_write(encrypted, key_pem(generate_key(), b"secret"), 0o600)
    p = _only(check_tls_files(cert, encrypted, ca_dir / "ca.pem"), "error", "encrypted")
    assert "unattended" in p.what


def test_revoked_certificate_and_foreign_issuer(server, ca_dir, tmp_path, certs):
    cert, key = server
    revocation.revoke(ca_dir, cert)
    revocation.make_crl(ca_dir, PASSPHRASE)
    _only(check_tls_files(cert, key, ca_dir / "ca.pem", None, ca_dir / "crl.pem"), "error", "revoked")
    other = tmp_path / "other"
    authority.init_ca(other, "Other CA")
    authority.issue(other, "mx.example", None, certs / "x.pem", certs / "x.key")
    # Issued elsewhere: a warning (a public server certificate with a private client CA is fine),
    # and a CRL of another CA does not make it fail.
    problems = check_tls_files(certs / "x.pem", certs / "x.key", ca_dir / "ca.pem", None, ca_dir / "crl.pem")
    assert [p.severity for p in problems] == ["warning"] and "does not verify" in problems[0].what
    # Both CAs trusted, a CRL for only one of them: the other CA's certificate still verifies.
    both = tmp_path / "both.pem"
    both.write_bytes((ca_dir / "ca.pem").read_bytes() + (other / "ca.pem").read_bytes())
    assert check_tls_files(certs / "x.pem", certs / "x.key", both, None, ca_dir / "crl.pem") == []


def test_expired_crl_and_capath_without_links(server, ca_dir, tmp_path):
    cert, key = server
    ca_cert, ca_key = authority.load_ca(ca_dir, PASSPHRASE)
    stale = revocation.build_crl(ca_cert, ca_key, [], 9, days=1, when=NOW - dt.timedelta(days=3))
    atomic_write(tmp_path / "stale.crl", stale.public_bytes(serialization.Encoding.PEM))
    p = _only(check_tls_files(cert, key, ca_dir / "ca.pem", None, tmp_path / "stale.crl"), "error", "CRL")
    assert "mailward ca crl" in p.fix
    capath = tmp_path / "capath"
    capath.mkdir()
    (capath / "ca.pem").write_bytes((ca_dir / "ca.pem").read_bytes())
    p = _only(check_tls_files(cert, key, None, capath), "warning", "hash-named link")
    assert p.fix == f"mailward ca rehash {capath}"


def test_missing_and_garbage_files(server, ca_dir, tmp_path):
    cert, key = server
    (tmp_path / "junk.pem").write_text("hello")
    problems = check_tls_files(tmp_path / "nope.pem", tmp_path / "junk.pem", tmp_path / "junk.pem")
    files = {p.file for p in problems if p.severity == "error"}
    assert {str(tmp_path / "nope.pem"), str(tmp_path / "junk.pem")} <= files


def test_check_cli_reads_the_config(server, ca_dir, tmp_path, cli):
    cert, key = server
    config = tmp_path / "mailward.toml"
    config.write_text(f'[server]\nhostname = "mx.example"\n[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
                      f'ca_file = "{ca_dir / "ca.pem"}"\ncrl_file = "{ca_dir / "crl.pem"}"\n')
    result = cli("ca", "check", "-c", config)
    assert result.returncode == 0 and result.stdout.startswith("ok: "), result.stdout + result.stderr
    os.chmod(key, 0o640)
    result = cli("ca", "check", "-c", config)
    assert result.returncode == 1 and f"error: {key}: the private key is readable" in result.stdout
    result = cli("ca", "check", "--cert", cert, "--key", key, "--hostname", "other.example")
    assert "other.example is not among" in result.stdout
    config.write_text("[tls]\ncert_fle = 'x'\n")
    one_line_error(cli("ca", "check", "-c", config), "mailward.toml", "cert_fle")


def test_check_config_reads_tls_and_hostname(server, ca_dir, tmp_path):
    from mailward.ca.check import check_config
    from mailward.config import from_dict
    cert, key = server
    config = from_dict({"server": {"hostname": "wrong.example"},
                        "tls": {"cert_file": str(cert), "key_file": str(key), "ca_file": str(ca_dir / "ca.pem")}},
                       tmp_path / "mailward.toml")
    problems = check_config(config)
    assert [p.severity for p in problems] == ["warning"] and "wrong.example" in problems[0].what
    assert check_config(from_dict({}, tmp_path / "mailward.toml")) == []  # no cert_file: nothing to check


# ---- advice that is right: a wrong path, an encrypted key, a certificate given as the key -------

def _config(tmp_path, cert, key, ca_dir):
    config = tmp_path / "mailward.toml"
    config.write_text(f'[server]\nhostname = "mx.example"\n[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
                      f'ca_file = "{ca_dir / "ca.pem"}"\n')
    return config


def test_missing_certificate_names_the_setting_and_does_not_advise_reissuing(server, ca_dir, tmp_path, cli):
    _, key = server
    missing = tmp_path / "certs" / "mx-cert.pem"
    result = cli("ca", "check", "-c", _config(tmp_path, missing, key, ca_dir))
    assert result.returncode == 1
    line = next(l for l in result.stdout.splitlines() if str(missing) in l)
    assert line.startswith(f"error: {missing}: no such file (named by tls.cert_file)")
    assert "check the path in tls.cert_file" in line
    fix = line.split("; fix: ", 1)[1]
    assert "would overwrite the key" in fix and not fix.startswith("mailward ca issue")
    # on the command line, the option is named instead of the setting
    result = cli("ca", "check", "--cert", missing, "--key", key)
    assert "no such file (named by --cert)" in result.stdout and "check the path in --cert" in result.stdout


def test_encrypted_key_advice_decrypts_it_and_keeps_it_private(server, ca_dir, certs, tmp_path, cli, openssl):
    cert, key = server
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    atomic_write(key, key_pem(private, b"secret"), 0o600)
    result = cli("ca", "check", "-c", _config(tmp_path, cert, key, ca_dir))
    assert result.returncode == 1
    line = next(l for l in result.stdout.splitlines() if "encrypted" in l)
    assert line.startswith(f"error: {key}: the private key is encrypted")
    assert f"(umask 077; openssl pkey -in {key} -out {key}.new)" in line
    assert f"mv {key}.new {key}" in line and f"chmod 600 {key}" in line
    # the advice works: done as it says (with the passphrase given), the check is clean
    run = openssl("pkey", "-in", key, "-out", f"{key}.new", "-passin", "pass:secret")
    assert run.returncode == 0, run.stderr
    os.replace(f"{key}.new", key)
    os.chmod(key, 0o600)
    assert cli("ca", "check", "-c", _config(tmp_path, cert, key, ca_dir)).returncode == 0


def test_certificate_given_as_the_key_is_diagnosed_as_that(server, ca_dir, tmp_path, cli):
    cert, _ = server
    os.chmod(cert, 0o644)   # a certificate's usual mode: not a permission problem
    problems = check_tls_files(cert, cert, ca_dir / "ca.pem")
    p = _only(problems, "error", "holds a certificate, not a private key")
    assert p.file == str(cert) and "tls.key_file" in p.what and "set tls.key_file to the private key" in p.fix
    assert not [q for q in problems if "readable by group" in q.what]
    result = cli("ca", "check", "-c", _config(tmp_path, cert, cert, ca_dir))
    assert result.returncode == 1 and "readable by group" not in result.stdout
    assert f"error: {cert}: holds a certificate, not a private key (tls.key_file names a certificate)" \
        in result.stdout


def test_key_given_as_the_certificate_is_diagnosed_as_that(server, ca_dir):
    _, key = server
    p = _only(check_tls_files(key, key, ca_dir / "ca.pem"), "error", "holds a private key, not a certificate")
    assert "tls.cert_file" in p.what and "--force" not in p.fix


def test_serve_refuses_a_certificate_given_as_the_key_in_one_line(server, ca_dir, tmp_path, cli):
    cert, _ = server
    result = cli("serve", "-c", _config(tmp_path, cert, cert, ca_dir))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert "holds a certificate, not a private key" in result.stderr and "readable by group" not in result.stderr
