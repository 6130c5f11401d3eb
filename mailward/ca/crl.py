"""Building a CRL (RFC 5280 §5): a pure function of the CA certificate and key, the index
entries and a number. Both the CA's creation (:mod:`mailward.ca.authority`, the first, empty
CRL) and revocation (:mod:`mailward.ca.revocation`) use it."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from mailward.ca import index as index_mod
from mailward.ca.keys import signature_hash

_REASON_FLAGS = {name: getattr(x509.ReasonFlags, attr) for name, attr in (
    ("unspecified", "unspecified"), ("keyCompromise", "key_compromise"),
    ("CACompromise", "ca_compromise"), ("affiliationChanged", "affiliation_changed"),
    ("superseded", "superseded"), ("cessationOfOperation", "cessation_of_operation"),
    ("certificateHold", "certificate_hold"), ("privilegeWithdrawn", "privilege_withdrawn"),
    ("AACompromise", "aa_compromise"))}
REASONS = tuple(_REASON_FLAGS)


def build_crl(ca_cert: x509.Certificate, ca_key, entries: list[index_mod.Entry], crl_number: int,
              days: int = 30, when: dt.datetime | None = None) -> x509.CertificateRevocationList:
    when = when or dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(when - dt.timedelta(minutes=5))
               .next_update(when + dt.timedelta(days=days))
               .add_extension(x509.CRLNumber(crl_number), critical=False))
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    except x509.ExtensionNotFound:
        pass
    for entry in entries:
        if entry.status != "R":
            continue
        revoked = (x509.RevokedCertificateBuilder().serial_number(entry.serial)
                   .revocation_date(entry.revoked_at or when))
        if entry.reason in _REASON_FLAGS and entry.reason != "unspecified":
            revoked = revoked.add_extension(x509.CRLReason(_REASON_FLAGS[entry.reason]), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(ca_key, signature_hash(ca_key))
