"""Right-hand sides of access map entries: their grammar, per tag.

Ordinary entries (``Connect:``, ``From:``, ``To:`` and untagged keys) take sendmail's
values: ``OK``, ``RELAY``, ``REJECT``, ``DISCARD``, ``SKIP``, ``ERROR:"550 text"``,
``ERROR:5.7.1:550 text``, ``QUARANTINE:reason`` and, as sendmail allows, a bare reply
``550 text``.

TLS requirements (``TLS_Clt:``, ``TLS_Srv:``, ``TLS_Rcpt:``; "sendmail cf/README,
STARTTLS", "Allowing Connections")::

    [TEMP+|PERM+] (VERIFY | VERIFY:bits | ENCR:bits) [+ext[++ext]...]
    ext: CN | CN:name | CS:name | CI:name | CITag:tag

plus ``OK`` (no requirement: sendmail's "some other value in access map: accept", used to
override a bare-tag default). ``Try_TLS:`` takes ``NO`` (or ``YES``); ``Srv_Features:``
takes letters; ``CERTISSUER:`` takes ``RELAY`` or ``SUBJECT``; ``CERTSUBJECT:`` ``RELAY``.
Other tags (``Spam:``, ``ClientRate:``, ``AuthInfo:`` ...) are kept but not checked, so a
sendmail file using features mailward lacks still loads; the map warns about each one
(``FILE:LINE``, the tag), as do ``mailward check`` and ``mailward policy check``.

Keywords are case-insensitive, as sendmail's rule matching is. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ORDINARY_TAGS = frozenset({"connect", "from", "to"})
TLS_TAGS = frozenset({"tls_clt", "tls_srv", "tls_rcpt"})
ORDINARY_WORDS = frozenset({"OK", "RELAY", "REJECT", "DISCARD", "SKIP"})
_TAG_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_REPLY_RE = re.compile(r"[245]\d\d([ -].*)?\Z", re.S)
_DSN_RE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")
_BITS_RE = re.compile(r"\d{1,9}\Z")
_BAD_PLUS_RE = re.compile(r"\+(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class TLSRequirement:
    """A parsed TLS requirement. ``kind`` is "VERIFY" or "ENCR" ("OK": none);
    ``prefix`` "PERM", "TEMP" or ""; ``bits`` the minimum (0: none); ``extensions`` a
    tuple of (name, argument-or-None) such as ("CN", "mx.example") or ("CN", None)."""

    kind: str
    prefix: str = ""
    bits: int = 0
    extensions: tuple[tuple[str, str | None], ...] = ()


class RHSError(ValueError):
    """A right-hand side that does not follow its tag's grammar."""


def parse_tls_requirement(value: str) -> TLSRequirement:
    """Parse a TLS_Clt/TLS_Srv/TLS_Rcpt value or raise :class:`RHSError`."""
    text = value.strip()
    if text.upper() == "OK":
        return TLSRequirement("OK")
    prefix = ""
    head = text[:5].upper()
    if head in ("PERM+", "TEMP+"):
        prefix, text = head[:4], text[5:]
    main, sep, ext_text = text.partition("+")
    word, colon, bits_text = main.partition(":")
    kind = word.upper()
    if kind not in ("VERIFY", "ENCR"):
        raise RHSError(f"unknown TLS requirement {value!r}; expected [TEMP+|PERM+]VERIFY, VERIFY:bits "
                       "or ENCR:bits, optionally followed by +CN:name++CS:dn++CI:dn")
    bits = 0
    if colon or kind == "ENCR":
        if not _BITS_RE.match(bits_text):
            raise RHSError(f"{kind} needs a number of bits, as in {kind}:112; got {value!r}")
        bits = int(bits_text)
    extensions: list[tuple[str, str | None]] = []
    if sep:
        for item in ext_text.split("++"):
            name, colon, arg = item.partition(":")
            upper = name.upper()
            if upper == "CN" and not colon:
                extensions.append(("CN", None))
            elif upper in ("CN", "CS", "CI") and arg:
                if _BAD_PLUS_RE.search(arg):
                    raise RHSError(f"'+' in {item!r} is neither +XX encoding nor '++': join extensions with "
                                   "'++', as in VERIFY+CN:mx.example++CI:/C=XX/CN=CA")
                extensions.append((upper, arg))
            elif name.lower() == "citag" and arg:
                extensions.append(("CITag", arg))
            else:
                raise RHSError(f"unknown TLS extension {item!r} in {value!r}; expected CN, CN:name, "
                               "CS:subject-dn or CI:issuer-dn, joined by '++'")
    return TLSRequirement(kind, prefix, bits, tuple(extensions))


