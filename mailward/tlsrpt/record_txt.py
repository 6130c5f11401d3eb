"""The TLSRPT policy record (RFC 8460 §3): ``_smtp._tls.<domain>`` TXT → where reports go.

Pure. :func:`parse_record` reads one TXT string; :func:`select` applies §3's rules to all the
TXT strings of the name: records not starting with ``v=TLSRPTv1;`` are not TLSRPT records and
are dropped; "if the number of resulting records is not one, or if the resulting record is
syntactically invalid, senders MUST assume the recipient domain does not implement TLSRPT"
(None).

The grammar (§3)::

    tlsrpt-record  = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
    field-delim    = *WSP ";" *WSP
    tlsrpt-rua     = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
    tlsrpt-extension = tlsrpt-ext-name "=" tlsrpt-ext-value
    tlsrpt-ext-name  = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
    tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)

A URI must percent-encode "," and ";" (§3): they are decoded after splitting. Exactly one
``rua`` field is required. Only ``mailto:`` and ``https:`` are defined (§3 "rua"); other
schemes are kept in :attr:`TlsRptRecord.ignored` and not used. A ``mailto:`` names one
address (its ``?`` query, if any, is dropped); an ``https:`` URI is used as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

VERSION = "v=TLSRPTv1"
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+\Z")
_WSP = " \t"
_START = re.compile(r"v=TLSRPTv1[ \t]*;")
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9.-]+\Z")


@dataclass(frozen=True)
class TlsRptRecord:
    rua: tuple[str, ...]            # the URIs to use, decoded, in the record's order
    ignored: tuple[str, ...] = ()   # URIs of schemes RFC 8460 does not define


def _uri(text: str) -> str | None:
    """The decoded URI, or None when it is not a usable mailto:/https: URI."""
    if not text or any(c in text for c in " \t"):
        return None
    scheme, colon, rest = text.partition(":")
    if not colon:
        return None
    scheme = scheme.lower()
    if scheme == "mailto":
        address = unquote(rest.partition("?")[0])
        return f"mailto:{address}" if _ADDRESS.match(address) else None
    if scheme == "https":
        if not rest.startswith("//") or len(rest) <= 2 or rest[2] in "/?#":
            return None
        # only the two delimiters §3 makes the publisher encode are decoded: the rest of the
        # URI stays as written (an HTTP request line needs its other escapes)
        return "https:" + re.sub(r"%2[cC]", ",", re.sub(r"%3[bB]", ";", rest))
    return text     # a scheme we do not use: the caller keeps it aside


def parse_record(text: str) -> TlsRptRecord | None:
    """One TXT string → the record, or None when it is not a valid TLSRPT record."""
    if not _START.match(text):
        return None
    fields = [f.strip(_WSP) for f in text[len(VERSION):].split(";")]
    if fields[0] != "":          # "v=TLSRPTv1x..." or junk before the first ";"
        return None
    fields = fields[1:]
    if fields and fields[-1] == "":
        fields = fields[:-1]     # the optional trailing delimiter
    if not fields:
        return None
    rua: list[str] | None = None
    ignored: list[str] = []
    for f in fields:
        name, eq, value = f.partition("=")
        if not eq or not value:
            return None
        if name == "rua":
            if rua is not None:
                return None
            rua = []
            for item in value.split(","):
                item = item.strip(_WSP)
                uri = _uri(item)
                if uri is None:
                    return None
                if uri.split(":", 1)[0].lower() in ("mailto", "https"):
                    rua.append(uri)
                else:
                    ignored.append(uri)
        elif not (_EXT_NAME.match(name) and _EXT_VALUE.match(value)):
            return None
    if rua is None:
        return None
    return TlsRptRecord(tuple(dict.fromkeys(rua)), tuple(ignored))


def select(texts: list[str]) -> TlsRptRecord | None:
    """§3: of all TXT strings at ``_smtp._tls.<domain>``, the one TLSRPT record, else None."""
    candidates = [t for t in texts if _START.match(t)]
    if len(candidates) != 1:
        return None
    return parse_record(candidates[0])


def record_name(domain: str) -> str:
    return f"_smtp._tls.{domain.rstrip('.')}"
