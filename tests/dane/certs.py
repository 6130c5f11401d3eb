"""Certificates made to order for the DANE matching tests: CAs, intermediates and leaves with
the constraints an attacker would bend (basic constraints, path length, key usage, name
constraints, unknown critical extensions, dates), built with ``cryptography``.

``make("mx.example", issuer=ca, sans=["mx.example"])`` → :class:`Cert` (``cert``, ``key``,
``der``). Without ``issuer`` the certificate is self-signed. EC P-256 keys: fast to make.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

NOW = dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Cert:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def make(cn: str, *, issuer: Cert | None = None, ca: bool | None = None, path_len: int | None = None,
         sans: list[str] | tuple[str, ...] = (), ip_sans: tuple[str, ...] = (), key_cert_sign: bool = True,
         permitted: tuple[str, ...] = (), excluded: tuple[str, ...] = (), unknown_critical: bool = False,
         not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
         key: ec.EllipticCurvePrivateKey | None = None, digital_signature: bool = False,
         leaf_usage: tuple[str, ...] = (), eku: tuple[str, ...] = ()) -> Cert:
    """``leaf_usage``: keyUsage bits for a non-CA (``"digital_signature"``, ``"key_cert_sign"``…);
    ``eku``: extendedKeyUsage names (``"serverAuth"``, ``"clientAuth"``, ``"any"``)."""
    import ipaddress

    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - dt.timedelta(hours=1))
               .not_valid_after(not_after or NOW + dt.timedelta(days=30)))
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_len if ca else None),
                                        critical=True)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    elif leaf_usage:
        bits = {b: b in leaf_usage for b in ("digital_signature", "content_commitment", "key_encipherment",
                                             "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign")}
        builder = builder.add_extension(x509.KeyUsage(**bits, encipher_only=False, decipher_only=False),
                                        critical=True)
    if eku:
        oids = {"serverAuth": x509.ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": x509.ExtendedKeyUsageOID.CLIENT_AUTH,
                "any": x509.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
        builder = builder.add_extension(x509.ExtendedKeyUsage([oids[e] for e in eku]), critical=False)
    names = [x509.DNSName(s) for s in sans] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_sans]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if permitted or excluded:
        builder = builder.add_extension(x509.NameConstraints(
            [x509.DNSName(p) for p in permitted] or None, [x509.DNSName(e) for e in excluded] or None),
            critical=True)
    if unknown_critical:
        builder = builder.add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"), critical=True)
    signer = issuer.key if issuer else key
    return Cert(builder.sign(signer, hashes.SHA256()), key)