def check_quotes(value: str) -> str | None:
    if value.count('"') % 2:
        return f"unterminated quote in {value!r}"
    return None


def unquote(text: str) -> str:
    """Remove the quotes sendmail's tokenizer would drop from a reply text."""
    return text.replace('"', "").strip()


@dataclass(frozen=True)
class Ordinary:
    """An ordinary value. ``word``: OK, RELAY, REJECT, DISCARD, SKIP, QUARANTINE or ERROR;
    for ERROR ``code``/``status``/``text`` hold the reply (status '' when not given)."""

    word: str
    code: int = 0
    status: str = ""
    text: str = ""


def parse_ordinary(value: str) -> Ordinary:
    """Parse a Connect:/From:/To:/untagged value or raise :class:`RHSError`."""
    problem = check_quotes(value)
    if problem:
        raise RHSError(problem)
    upper = value.upper()
    if upper in ORDINARY_WORDS:
        return Ordinary(upper)
    if upper.startswith("QUARANTINE:"):
        return Ordinary("QUARANTINE", text=unquote(value[11:]))
    if upper.startswith("ERROR:"):
        body = value[6:].strip()
        status = ""
        # ERROR:5.7.1:550 text (proto.m4: R<ERROR:$-.$-.$-:$+>)
        first, colon, rest = body.partition(":")
        if colon and _DSN_RE.match(first.strip()):
            status, body = first.strip(), rest
        return _reply(unquote(body), status, value)
    if _REPLY_RE.match(unquote(value)):
        return _reply(unquote(value), "", value)
    raise RHSError(f"unknown value {value!r}; expected OK, RELAY, REJECT, DISCARD, SKIP, "
                   'ERROR:"550 text" or ERROR:5.7.1:550 text')


def _reply(text: str, status: str, value: str) -> Ordinary:
    if not _REPLY_RE.match(text):
        raise RHSError(f"ERROR needs a reply code 4xx or 5xx followed by text, as in "
                       f'ERROR:"550 Access denied"; got {value!r}')
    code, rest = int(text[:3]), text[4:].strip()
    words = rest.split(None, 1)
    if not status and words and _DSN_RE.match(words[0]):
        # "550 5.7.1 text": the text carries its own enhanced status code
        status, rest = words[0], (words[1] if len(words) > 1 else "")
    if code < 400:
        raise RHSError(f"ERROR reply code must be 4xx or 5xx, got {code} in {value!r}")
    if status and status[0] != str(code)[0]:
        raise RHSError(f"status {status} does not agree with reply code {code} in {value!r}")
    return Ordinary("ERROR", code, status, rest)


SRV_FEATURE_LETTERS_USED = frozenset("SVv")


def check_value(key: str, value: str) -> str | None:
    """Why ``value`` is not valid for ``key``'s tag, or None. Used by the loader."""
    tag, sep, _ = key.partition(":")
    tag_l = tag.lower() if sep else ""
    try:
        if tag_l in TLS_TAGS:
            parse_tls_requirement(value)
        elif tag_l == "try_tls":
            if value.upper() not in ("NO", "YES"):
                return f"Try_TLS takes NO (do not use STARTTLS) or YES, not {value!r}"
        elif tag_l == "srv_features":
            if not re.fullmatch(r"[A-Za-z](\s*[A-Za-z])*", value):
                return f"Srv_Features takes letters such as V, v or S, not {value!r}"
        elif tag_l == "certissuer":
            if value.upper() not in ("RELAY", "SUBJECT"):
                return f"CERTISSUER takes RELAY or SUBJECT, not {value!r}"
        elif tag_l == "certsubject":
            if value.upper() != "RELAY":
                return f"CERTSUBJECT takes RELAY, not {value!r}"
        elif tag_l in ORDINARY_TAGS or not sep or tag_l == "ipv6" or not _TAG_RE.match(tag):
            parse_ordinary(value)
        else:
            return check_quotes(value)  # a tag mailward does not use: kept, not checked
    except RHSError as err:
        return str(err)
    return None
