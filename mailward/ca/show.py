"""What a certificate says, in the words of sendmail's access map.

:func:`describe` turns a certificate into a :class:`CertInfo` (pure); :func:`show` loads a
file first (one-line ``CAError`` when it cannot); :func:`format_info` renders the text
``mailward ca show`` prints.

The subject and issuer are given twice: as sendmail prints them in logs before encoding
(``/C=US/O=Example (Mail)/CN=host``, X509_NAME_oneline order) and in the ``+XX`` encoded form
that ``${cert_subject}`` / ``${cert_issuer}`` hold and that an access map ``CERTISSUER:`` /
``CERTSUBJECT:`` key must spell ("sendmail cf/README, STARTTLS", "relaying by client certificate";
the encoding is :func:`mailward.tls.dn.sendmail_dn`, used here, not re-implemented).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from mailward.ca.keys import public_key_der
from mailward.ca.store import load_cert, load_certs
from mailward.tls.dn import common_name, name_components, oneline, sendmail_dn


@dataclass(frozen=True)
class CertInfo:
    subject: str            # slash form as printed, unencoded
    issuer: str
    cert_subject: str       # +XX encoded: the ${cert_subject} / CERTSUBJECT: form
    cert_issuer: str        # +XX encoded: the ${cert_issuer} / CERTISSUER: form
    cn_subject: str
    cn_issuer: str
    sans: tuple[str, ...]   # "DNS:name", "IP:addr", "email:..."
    usage: tuple[str, ...]  # "server", "client" (from extendedKeyUsage; both when absent)
    is_ca: bool
    self_signed: bool
    key: str                # "EC P-256", "RSA 3072", ...
    serial: str             # upper-case hex
    not_before: str         # ISO 8601 UTC
    not_after: str
    days_left: int
    fingerprint_sha256: str  # of the certificate DER, colon-separated (openssl x509 -fingerprint)
    pubkey_sha256: str       # of the SubjectPublicKeyInfo DER, hex (DANE TLSA 3 1 1 data)


def _key_text(public_key) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "EC P-256", "secp384r1": "EC P-384",
                "secp521r1": "EC P-521"}.get(public_key.curve.name, f"EC {public_key.curve.name}")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(public_key).__name__


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    out = []
    for name in ext:
        if isinstance(name, x509.DNSName):
            out.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            out.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            out.append(f"email:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            out.append(f"URI:{name.value}")
    return tuple(out)


def _usage(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return ("server", "client")
    out = []
    if ExtendedKeyUsageOID.SERVER_AUTH in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku:
        out.append("server")
    if ExtendedKeyUsageOID.CLIENT_AUTH in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku:
        out.append("client")
    return tuple(out)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        return False


def describe(cert: x509.Certificate, when: dt.datetime | None = None) -> CertInfo:
    when = when or dt.datetime.now(dt.timezone.utc)
    der = cert.public_bytes(serialization.Encoding.DER)
    fingerprint = hashlib.sha256(der).hexdigest().upper()
    return CertInfo(
        subject=oneline(name_components(cert.subject)),
        issuer=oneline(name_components(cert.issuer)),
        cert_subject=sendmail_dn(cert.subject),
        cert_issuer=sendmail_dn(cert.issuer),
        cn_subject=common_name(cert.subject),
        cn_issuer=common_name(cert.issuer),
        sans=_sans(cert),
        usage=_usage(cert),
        is_ca=_is_ca(cert),
        self_signed=cert.subject == cert.issuer,
        key=_key_text(cert.public_key()),
        serial=f"{cert.serial_number:X}",
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        days_left=(cert.not_valid_after_utc - when).days,
        fingerprint_sha256=":".join(fingerprint[i:i + 2] for i in range(0, len(fingerprint), 2)),
        pubkey_sha256=hashlib.sha256(public_key_der(cert)).hexdigest(),
    )


def show(path: Path) -> CertInfo:
    """The first (leaf) certificate of a file."""
    return describe(load_cert(Path(path)))


def show_all(path: Path) -> list[CertInfo]:
    """Every certificate of a file, in file order (a chain file: leaf first)."""
    return [describe(cert) for cert in load_certs(Path(path))]


def _when(text: str) -> str:
    return dt.datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_info(info: CertInfo, path: Path | str | None = None) -> str:
    if info.days_left < 0:
        left = f"EXPIRED {-info.days_left} days ago"
    else:
        left = f"{info.days_left} days left"
    kind = "CA certificate" if info.is_ca else ", ".join(info.usage) or "no TLS usage"
    if info.self_signed:
        kind += ", self-signed"
    lines = []
    if path is not None:
        lines.append(f"file:           {path}")
    lines += [
        f"subject:        {info.subject}",
        f"issuer:         {info.issuer}",
        f"cn_subject:     {info.cn_subject}",
        f"cn_issuer:      {info.cn_issuer}",
        f"names (SAN):    {', '.join(info.sans) or '(none)'}",
        f"usage:          {kind}",
        f"key:            {info.key}",
        f"serial:         {info.serial}",
        f"valid:          {_when(info.not_before)} to {_when(info.not_after)} ({left})",
        f"sha256:         {info.fingerprint_sha256}",
        f"pubkey sha256:  {info.pubkey_sha256}",
        "",
        "sendmail +XX form (${cert_subject} / ${cert_issuer}, as access map keys need them):",
        f"cert_subject:   {info.cert_subject}",
        f"cert_issuer:    {info.cert_issuer}",
        "",
        "access map entries (each one line; the first relays for every certificate this issuer",
        "signed, or with SUBJECT instead of RELAY defers to CERTSUBJECT: lines like the second):",
        f"CERTISSUER:{info.cert_issuer}\tRELAY",
        f"CERTSUBJECT:{info.cert_subject}\tRELAY",
    ]
    return "\n".join(lines) + "\n"


def format_json(info: CertInfo, path: Path | str | None = None) -> str:
    data = asdict(info)
    if path is not None:
        data = {"file": str(path), **data}
    return json.dumps(data, indent=2) + "\n"
