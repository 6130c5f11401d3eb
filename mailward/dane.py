"""DANE for outbound SMTP: TLSA records and how a server's certificate chain matches them.

Standards: RFC 7672 (SMTP security via opportunistic DANE TLS), RFC 6698 (the TLSA record),
RFC 7671 (DANE updates and operational guidance), RFC 8460 §4.3 (the TLS-RPT failure kinds).

The contract:

* :func:`tlsa_lookup` (the one piece of I/O) asks a DNSSEC-reporting resolver
  (:class:`mailward.dns.SecureResolver`) for the TLSA RRset at ``_PORT._tcp.HOST``
  (RFC 7672 §2.2.3 / RFC 6698 §3), after checking that HOST's address records are secure
  (RFC 7672 §2.2.2: no TLSA lookup for a host whose addresses are not signed). When HOST is a
  CNAME whose expansion is secure, the TLSA RRset at the expanded name is tried first, then
  the one at the original name (RFC 7672 §2.2.2). The answer is a :class:`DaneLookup`:

  ``secure``   signed TLSA records were found. ``usable`` holds those an SMTP client may use
               (usages DANE-TA(2) and DANE-EE(3), selectors 0/1, matching types 0/1/2 with the
               right digest length); usages PKIX-TA(0)/PKIX-EE(1) and unknown parameters are
               unusable (RFC 7672 §3.1.3). ``tls_required`` is True whatever ``usable`` holds:
               with only unusable records TLS is still mandatory but the peer cannot be
               authenticated (RFC 7672 §2.2), and ``failure`` is ``tlsa-invalid``.
  ``none``     a secure denial of existence: no TLSA records, DANE does not apply.
  ``insecure`` the TLSA RRset, or the host's address records, are not signed: DANE does not
               apply (other sources such as MTA-STS or the access map decide).
  ``bogus``    the validating resolver said SERVFAIL (or did not answer): the caller defers the
               delivery to this host (RFC 7672 §2.1: a lookup failure is not a denial);
               ``failure`` is ``dnssec-invalid``.

* :func:`match_chain` (pure) decides whether a peer's certificate chain matches the usable
  records, after digest algorithm agility (:func:`agile`, RFC 7671 §9: a SHA2-256 record does
  not count beside a SHA2-512 one of the same usage and selector): DANE-EE(3) compares the
  leaf certificate or its public key (the SubjectPublicKeyInfo bytes as the certificate
  carries them), without name or expiry checks (RFC 7672 §3.1.1); DANE-TA(2) needs a
  certificate of the presented chain — or the trust anchor carried by a Full(0) record,
  RFC 7671 §5.2.2 — to match, the chain from the leaf up to it to verify (issuer names,
  signatures, validity dates, no unknown critical extension; issuers: CA basic constraints,
  keyCertSign, path length, DNS name constraints, RFC 5280 §4.2.1; the SSL-server purpose as
  OpenSSL checks it: serverAuth in any extendedKeyUsage, a leaf keyUsage fit for TLS) and the
  leaf to carry one of the reference names (RFC 7672 §3.2.2 and §3.2.3: subjectAltName DNS
  names, the subject CN only when there are none; a ``*`` is allowed as the whole left-most
  label above at least two labels and matches one label, RFC 6125 §6.4.3; U-label reference
  names are compared as A-labels). Only the first :data:`MAX_PRESENTED` certificates of the
  peer's chain are read, issuer paths are followed for :data:`MAX_CHAIN` steps.

Failure kinds (RFC 8460 §4.3) are given in ``failure`` of both results: ``tlsa-invalid``,
``dnssec-invalid``, ``certificate-host-mismatch``, ``validation-failure``; ``dane-required``
is the caller's (a policy asked for DANE and the lookup was ``insecure`` or ``none``), for
which :data:`DANE_REQUIRED` is the constant. Nothing here raises on peer data: bad records are
unusable, bad certificates do not match; :func:`match_chain` turns any exception into a
``validation-failure`` non-match (fail closed).

SECURITY: nothing DNS says without the trusted resolver's AD bit can make a TLSA situation
``secure``, and nothing an attacker does to DNS can turn a signed one into ``insecure`` or
``none``: failures, timeouts, truncation without TCP and validation errors are ``bogus``
(tests/dane/test_attacks.py plays that attacker on both sides of the validating resolver).
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Literal

import dns.name
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailward.dns import DNSError

TLSA_INVALID = "tlsa-invalid"
DNSSEC_INVALID = "dnssec-invalid"
DANE_REQUIRED = "dane-required"
HOST_MISMATCH = "certificate-host-mismatch"
VALIDATION_FAILURE = "validation-failure"

USAGE_NAMES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
_DIGEST_LENGTH = {0: None, 1: 32, 2: 64}      # RFC 6698 §2.1.3: SHA2-256, SHA2-512
MAX_CHAIN = 10                                 # longest issuer path followed for DANE-TA
MAX_PRESENTED = 32                             # certificates of a peer's chain looked at (the rest ignored)
_STRENGTH = {1: 1, 2: 2}                       # RFC 7671 §9: SHA2-512 is stronger than SHA2-256


@dataclass(frozen=True, repr=False)
class TLSA:
    """One TLSA record (RFC 6698 §2.1): certificate usage, selector, matching type, data."""
    usage: int
    selector: int
    mtype: int
    data: bytes

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"

    def __repr__(self) -> str:
        return f"TLSA({self})"

    @classmethod
    def parse(cls, text: str) -> "TLSA":
        """'3 1 1 ab12...' (the presentation form; the hex may be split by blanks)."""
        parts = text.split()
        if len(parts) < 4:
            raise ValueError(f"TLSA record needs usage, selector, matching type and data: {text!r}")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]), bytes.fromhex("".join(parts[3:])))

    @property
    def usable(self) -> bool:
        """Usable for SMTP (RFC 7672 §3.1.3, RFC 7671 §4): DANE-TA or DANE-EE, a known selector
        and matching type, and a digest of the right length."""
        if self.usage not in (2, 3) or self.selector not in (0, 1) or self.mtype not in _DIGEST_LENGTH:
            return False
        want = _DIGEST_LENGTH[self.mtype]
        return bool(self.data) and (want is None or len(self.data) == want)


@dataclass(frozen=True)
class DaneLookup:
    """What DNS says about DANE for one host and port (see the module docstring)."""
    state: Literal["secure", "insecure", "bogus", "none"]
    records: tuple[TLSA, ...]       # every TLSA record of the secure RRset used
    reason: str                     # one line for the log
    owner: str                      # the TLSA owner name used (``_25._tcp.mx.example``)
    usable: tuple[TLSA, ...] = ()   # the records an SMTP client may use (usages 2 and 3)
    failure: str = ""               # RFC 8460 §4.3 kind: tlsa-invalid, dnssec-invalid, or ''

    @property
    def tls_required(self) -> bool:
        """TLS is mandatory to this host: a secure, non-empty TLSA RRset (RFC 7672 §2.2), even
        when none of its records is usable."""
        return self.state == "secure" and bool(self.records)

    @property
    def authenticate(self) -> bool:
        """The peer's chain must match :attr:`usable` (:func:`match_chain`)."""
        return self.state == "secure" and bool(self.usable)


