"""Does a server certificate carry a host name? The reference-identifier check of RFC 6125.

:func:`cert_matches_host` answers for the leaf certificate (DER) and one DNS host name, as
MTA-STS (RFC 8461 §4.2: "the certificate presented by the receiving MTA ... MUST be valid for
the MX host name") and ``delivery.tls_floor = "verify"`` and REQUIRETLS (RFC 8689 §4.2.1) ask:

* the subjectAltName DNS names are compared; the subject CN only when the certificate has no
  DNS name at all (RFC 6125 §6.4.4);
* names are compared case-insensitively, without a trailing dot, internationalised names in
  their A-label form;
* ``*`` is allowed only as the whole left-most label and matches exactly one label
  (RFC 6125 §6.4.3): ``*.example.com`` matches ``mx.example.com``, not ``example.com`` nor
  ``a.b.example.com``.

Whether the chain verifies is OpenSSL's answer (``verify=OK``, :mod:`mailward.tls.context`);
this module checks the name only. Pure; a certificate that does not parse matches nothing.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID


def _norm(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii") if any(ord(c) > 127 for c in name) else name
    except UnicodeError:
        return name


def name_matches(pattern: str, host: str) -> bool:
    """One certificate name against one host name (RFC 6125 §6.4.1, §6.4.3)."""
    pattern, host = _norm(pattern), _norm(host)
    if not pattern or not host:
        return False
    if pattern.startswith("*."):
        rest = pattern[2:]
        if "*" in rest or "." not in rest:
            return False
        head, dot, tail = host.partition(".")
        return bool(head) and bool(dot) and tail == rest
    return "*" not in pattern and pattern == host


def cert_names(cert_der: bytes) -> list[str]:
    """The DNS names of the subjectAltName, else the subject CNs; [] for an unparsable certificate."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        return []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
        if names:
            return list(names)
    except x509.ExtensionNotFound:
        pass
    return [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) if isinstance(a.value, str)]


def cert_matches_host(cert_der: bytes, host: str) -> bool:
    """Is the certificate valid for ``host`` by name (see the module docstring)?"""
    return any(name_matches(n, host) for n in cert_names(cert_der))
