"""Keys, subject names and subjectAltNames from what an administrator types.

Contract: pure functions (no files) that either return ``cryptography`` objects or raise
:class:`~mailward.ca.store.CAError` with a one-line message naming the bad value.

* :func:`generate_key`: ``"ec"`` is ECDSA P-256 (the default everywhere: fast, 128-bit
  strength, accepted by every TLS stack a mail server meets today); ``"rsa"`` is RSA 3072
  (same strength, for peers without ECDSA).
* :func:`parse_subject`: the slash form sendmail and OpenSSL print,
  ``/C=US/ST=California/O=Example/OU=Mail/L=Town``, with ``\\/`` for a literal slash; the CN
  given separately is appended last (or replaces a CN in the text), so the certificate's DN
  reads back exactly as ``mailward ca show`` and sendmail's ``${cert_subject}`` print it.
* :func:`parse_sans`: DNS names and IP addresses (an entry that parses as an IP address is an
  IP address; ``DNS:``/``IP:`` prefixes are accepted as OpenSSL spells them).
"""

from __future__ import annotations

import ipaddress
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from mailward.ca.store import CAError
from mailward.tls.dn import _SHORT_NAMES  # the one table of OpenSSL short names

KEY_TYPES = ("ec", "rsa")

# Short name → OID, the inverse of the table sendmail's DN form is printed with; plus the
# spellings OpenSSL also accepts on input.
_OIDS = {short: oid for oid, short in _SHORT_NAMES.items()}
_OIDS.update({"SP": NameOID.STATE_OR_PROVINCE_NAME, "S": NameOID.STATE_OR_PROVINCE_NAME,
              "E": NameOID.EMAIL_ADDRESS, "Email": NameOID.EMAIL_ADDRESS})
_OIDS_FOLDED = {k.lower(): v for k, v in _OIDS.items()}

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def generate_key(key_type: str = "ec"):
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise CAError(f"key type {key_type!r}: expected one of {', '.join(KEY_TYPES)}")


def key_pem(key, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM; encrypted with the best available cipher when a passphrase is given."""
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_key_der(key) -> bytes:
    """DER SubjectPublicKeyInfo of a private key, public key or certificate."""
    if isinstance(key, x509.Certificate):
        key = key.public_key()
    elif hasattr(key, "public_key"):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _split_subject(text: str) -> list[tuple[str, str]]:
    text = text.strip()
    if not text.startswith("/"):
        raise CAError(f"subject {text!r}: expected the form /C=US/ST=State/O=Org/OU=Unit/L=Town")
    parts: list[str] = []
    current = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if ch == "/":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    pairs = []
    for part in parts:
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise CAError(f"subject {text!r}: {part!r} is not NAME=value")
        pairs.append((name.strip(), value))
    return pairs


def parse_subject(text: str | None, cn: str | None) -> x509.Name:
    """An X.509 Name from the slash form plus a CN (appended last; replaces any CN in text)."""
    pairs = _split_subject(text) if text else []
    attributes = []
    for name, value in pairs:
        oid = _OIDS.get(name) or _OIDS_FOLDED.get(name.lower())
        if oid is None:
            raise CAError(f"subject {text!r}: unknown attribute {name!r}; expected one of "
                          "C, ST, L, O, OU, CN, emailAddress")
        if oid == NameOID.COMMON_NAME and cn:
            continue
        attributes.append((oid, value))
    if cn:
        attributes.append((NameOID.COMMON_NAME, cn))
    if not attributes:
        raise CAError("the subject is empty: give --cn NAME")
    out = []
    for oid, value in attributes:
        if not value:
            raise CAError(f"subject: {_SHORT_NAMES.get(oid, oid.dotted_string)}= is empty")
        if oid == NameOID.COUNTRY_NAME and (len(value) != 2 or not value.isalpha()):
            raise CAError(f"subject: C={value!r}: expected a two-letter ISO country code like US")
        if oid == NameOID.COMMON_NAME and len(value) > 64:
            raise CAError(f"subject: CN={value!r}: longer than the 64 characters X.509 allows")
        try:
            out.append(x509.NameAttribute(oid, value))
        except ValueError as err:
            raise CAError(f"subject: {_SHORT_NAMES.get(oid, oid.dotted_string)}={value!r}: {err}") from None
    return x509.Name(out)


def is_hostname(text: str) -> bool:
    name = text[2:] if text.startswith("*.") else text
    name = name.rstrip(".")
    return bool(name) and len(name) <= 253 and all(_DNS_LABEL.match(p) for p in name.split("."))


def parse_san(text: str) -> x509.GeneralName:
    """One subjectAltName entry: an IP address, else a DNS name (``DNS:``/``IP:`` prefixes ok)."""
    value = text.strip()
    kind = ""
    if value[:4].upper() == "DNS:":
        kind, value = "dns", value[4:]
    elif value[:3].upper() == "IP:":
        kind, value = "ip", value[3:]
    if kind != "dns":
        try:
            return x509.IPAddress(ipaddress.ip_address(value.strip("[]")))
        except ValueError:
            if kind == "ip":
                raise CAError(f"--san {text!r}: not an IP address") from None
    if not value.isascii():  # an internationalised name goes in as its A-label (RFC 5280 §7.2)
        try:
            value = value.encode("idna").decode("ascii")
        except UnicodeError:
            raise CAError(f"--san {text!r}: not a valid internationalised host name") from None
    if not is_hostname(value):
        raise CAError(f"--san {text!r}: not a host name or IP address")
    return x509.DNSName(value.rstrip(".").lower())


def parse_sans(values: list[str] | None, cn: str | None = None) -> list[x509.GeneralName]:
    """The SAN list: the given entries, plus the CN when it is a host name or IP address.

    Clients check a server's name against the SAN only (RFC 6125 §6.4.4 leaves the CN as a
    fallback that modern stacks dropped), so a CN that is a host name is always repeated here.
    """
    names: list[x509.GeneralName] = []
    for value in values or []:
        name = parse_san(value)
        if name not in names:
            names.append(name)
    if cn:
        try:
            name = parse_san(cn)
        except CAError:
            name = None
        if name is not None and name not in names:
            names.insert(0, name)
    return names


def signature_hash(key):
    # Ed25519/Ed448 keys sign without a separate hash; EC and RSA use SHA-256.
    return None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()