@dataclass(frozen=True)
class DaneMatch:
    """The verdict of :func:`match_chain`."""
    ok: bool
    usage: int | None               # the usage of the record that matched (2 or 3)
    reason: str                     # one line for the log
    matched: TLSA | None = None
    failure: str = ""               # '' when ok; else an RFC 8460 §4.3 kind


def tlsa_owner(host: str, port: int) -> str:
    """RFC 6698 §3: ``_PORT._tcp.HOST``."""
    return f"_{port}._tcp.{host.rstrip('.').lower()}"


def _records(rrset) -> tuple[TLSA, ...]:
    if rrset is None:
        return ()
    return tuple(TLSA(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in rrset)


def _secure_result(records: tuple[TLSA, ...], owner: str) -> DaneLookup:
    usable = tuple(r for r in records if r.usable)
    if usable:
        return DaneLookup("secure", records, f"{len(usable)} usable TLSA record(s) at {owner}", owner,
                          usable)
    return DaneLookup("secure", records, f"TLSA records at {owner} are all unusable for SMTP "
                      f"(RFC 7672 §3.1.3): TLS required, no authentication", owner, (), TLSA_INVALID)


async def _tlsa_at(resolver, owner: str) -> DaneLookup:
    try:
        got = await resolver.lookup(owner, "TLSA")
    except DNSError as err:
        what = ("SERVFAIL (bogus DNSSEC)" if err.servfail else
                "malformed answer (a record dnspython cannot parse)" if getattr(err, "malformed", False)
                else "no answer")
        return DaneLookup("bogus", (), f"TLSA lookup of {owner} failed: {what}", owner,
                          failure=DNSSEC_INVALID)
    if not got.secure:
        return DaneLookup("insecure", (), f"TLSA RRset of {owner} is not DNSSEC-signed", owner)
    records = _records(got.rrset)
    if not records:
        return DaneLookup("none", (), f"no TLSA records at {owner} (secure denial)", owner)
    return _secure_result(records, owner)


async def tlsa_lookup(resolver, host: str, port: int = 25) -> DaneLookup:
    """The TLSA records that apply to ``host`` on ``port`` (RFC 7672 §2.2.2); ``resolver`` is a
    :class:`mailward.dns.SecureResolver` (any Resolver built with ``dnssec=True``). Never raises
    for DNS failures: they are the ``bogus`` state."""
    host = host.rstrip(".").lower()
    owner = tlsa_owner(host, port)
    try:
        addrs = await resolver.address_lookup(host)
    except DNSError as err:
        if err.temporary:
            what = "SERVFAIL (bogus DNSSEC)" if err.servfail else "no answer"
            return DaneLookup("bogus", (), f"address lookup of {host} failed: {what}", owner,
                              failure=DNSSEC_INVALID)
        return DaneLookup("insecure", (), f"{host} has no address records: {err}", owner)
    if addrs.failure:   # A or AAAA failed: not "insecure", which would let an attacker downgrade
        return DaneLookup("bogus", (), f"address lookup of {host} failed: {addrs.failure}", owner,
                          failure=DNSSEC_INVALID)
    if not addrs.secure:
        return DaneLookup("insecure", (), f"address records of {host} are not DNSSEC-signed", owner)
    expanded = addrs.canonical.rstrip(".").lower()
    if expanded and expanded != host:
        # RFC 7672 §2.2.2: a secure CNAME: the TLSA RRset of the expanded name first
        first = await _tlsa_at(resolver, tlsa_owner(expanded, port))
        if first.state in ("secure", "bogus"):
            return first
    return await _tlsa_at(resolver, owner)


def reference_names(host: str, domain: str = "", lookup: DaneLookup | None = None) -> list[str]:
    """The names a DANE-TA certificate may carry (RFC 7672 §3.2.2): the MX host name and the
    next-hop domain (``domain``; empty for a ``[host]`` route), plus the CNAME-expanded host
    name when ``lookup`` found its TLSA records there. Lower case, no trailing dot, no repeats."""
    names = [host, domain]
    if lookup is not None and lookup.owner.count("._tcp.") == 1:
        names.append(lookup.owner.split("._tcp.", 1)[1])
    out: list[str] = []
    for name in names:
        name = name.strip().rstrip(".").lower()
        if name and name not in out:
            out.append(name)
    return out


# ---- matching (pure) ------------------------------------------------------------------------

def _der_tlv(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the content, end of the element) of the DER element at ``pos``."""
    tag, first = buf[pos], buf[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    n = first & 0x7F
    if not 1 <= n <= 4 or pos + 2 + n > len(buf):
        raise ValueError("bad DER length")
    length = int.from_bytes(buf[pos + 2:pos + 2 + n], "big")
    end = pos + 2 + n + length
    if end > len(buf):
        raise ValueError("DER element runs past its container")
    return tag, pos + 2 + n, end


def spki_der(cert: x509.Certificate) -> bytes:
    """The SubjectPublicKeyInfo exactly as the certificate carries it (RFC 6698 §2.1.2: the
    selector SPKI(1) digests these bytes). Read from the DER, not re-encoded: no key type is
    needed (an unknown algorithm is fine) and explicit parameters stay as they are."""
    tbs = cert.tbs_certificate_bytes
    tag, pos, end = _der_tlv(tbs, 0)
    if tag != 0x30:
        raise ValueError("tbsCertificate is not a SEQUENCE")
    if tbs[pos] == 0xA0:                 # [0] version
        pos = _der_tlv(tbs, pos)[2]
    for _ in range(5):                   # serial, signature, issuer, validity, subject
        pos = _der_tlv(tbs, pos)[2]
    tag, _, spki_end = _der_tlv(tbs, pos)
    if tag != 0x30 or spki_end > end:
        raise ValueError("no SubjectPublicKeyInfo")
    return tbs[pos:spki_end]


def _selected(cert: x509.Certificate, selector: int) -> bytes:
    if selector == 0:
        return cert.public_bytes(serialization.Encoding.DER)
    return spki_der(cert)


def _digest(data: bytes, mtype: int) -> bytes:
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    return data


def record_matches(record: TLSA, cert: x509.Certificate) -> bool:
    """The certificate's selected part, digested by the record's matching type, equals the data.
    False (never an exception) for a certificate that cannot be read."""
    try:
        return _digest(_selected(cert, record.selector), record.mtype) == record.data
    except Exception:
        return False


def tlsa_for(cert_der: bytes, usage: int = 3, selector: int = 1, mtype: int = 1) -> TLSA:
    """The TLSA record that matches a DER certificate (for tests and for ``mailward`` tools)."""
    cert = x509.load_der_x509_certificate(cert_der)
    return TLSA(usage, selector, mtype, _digest(_selected(cert, selector), mtype))


def agile(records) -> list[TLSA]:
    """RFC 7671 §9 (digest algorithm agility): of the usable records with the same usage and
    selector, only those with the strongest digest present are used — a key that matches
    only a SHA2-256 record when a SHA2-512 record is published is not accepted. Full(0)
    records are not digests and are always kept."""
    usable = [r for r in records if r.usable]
    best: dict[tuple[int, int], int] = {}
    for r in usable:
        if r.mtype in _STRENGTH:
            key = (r.usage, r.selector)
            best[key] = max(best.get(key, 0), _STRENGTH[r.mtype])
    return [r for r in usable if r.mtype not in _STRENGTH or _STRENGTH[r.mtype] == best[(r.usage, r.selector)]]


def _ascii_name(name: str) -> str:
    """Lower case, no trailing dot, U-labels as A-labels (certificates carry A-labels, RFC 6125
    §6.4.2); '' for a name that cannot be a host name."""
    name = name.strip()
    name = name[:-1] if name.endswith(".") else name
    if not name or name.endswith(".") or "*" in name:   # a reference name is never a pattern
        return ""
    if name.isascii():
        return name.lower()
    try:
        return dns.name.from_unicode(name).to_text(omit_final_dot=True).lower()
    except Exception:
        return ""


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 §6.4.3 as RFC 7672 §3.2.3 restricts it: ``*`` only as the whole left-most
    label, matching exactly one label, and only above a name of two labels or more
    (``*.com`` matches nothing, as OpenSSL); case-insensitive, trailing dots ignored, U-labels
    compared as A-labels."""
    pattern = pattern.lower() if pattern.isascii() else ""   # a SAN is IA5String
    pattern = pattern[:-1] if pattern.endswith(".") else pattern
    name = _ascii_name(name)
    if not pattern or not name:
        return False
    if pattern.startswith("*."):
        rest = pattern[2:]
        head, dot, tail = name.partition(".")
        return (bool(head) and bool(dot) and "*" not in rest and "." in rest
                and all(rest.split(".")) and tail == rest)
    return "*" not in pattern and pattern == name


def cert_names(cert: x509.Certificate) -> list[str]:
    """The DNS names a certificate is for: subjectAltName DNS entries, else the subject CNs.
    A certificate whose extensions or subject cannot be read has no names (never the CN in
    place of an unreadable subjectAltName); never raises."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    except Exception:
        return []
    if dns_names:
        return list(dns_names)
    try:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    except Exception:
        return []


def _valid_at(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _ext(cert: x509.Certificate, kind):
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None:
        return cert.version == x509.Version.v1   # RFC 5280 §4.2.1.9: v3 issuers say CA:TRUE
    return bool(bc.ca)


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
        return True
    except Exception:        # wrong name, bad signature, an algorithm cryptography lacks
        return False


def _in_subtree(name: str, base: str) -> bool:
    """RFC 5280 §4.2.1.10: a dNSName constraint covers the name itself and every name below
    it; a leading '.' covers only names below."""
    base = base.lower().rstrip(".")
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base) or not base


def _constraint_problem(issuer: x509.Certificate, depth: int, names: list[str]) -> str:
    """Why ``issuer`` may not vouch for a leaf with ``names`` ``depth`` CAs below it ('' if it
    may): key usage, path length and dNSName constraints (RFC 5280 §4.2.1.3, .9, .10)."""
    who = issuer.subject.rfc4514_string()
    ku = _ext(issuer, x509.KeyUsage)
    if ku is not None and not ku.key_cert_sign:
        return f"issuer {who} may not sign certificates (keyUsage)"
    bc = _ext(issuer, x509.BasicConstraints)
    if bc is not None and bc.path_length is not None and depth > bc.path_length:
        return f"issuer {who} allows {bc.path_length} intermediate CA(s) below it, the chain has {depth}"
    nc = _ext(issuer, x509.NameConstraints)
    if nc is not None:
        permitted = [g.value for g in nc.permitted_subtrees or () if isinstance(g, x509.DNSName)]
        excluded = [g.value for g in nc.excluded_subtrees or () if isinstance(g, x509.DNSName)]
        for name in names:
            name = name.lower().rstrip(".")
            if (permitted and not any(_in_subtree(name, b) for b in permitted)) or \
                    any(_in_subtree(name, b) for b in excluded):
                return f"issuer {who} is not allowed to certify {name} (name constraints)"
    return ""


_SERVER_EKU = {x509.ExtendedKeyUsageOID.SERVER_AUTH.dotted_string,
               "2.16.840.1.113730.4.1", "1.3.6.1.4.1.311.10.3.3"}   # serverAuth, Netscape/Microsoft SGC


def _purpose_problem(cert: x509.Certificate, leaf: bool) -> str:
    """Why ``cert`` may not serve (leaf) or vouch for (CA) a TLS server, as OpenSSL's
    SSL-server purpose check that Postfix applies to DANE-TA chains ('' when it may): an
    extendedKeyUsage must include serverAuth (anyExtendedKeyUsage alone is not enough); a
    leaf's keyUsage must allow digitalSignature, keyEncipherment or keyAgreement."""
    who = cert.subject.rfc4514_string()
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is not None and not any(o.dotted_string in _SERVER_EKU for o in eku):
        return f"certificate {who} is not for TLS servers (extendedKeyUsage)"
    ku = _ext(cert, x509.KeyUsage) if leaf else None
    if ku is not None and not (ku.digital_signature or ku.key_encipherment or ku.key_agreement):
        return f"certificate {who} is not for TLS servers (keyUsage)"
    return ""


def _unknown_critical(cert: x509.Certificate) -> bool:
    return any(e.critical and isinstance(e.value, x509.UnrecognizedExtension) for e in cert.extensions)


class _KeyOnly:
    """A DANE-TA(2) SPKI(1) Full(0) record used as the issuer of the topmost presented
    certificate when the trust anchor itself is not sent (RFC 7671 §5.2.2)."""

    def __init__(self, record: TLSA):
        self.record = record
        self.key = serialization.load_der_public_key(record.data)

    def signed(self, child: x509.Certificate) -> bool:
        # A throwaway certificate carrying the record's key under the child's issuer name lets
        # cryptography check the child's signature whatever its algorithm.
        from cryptography.hazmat.primitives import hashes
        try:
            signer = ec.generate_private_key(ec.SECP256R1())
            now = datetime.datetime.now(datetime.timezone.utc)
            holder = (x509.CertificateBuilder().subject_name(child.issuer).issuer_name(child.issuer)
                      .public_key(self.key).serial_number(1).not_valid_before(now)
                      .not_valid_after(now + datetime.timedelta(minutes=1)).sign(signer, hashes.SHA256()))
        except Exception:        # a key type no certificate can carry (X25519, DH): no match
            return False
        return _issued_by(child, holder)


def _ta_path(leaf: x509.Certificate, certs: list[x509.Certificate], ta: list[TLSA],
             now: datetime.datetime) -> tuple[TLSA | None, str]:
    """Follow issuers from the leaf through the presented certificates (and the trust-anchor
    certificates or keys published as Full(0) DANE-TA records, RFC 7671 §5.2.2) until one
    matches a DANE-TA record; every certificate on the way must be valid now, carry no
    unknown critical extension and be fit for a TLS server (:func:`_purpose_problem`), and
    every issuer must be a CA allowed to sign this path."""
    names = cert_names(leaf)
    extra: list[x509.Certificate] = []
    keys: list[_KeyOnly] = []
    for r in ta:
        if r.mtype != 0:
            continue
        try:
            if r.selector == 0:
                extra.append(x509.load_der_x509_certificate(r.data))
            else:
                keys.append(_KeyOnly(r))
        except Exception:
            continue            # record data that is no certificate or key: it just matches nothing
    candidates = certs + [c for c in extra if c not in certs]
    current, path = leaf, [leaf]
    for depth in range(MAX_CHAIN):
        issuer = next((c for c in candidates if c not in path and _issued_by(current, c)), None)
        if issuer is None:
            key = next((k for k in keys if k.signed(current)), None)
            if key is not None:
                return _path_verdict(path, key.record, now)
            return None, "no presented certificate matches a DANE-TA record on the leaf's issuer path"
        if not _is_ca(issuer):
            return None, f"issuer {issuer.subject.rfc4514_string()} is not a CA"
        problem = _constraint_problem(issuer, depth, names)
        if problem:
            return None, problem
        path.append(issuer)
        hit = next((r for r in ta if record_matches(r, issuer)), None)
        if hit is not None:
            return _path_verdict(path, hit, now)
        current = issuer
    return None, "issuer path too long"


def _path_verdict(path: list[x509.Certificate], hit: TLSA, now: datetime.datetime) -> tuple[TLSA | None, str]:
    expired = [c for c in path if not _valid_at(c, now)]
    if expired:
        return None, (f"certificate {expired[0].subject.rfc4514_string()} is not valid "
                      f"now (DANE-TA checks dates)")
    odd = [c for c in path if _unknown_critical(c)]
    if odd:
        return None, f"certificate {odd[0].subject.rfc4514_string()} has an unknown critical extension"
    for i, cert in enumerate(path):
        problem = _purpose_problem(cert, leaf=i == 0)
        if problem:
            return None, problem
    return hit, ""


def match_chain(records, chain_der: list[bytes], names: list[str],
                now: datetime.datetime | None = None) -> DaneMatch:
    """Does the peer's chain (leaf first, DER) match the usable ``records``? ``names`` are the
    reference identifiers for DANE-TA (RFC 7672 §3.2.2: the MX host name and the next-hop
    domain; after a secure CNAME, the expanded name too). ``now`` defaults to the current time.
    Never raises: whatever goes wrong with the peer's data is a non-match."""
    try:
        return _match_chain(records, chain_der, names, now)
    except Exception as err:     # fail closed: a chain we cannot judge is not a match
        return DaneMatch(False, None, f"the server's certificate chain could not be checked: "
                         f"{type(err).__name__}: {err}"[:300], None, VALIDATION_FAILURE)


def _match_chain(records, chain_der, names, now) -> DaneMatch:
    usable = agile(records)
    if not usable:
        return DaneMatch(False, None, "no usable TLSA records", None, TLSA_INVALID)
    if not chain_der:
        return DaneMatch(False, None, "the server presented no certificate", None, VALIDATION_FAILURE)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        certs = [x509.load_der_x509_certificate(bytes(d)) for d in list(chain_der)[:MAX_PRESENTED]]
    except (ValueError, TypeError) as err:
        return DaneMatch(False, None, f"unparsable certificate from the server: {err}", None,
                         VALIDATION_FAILURE)
    leaf = certs[0]
    for record in usable:   # DANE-EE(3): the leaf alone, no name or date (RFC 7672 §3.1.1)
        if record.usage == 3 and record_matches(record, leaf):
            return DaneMatch(True, 3, f"DANE-EE matched: {record.usage} {record.selector} "
                             f"{record.mtype}", record)
    ta = [r for r in usable if r.usage == 2]
    if not ta:
        return DaneMatch(False, None, "the server certificate matches no DANE-EE record", None,
                         VALIDATION_FAILURE)
    hit, why = _ta_path(leaf, certs, ta, now)
    if hit is None:
        return DaneMatch(False, None, f"DANE-TA: {why}", None, VALIDATION_FAILURE)
    have = cert_names(leaf)
    wanted = [w for w in (_ascii_name(n) for n in names if n) if w]
    if not any(name_matches(p, n) for p in have for n in wanted):
        return DaneMatch(False, 2, f"DANE-TA: certificate names {', '.join(have) or '(none)'} match "
                         f"none of {', '.join(wanted) or '(none)'}", hit, HOST_MISMATCH)
    return DaneMatch(True, 2, f"DANE-TA matched: {hit.usage} {hit.selector} {hit.mtype}", hit)
