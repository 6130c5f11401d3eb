"""A private certificate authority in a folder: make it, issue from it, sign requests.

This replaces the CA.pl walk-through of "Securing Sendmail with TLS" ( ``-newca``, ``-newreq`` with ``-nodes``,
``-sign``). The folder is laid out like ``openssl ca`` expects, so either tool can use it:

    CA_DIR/                 mode 0700
      ca.pem                the CA certificate (give it to peers; [tls] ca_file)
      private/ca-key.pem    the CA key, 0600 in a 0700 folder; PKCS#8, encrypted if a
                            passphrase was given
      index.txt             every issued certificate (OpenSSL index format, see index.py)
      index.txt.attr        "unique_subject = no", as openssl ca wants it
      certs/SERIAL.pem      a copy of every issued certificate
      crlnumber             the next CRL number (hex)
      crl.pem               the current CRL (made by init, renewed by `mailward ca crl`)

Contract, for every public function:

* Everything is checked before anything is written: the CA certificate and key load, match
  and are within their validity; the request's signature is valid; the names parse. A failure
  raises :class:`~mailward.ca.store.CAError` with one line naming the file, and leaves the CA
  folder exactly as it was.
* Files are written atomically (temp + fsync + rename). Private keys written here are never
  encrypted (a mail server must load its key unattended: "Securing Sendmail with TLS", "-nodes") and are mode 0600.
* ``passphrase`` is bytes, or a callable returning bytes that is called only when the CA key
  turns out to be encrypted (so the command line prompts only when it must).

Issued certificates carry: basicConstraints CA:FALSE (critical); keyUsage digitalSignature
(+ keyEncipherment for RSA) (critical); extendedKeyUsage serverAuth and/or clientAuth;
subjectAltName (the DNS names and IP addresses, plus the CN when it is a host name);
subject and authority key identifiers; a random 159-bit serial, unique in the index
(CA/B Baseline Requirements §7.1 asks for at least 64 random bits). Their notAfter never
goes past the CA's.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailward.ca import index as index_mod
from mailward.ca.crl import build_crl
from mailward.ca.keys import generate_key, key_pem, parse_sans, parse_subject, public_key_der, signature_hash
from mailward.ca.store import (CAError, atomic_write, ca_lock, fsync_dir, is_encrypted_key,
                               load_cert, load_csr, load_private_key, make_private_dir, read_bytes)
from mailward.tls.dn import name_components, oneline

Passphrase = bytes | Callable[[], bytes] | None
USAGES = ("server", "client", "both")

CA_CERT = "ca.pem"
CA_KEY = "private/ca-key.pem"
INDEX = "index.txt"
CERTS = "certs"
CRL_NUMBER = "crlnumber"
CRL = "crl.pem"

# A little backdating so a peer whose clock is slightly behind still accepts a fresh cert.
_SKEW = dt.timedelta(minutes=5)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ca_key_encrypted(ca_dir: Path) -> bool:
    """True when the CA key needs a passphrase (for deciding whether to prompt)."""
    return is_encrypted_key(read_bytes(Path(ca_dir) / CA_KEY, "the CA key"))


def _passphrase(value: Passphrase | str) -> bytes | None:
    value = value() if callable(value) else value
    return value.encode() if isinstance(value, str) else value


def load_ca(ca_dir: Path, passphrase: Passphrase = None, *, when: dt.datetime | None = None):
    """(certificate, key) of the CA, checked: loads, key matches, valid at ``when`` (now)."""
    ca_dir = Path(ca_dir)
    cert_path, key_path = ca_dir / CA_CERT, ca_dir / CA_KEY
    if not cert_path.exists():
        raise CAError(f"{cert_path}: no CA here; make one with: mailward ca init {ca_dir} --cn NAME")
    cert = load_cert(cert_path)
    key_data = read_bytes(key_path, "the CA key")
    phrase = _passphrase(passphrase) if is_encrypted_key(key_data) else None
    key = load_private_key(key_path, phrase, what="CA key")
    if public_key_der(key) != public_key_der(cert):
        raise CAError(f"{key_path}: this key does not belong to the CA certificate {cert_path}")
    when = when or now()
    if cert.not_valid_after_utc <= when:
        raise CAError(f"{cert_path}: the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
                      f"make a new CA with: mailward ca init NEW_DIR --cn NAME")
    if cert.not_valid_before_utc > when + _SKEW:
        raise CAError(f"{cert_path}: the CA certificate is not valid before "
                      f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the clock)")
    return cert, key


def _key_usage(public_key, *, ca: bool) -> x509.KeyUsage:
    # keyEncipherment only means something for RSA key transport (TLS 1.2 RSA kx).
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=is_rsa and not ca, data_encipherment=False,
                         key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _eku(usage: str) -> x509.ExtendedKeyUsage:
    if usage not in USAGES:
        raise CAError(f"usage {usage!r}: expected one of {', '.join(USAGES)}")
    oids = []
    if usage in ("server", "both"):
        oids.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if usage in ("client", "both"):
        oids.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    return x509.ExtendedKeyUsage(oids)


def _validity(days: int, valid_from: dt.datetime | None, limit: dt.datetime | None):
    if not isinstance(days, int) or days < 1:
        raise CAError(f"--days {days!r}: expected a whole number of days >= 1")
    start = valid_from or (now() - _SKEW)
    end = start + dt.timedelta(days=days)
    if limit is not None and end > limit:
        end = limit
    return start, end


def _leaf(subject: x509.Name, public_key, sans: list[x509.GeneralName], usage: str, days: int,
          issuer_cert: x509.Certificate | None, issuer_key, serial: int,
          valid_from: dt.datetime | None, crl_url: str = "") -> x509.Certificate:
    start, end = _validity(days, valid_from, issuer_cert.not_valid_after_utc if issuer_cert else None)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(public_key)
               .serial_number(serial)
               .not_valid_before(start)
               .not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_key_usage(public_key, ca=False), critical=True)
               .add_extension(_eku(usage), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if crl_url:  # where peers find the CA's revocation list (RFC 5280 §4.2.1.13)
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if issuer_cert is not None:
        try:
            ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())
    else:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    builder = builder.add_extension(aki, critical=False)
    return builder.sign(issuer_key, signature_hash(issuer_key))


def _check_target(path: Path, force: bool) -> Path:
    path = Path(path)
    if path.exists() and not force:
        raise CAError(f"{path}: already exists; remove it first (or use --force to replace it)")
    if path.is_dir():
        raise CAError(f"{path}: is a folder, expected a file name")
    if not path.parent.is_dir() and str(path.parent) not in ("", "."):
        make_private_dir(path.parent)
    return path


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


CRL_URL = "crl-url"


def crl_url(ca_dir: Path) -> str:
    """The CRL distribution point written into every certificate this CA issues ('' if none)."""
    try:
        return (Path(ca_dir) / CRL_URL).read_text().strip()
    except FileNotFoundError:
        return ""


def init_ca(ca_dir: Path, cn: str, subject: str | None = None, key_type: str = "ec",
            passphrase: bytes | None = None, days: int = 3650, *,
            valid_from: dt.datetime | None = None, crl_url: str = "") -> None:
    """Make a CA in ``ca_dir`` (which must not exist, or be empty).

    ``crl_url`` (e.g. ``http://ca.example/mail.crl``) goes into the certificates it issues as
    their CRL distribution point, so peers and scanners know where revocation is published."""
    if crl_url and not re.match(r"(https?|ldap|file)://\S+\Z", crl_url):
        raise CAError(f"--crl-url {crl_url!r}: expected an http://, https://, ldap:// or file:// URL")

    ca_dir = Path(ca_dir)
    if ca_dir.exists() and (not ca_dir.is_dir() or any(ca_dir.iterdir())):
        raise CAError(f"{ca_dir}: already exists and is not an empty folder; choose a new folder for the CA")
    name = parse_subject(subject, cn)
    passphrase = _passphrase(passphrase)
    key = generate_key(key_type)
    start, end = _validity(days, valid_from, None)
    public = key.public_key()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(public, ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
            .sign(key, signature_hash(key)))
    crl = build_crl(cert, key, [], crl_number=1, days=30)
    parent = ca_dir.parent
    if not parent.exists():
        make_private_dir(parent)
    # Build the whole folder beside the target and rename it into place: a CA folder is
    # either complete or absent.
    try:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{ca_dir.name}.", suffix=".tmp"))
    except OSError as err:
        raise CAError(f"{ca_dir}: cannot create the CA folder: {err.strerror}") from None
    try:
        os.chmod(tmp, 0o700)
        make_private_dir(tmp / "private")
        make_private_dir(tmp / CERTS)
        atomic_write(tmp / CA_KEY, key_pem(key, passphrase), 0o600)
        atomic_write(tmp / CA_CERT, _pem(cert), 0o644)
        atomic_write(tmp / INDEX, b"", 0o600)
        atomic_write(tmp / "index.txt.attr", b"unique_subject = no\n", 0o600)
        atomic_write(tmp / CRL_NUMBER, b"02\n", 0o600)
        atomic_write(tmp / CRL, crl.public_bytes(serialization.Encoding.PEM), 0o644)
        if crl_url:
            atomic_write(tmp / CRL_URL, crl_url.encode() + b"\n", 0o644)
        if ca_dir.exists():
            ca_dir.rmdir()
        os.rename(tmp, ca_dir)
        fsync_dir(parent)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise CAError(f"{ca_dir}: cannot create the CA folder: {err.strerror}") from None
        raise


def request(cn: str, sans: list[str] | None, key_out: Path, csr_out: Path, key_type: str = "ec",
            subject: str | None = None, *, force: bool = False) -> None:
    """An unencrypted key (0600) and a certificate request carrying the subject and SANs."""
    name = parse_subject(subject, cn)
    names = parse_sans(sans, cn)
    key_out, csr_out = _check_target(key_out, force), _check_target(csr_out, force)
    key = generate_key(key_type)
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, signature_hash(key))
    atomic_write(key_out, key_pem(key), 0o600)
    atomic_write(csr_out, csr.public_bytes(serialization.Encoding.PEM), 0o644)


def _record(ca_dir: Path, cert: x509.Certificate) -> None:
    """Add an issued certificate to certs/ and the index (caller holds the lock)."""
    copy = ca_dir / CERTS / f"{index_mod.serial_hex(cert.serial_number)}.pem"
    if not copy.parent.is_dir():
        make_private_dir(copy.parent)
    entries = index_mod.read_index(ca_dir / INDEX)
    atomic_write(copy, _pem(cert), 0o644)
    entries.append(index_mod.Entry("V", cert.not_valid_after_utc, None, "",
                                   cert.serial_number, oneline(name_components(cert.subject))))
    try:
        index_mod.write_index(ca_dir / INDEX, entries)
    except BaseException:
        copy.unlink(missing_ok=True)
        raise


def _new_serial(ca_dir: Path) -> int:
    used = {e.serial for e in index_mod.read_index(ca_dir / INDEX)}
    while True:
        serial = x509.random_serial_number()
        if serial not in used:
            return serial


def _sign_and_record(ca_dir: Path, ca_cert, ca_key, subject, public_key, names, usage, days,
                     valid_from, outputs: list[tuple[Path, bytes | None, int]]) -> x509.Certificate:
    """Sign under the CA lock, write ``outputs`` (data None = the new certificate), record it.

    If recording fails, the outputs just written are removed again.
    """
    with ca_lock(ca_dir):
        serial = _new_serial(ca_dir)
        cert = _leaf(subject, public_key, names, usage, days, ca_cert, ca_key, serial, valid_from,
                     crl_url(ca_dir))
        written = []
        try:
            for path, data, mode in outputs:
                atomic_write(path, _pem(cert) if data is None else data, mode)
                written.append(path)
            _record(ca_dir, cert)
        except BaseException:
            for path in written:
                Path(path).unlink(missing_ok=True)
            raise
    return cert


def sign(ca_dir: Path, csr_file: Path, cert_out: Path, usage: str = "server", days: int = 825,
         passphrase: Passphrase = None, sans: list[str] | None = None, *, force: bool = False,
         valid_from: dt.datetime | None = None) -> x509.Certificate:
    """Sign a request: its subject, its SANs plus ``sans``; refuses a bad request signature."""
    ca_dir = Path(ca_dir)
    csr = load_csr(csr_file)
    if not csr.is_signature_valid:
        raise CAError(f"{csr_file}: the request's signature does not verify (damaged or forged request)")
    _eku(usage)
    cn_values = [v for k, v in name_components(csr.subject) if k == "CN"]
    try:
        from_csr = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n for n in from_csr if isinstance(n, (x509.DNSName, x509.IPAddress))]
    except x509.ExtensionNotFound:
        names = []
    except ValueError:
        raise CAError(f"{csr_file}: the request's extensions cannot be parsed") from None
    for extra in parse_sans(sans, cn_values[-1] if cn_values else None):
        if extra not in names:
            names.append(extra)
    if not list(csr.subject):
        raise CAError(f"{csr_file}: the request has an empty subject")
    if Path(cert_out).exists() and not force:
        _check_target(cert_out, force)  # the "already exists" error, before asking for a passphrase
    ca_cert, ca_key = load_ca(ca_dir, passphrase)
    cert_out = _check_target(cert_out, force)
    return _sign_and_record(ca_dir, ca_cert, ca_key, csr.subject, csr.public_key(), names, usage,
                            days, valid_from, [(cert_out, None, 0o644)])


def issue(ca_dir: Path, cn: str, sans: list[str] | None, cert_out: Path, key_out: Path,
          usage: str = "server", days: int = 825, passphrase: Passphrase = None,
          subject: str | None = None, *, key_type: str = "ec", force: bool = False,
          valid_from: dt.datetime | None = None) -> x509.Certificate:
    """Key + certificate in one step (request and sign without a CSR file).

    Without ``subject`` the certificate's DN is the CA's DN with the CN replaced by ``cn``
    (``/C=US/ST=California/O=Example/OU=Mail/L=Town/CN=host``), the form the access
    map examples use for CERTSUBJECT.
    """
    ca_dir = Path(ca_dir)
    names = parse_sans(sans, cn)
    _eku(usage)
    if Path(cert_out).resolve() == Path(key_out).resolve():
        raise CAError(f"{cert_out}: the certificate and the key must go to different files")
    for target in (cert_out, key_out):
        if Path(target).exists() and not force:
            _check_target(target, force)  # the "already exists" error, before asking for a passphrase
    ca_cert, ca_key = load_ca(ca_dir, passphrase)
    if subject is None:
        inherited = [a for a in ca_cert.subject if a.oid != NameOID.COMMON_NAME]
        name = x509.Name(inherited + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        parse_subject(None, cn)  # the same checks on the CN as with a subject
    else:
        name = parse_subject(subject, cn)
    cert_out, key_out = _check_target(cert_out, force), _check_target(key_out, force)
    key = generate_key(key_type)
    return _sign_and_record(ca_dir, ca_cert, ca_key, name, key.public_key(), names, usage, days,
                            valid_from, [(key_out, key_pem(key), 0o600), (cert_out, None, 0o644)])


def self_signed(cn: str, cert_out: Path, key_out: Path, sans: list[str] | None = None,
                usage: str = "both", days: int = 825, subject: str | None = None, *,
                key_type: str = "ec", force: bool = False,
                valid_from: dt.datetime | None = None) -> x509.Certificate:
    """A certificate signed by its own key, from no CA: peers verifying it get verify=FAIL."""
    name = parse_subject(subject, cn)
    names = parse_sans(sans, cn)
    _eku(usage)
    cert_out, key_out = _check_target(cert_out, force), _check_target(key_out, force)
    key = generate_key(key_type)
    cert = _leaf(name, key.public_key(), names, usage, days, None, key, x509.random_serial_number(),
                 valid_from)
    atomic_write(key_out, key_pem(key), 0o600)
    atomic_write(cert_out, _pem(cert), 0o644)
    return cert
