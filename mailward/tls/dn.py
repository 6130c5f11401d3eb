"""Distinguished names in sendmail's form, and sendmail's ``+XX`` encoding.

sendmail prints a DN the way OpenSSL's ``X509_NAME_oneline`` does:
``/C=US/ST=California/O=Example/CN=host.example/emailAddress=a@b`` — attributes in
certificate order, OpenSSL short names; OpenSSL 3 escapes ``/`` and ``+`` inside values with a
backslash and writes other bytes as ``\\xHH``. Before a DN goes into ``${cert_subject}`` /
``${cert_issuer}`` (and so into the log and the access map), sendmail replaces every
character at or below space, at or above DEL, and each of ``< > ( ) " +`` by ``+XX``
("sendmail cf/README, STARTTLS", "relaying by client certificate"). That encoded form is what an
access map ``CERTISSUER:`` / ``CERTSUBJECT:`` key must contain.

Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Iterable

from cryptography import x509
from cryptography.x509.oid import NameOID

# OpenSSL's short names for the attributes a mail certificate carries.
_SHORT_NAMES = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "GN",
    NameOID.TITLE: "title",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.STREET_ADDRESS: "street",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionC",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.INITIALS: "initials",
}

# Characters sendmail encodes besides controls, space and 8-bit: the cf/README's list, and the
# backslash, which sendmail 8.17 encodes too (OpenSSL 3's '\\+' becomes '+5C+2B').
_SPECIALS = frozenset('<>()"+\\')


def xtext_encode(text: str) -> str:
    """Apply sendmail's ``+XX`` encoding (UTF-8 bytes above 0x7e become one ``+XX`` each)."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        if byte <= 0x20 or byte >= 0x7F or ch in _SPECIALS:
            out.append(f"+{byte:02X}")
        else:
            out.append(ch)
    return "".join(out)


def xtext_decode(text: str) -> str:
    """Undo :func:`xtext_encode` (for display); malformed ``+`` sequences stay as they are."""
    raw = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "+" and i + 2 < len(text) + 0 and _is_hex(text[i + 1 : i + 3]):
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
            continue
        raw.extend(ch.encode("utf-8"))
        i += 1
    return raw.decode("utf-8", "replace")


def _is_hex(pair: str) -> bool:
    return len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair)


def _oneline_value(value: str) -> str:
    """A value as OpenSSL 3's X509_NAME_oneline writes it: ``/`` and ``+`` get a backslash
    (OpenSSL 3.0 added this so that a DN cannot be forged by a value holding ``/CN=``), and
    every byte outside printable ASCII becomes ``\\xHH``."""
    out = []
    for byte in value.encode("utf-8", "surrogateescape"):
        if byte < 0x20 or byte > 0x7E:
            out.append(f"\\x{byte:02X}")
        elif byte in (0x2F, 0x2B):  # '/' and '+'
            out.append("\\" + chr(byte))
        else:
            out.append(chr(byte))
    return "".join(out)


def oneline(components: Iterable[tuple[str, str]]) -> str:
    """``/SN=value/...`` from (short name, value) pairs, in the order given, as OpenSSL 3
    prints it (what sendmail 8.17 puts in ${cert_subject} before the ``+XX`` encoding)."""
    return "".join(f"/{name}={_oneline_value(value)}" for name, value in components)


def name_components(name: x509.Name) -> list[tuple[str, str]]:
    """(short name, value) pairs of a ``cryptography`` Name, in certificate order."""
    pairs = []
    for rdn in name.rdns:
        for attr in rdn:
            short = _SHORT_NAMES.get(attr.oid) or attr.oid.dotted_string
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            pairs.append((short, value))
    return pairs


def sendmail_dn(name: x509.Name) -> str:
    """The DN as sendmail's ``${cert_subject}``/``${cert_issuer}`` hold it (encoded)."""
    return xtext_encode(oneline(name_components(name)))


def common_name(name: x509.Name) -> str:
    """The last CN of a name (what OpenSSL's X509_NAME_get_text_by_NID returns), or ''."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return ""
    value = values[-1].value
    return value if isinstance(value, str) else value.hex()
