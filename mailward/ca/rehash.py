"""Hash-named links in a CA folder, the layout OpenSSL's CApath lookup reads.

OpenSSL finds a CA in a folder (``SSL_CTX_load_verify_locations(ctx, NULL, dir)``; sendmail's
``confCACERT_PATH``, Postfix's ``smtpd_tls_CApath``) by the hash of the issuer name it is
looking for: ``HHHHHHHH.0`` for the first certificate with that subject hash, ``.1`` for the
next, and ``HHHHHHHH.r0`` for CRLs of that issuer. The hash is OpenSSL's X509_NAME_hash (the
first four bytes, little-endian, of SHA-1 over the canonical DER of the name); we let
OpenSSL compute it through pyOpenSSL rather than re-implement the canonical form.

Contract of :func:`rehash` (same as ``openssl rehash`` / ``c_rehash``): every file in the
folder ending in .pem, .crt, .cer or .crl (not sub-folders) that holds exactly one
certificate or CRL gets a relative symbolic link; duplicates (same SHA-256) share one link;
old hash-named *links* are removed first, regular files are never touched. Each link is made
under a temporary name and renamed, so a reader never sees a half-made folder. Returns
(link, target) pairs and a list of skipped files with the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import crypto

from mailward.ca.store import CAError

_HASH_LINK = re.compile(r"^[0-9a-f]{8}\.r?[0-9]+$")
_SUFFIXES = (".pem", ".crt", ".cer", ".crl")


def subject_hash(cert: x509.Certificate) -> str:
    """OpenSSL's subject hash of a certificate, 8 hex digits (``openssl x509 -hash``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return f"{crypto.X509.from_cryptography(cert).subject_name_hash():08x}"


def name_hash(name: x509.Name) -> str:
    """OpenSSL's hash of any name (a CRL's issuer): via a throw-away certificate with it."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return subject_hash(cert)


def _read_one(path: Path) -> tuple[str, str, str] | str:
    """(kind "cert"/"crl", hash, sha256) of a file, or the reason it is skipped."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"cannot read: {err.strerror}"
    if b"-----BEGIN" not in data:
        return "not PEM"
    blocks = data.count(b"-----BEGIN CERTIFICATE-----") + data.count(b"-----BEGIN TRUSTED CERTIFICATE-----")
    crls = data.count(b"-----BEGIN X509 CRL-----")
    if blocks + crls > 1:
        return "holds more than one certificate or CRL (OpenSSL would only see the first)"
    try:
        if blocks:
            cert = x509.load_pem_x509_certificate(data)
            return "cert", subject_hash(cert), hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        if crls:
            crl = x509.load_pem_x509_crl(data)
            return "crl", name_hash(crl.issuer), hashlib.sha256(crl.public_bytes(serialization.Encoding.DER)).hexdigest()
    except ValueError:
        return "damaged PEM"
    return "no certificate or CRL in it"


def rehash(directory: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Make the hash links in ``directory``; returns (links made, files skipped with why)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CAError(f"{directory}: not a folder (expected the CA folder to rehash)")
    try:
        names = sorted(os.listdir(directory))
    except OSError as err:
        raise CAError(f"{directory}: cannot list the folder: {err.strerror}") from None
    made: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    plan: list[tuple[str, str]] = []
    seen: dict[tuple[str, str], list[str]] = {}  # (kind, hash) -> sha256s already linked
    for name in names:
        path = directory / name
        if _HASH_LINK.match(name) or not name.lower().endswith(_SUFFIXES) or name.startswith("."):
            continue
        if not path.is_file():
            continue
        found = _read_one(path)
        if isinstance(found, str):
            skipped.append((name, found))
            continue
        kind, digest_name, sha = found
        known = seen.setdefault((kind, digest_name), [])
        if sha in known:
            skipped.append((name, "duplicate of a file already linked"))
            continue
        plan.append((f"{digest_name}.{'r' if kind == 'crl' else ''}", name))
        known.append(sha)
    taken = {n for n in names if _HASH_LINK.match(n) and not (directory / n).is_symlink()}
    try:
        for name in names:
            path = directory / name
            if _HASH_LINK.match(name) and path.is_symlink():
                path.unlink()
        for stem, target in plan:
            number = 0
            while f"{stem}{number}" in taken:  # a regular file of that name is left alone
                number += 1
            link = f"{stem}{number}"
            taken.add(link)
            tmp = directory / f".{link}.tmp"
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, directory / link)
            made.append((link, target))
    except OSError as err:
        raise CAError(f"{directory}: cannot make the hash links: {err.strerror}") from None
    return made, skipped
