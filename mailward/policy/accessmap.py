"""The access map: sendmail's text format parsed into an in-memory index.

Format (what ``makemap hash access < access`` reads, so an existing sendmail access file
works unchanged)::

    # comment lines start with '#'; blank lines are skipped
    KEY<white space>VALUE
    Connect:192.168.1     RELAY
    From:spammer@x.test   ERROR:"550 We do not accept your mail"
    TLS_Clt:laptop.test   PERM+VERIFY:112

* One entry per line. The key is the first word, the value the rest of the line with the
  surrounding white space removed (so a value may contain spaces; quotes are kept and
  only removed where a reply text is taken from them).
* Keys are case-insensitive, as makemap folds them to lower case; the index holds them
  lower-cased and every lookup lower-cases its key.
* A complete IPv6 address written compressed (``Connect:IPv6:2001:db8::1``) is stored in
  sendmail's default uncompressed form (``IPv6:2001:db8:0:0:0:0:0:1``), the form in which
  sendmail's ``${client_addr}`` is looked up, so both spellings match.
* A key seen twice keeps its first value (makemap without ``-r``); the later line is kept
  in :attr:`AccessMap.warnings`.

* A key whose tag is one sendmail knows but mailward does not implement (``Spam:``,
  ``ClientRate:``, ``GreetPause:`` ...; :data:`UNIMPLEMENTED_TAGS`), or a tag neither knows
  (``Local_*`` tags of a site's own rulesets among them), is kept but has no effect; each
  such line is a warning in :attr:`AccessMap.warnings` naming the line and the tag, so an
  operator moving from sendmail learns what is not enforced instead of trusting it silently.

Values are checked at load time for the tags whose meaning mailward implements (see
:mod:`mailward.policy.rhs`; ``AuthInfo:`` values, the credentials for SMTP AUTH as a client,
by :mod:`mailward.policy.authinfo`, whose errors never quote the value: it holds a password). A bad line raises :class:`AccessMapError` naming the file,
the line and why; nothing else escapes the parser (property-tested).

Contract: :meth:`AccessMap.get` is a single dict probe; a loaded map is never mutated, so
a reference to it is a consistent snapshot (see :mod:`mailward.policy.holder` for reload).
"""

from __future__ import annotations

import ipaddress
import re
import sys
from array import array
from pathlib import Path
from typing import NamedTuple

import mailward.policy.authinfo as _authinfo
import mailward.policy.rhs as _rhs


# Tags the sendmail distribution's rulesets look up in the access map (sendmail cf/README,
# "Anti-Spam Configuration Control", "Delay all checks", "Connection Control", "Rate Control",
# "Queue Group Definitions", "STARTTLS", "SMTP AUTHENTICATION") that mailward does not act on,
# with what each does in sendmail (for the warning).
UNIMPLEMENTED_TAGS = {
    "spam": "FEATURE(delay_checks): spam friend/hater",
    "clientrate": "FEATURE(ratecontrol): connection rate limit",
    "clientconn": "FEATURE(conncontrol): concurrent connection limit",
    "greetpause": "FEATURE(greet_pause): pause before the greeting",
    "qgrp": "FEATURE(queuegroup): queue group selection",
    "clt_features": "client features for delivery",
    "badrcpt": "bad recipient throttling",
}
# Tags mailward looks up (mailward.policy.rhs, smtp_checks, tls_checks; AuthInfo: the delivery
# client, mailward.policy.authinfo).
IMPLEMENTED_TAGS = frozenset({"connect", "from", "to", "tls_clt", "tls_srv", "tls_rcpt", "try_tls",
                              "srv_features", "certissuer", "certsubject", "ipv6", "authinfo"})
_TAG_WARNINGS_MAX = 100  # a map of 10,000 ClientRate: lines gets 100 lines and a count, not 10,000


def unimplemented_tag(key: str) -> str | None:
    """Why the tag of ``key`` has no effect in mailward, or None (untagged, or a tag it implements)."""
    colon = key.find(":")
    if colon <= 0:
        return None
    tag = key[:colon]
    tag_l = tag.lower()
    if tag_l in IMPLEMENTED_TAGS or not _TAG_NAME.match(tag):
        return None
    what = UNIMPLEMENTED_TAGS.get(tag_l)
    if what is not None:
        return f"{tag}: tag not implemented by mailward (sendmail {what}); the entry has no effect"
    if tag_l.startswith("local_"):
        return f"{tag}: tag for a site's own sendmail rulesets (LOCAL_RULESETS), which mailward does not run; " \
               "the entry has no effect"
    return f"{tag}: tag not implemented by mailward (not a sendmail tag either); the entry has no effect"


_TAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_value(key: str, value: str) -> str | None:
    """Why ``value`` is not valid for ``key``'s tag, or None."""
    if key[:9].lower() == "authinfo:":
        return _authinfo.problem(value)
    return _rhs.check_value(key, value)


class AccessMapError(Exception):
    """A line of the access map that cannot be used: ``str(err)`` is ``file:line: why``."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


class Entry(NamedTuple):
    """One access map entry as written, and where: ``key`` is lower-cased. (A named tuple:
    lookups build one per hit, and it is the cheapest immutable record.)"""

    key: str
    value: str
    source: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def sendmail_addr(addr: str) -> str:
    """An address in sendmail's ``${client_addr}`` form: IPv4 dotted quad, or
    ``IPv6:`` followed by the eight groups uncompressed without leading zeros (sendmail's
    default, UseCompressedIPv6Addresses off). An IPv4-mapped IPv6 address becomes IPv4.
    Anything that is not an address is returned unchanged."""
    if _DOTTED_QUAD.match(addr):
        return addr  # the common case, without ipaddress's cost
    text = addr.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    bare = text[5:] if text[:5].lower() == "ipv6:" else text
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return "IPv6:" + ":".join(format(int(group, 16), "x") for group in ip.exploded.split(":"))
    return str(ip)


_DOTTED_QUAD = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\Z")
_ESCAPE_RE = re.compile(r"\+5c(?=.)", re.IGNORECASE)


def dn_key(dn: str) -> str:
    """A ``+XX``-encoded DN with OpenSSL's backslash escapes (``+5C``) removed: sendmail
    8.17 with OpenSSL 3 writes ``darth+5C+2Bcert`` where 8.12 wrote ``darth+2Bcert``;
    CERTISSUER/CERTSUBJECT keys and the DNs looked up are both reduced to this form, so an
    entry written either way matches a certificate reported either way."""
    return _ESCAPE_RE.sub("", dn)


def _normalise_key(key: str) -> str:
    key = key.lower()
    if "ipv6" not in key and not key.startswith("cert"):
        return key  # the common case, kept fast for million-entry maps
    tag, sep, rest = key.partition(":")
    if tag in ("certissuer", "certsubject") and sep:
        return f"{tag}:{dn_key(rest)}"
    if sep and tag != "ipv6" and rest.startswith("ipv6:") and "::" in rest:
        full = sendmail_addr(rest)
        if full != rest:
            return f"{tag}:{full.lower()}"
    elif tag == "ipv6" and "::" in rest:
        full = sendmail_addr(key)
        if full != key:
            return full.lower()
    return key


class AccessMap:
    """An immutable access map: key (lower case) → :class:`Entry`."""

    def __init__(self, source: str = "<empty>") -> None:
        self.source = source
        self._index: dict[str, int] = {}
        self._keys: list[str] = []
        self._values: list[str] = []
        self._lines = array("L")
        self.warnings: list[str] = []

    # -- building -------------------------------------------------------------------
    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> "AccessMap":
        """Parse the text of an access file; raise :class:`AccessMapError` on a bad line."""
        amap = cls(source)
        index = amap._index
        keys_append = amap._keys.append
        values_append = amap._values.append
        lines_append = amap._lines.append
        intern = sys.intern
        check = check_value
        checked: dict[tuple[str, str], str | None] = {}
        tag_warnings = 0
        for number, raw in enumerate(text.split("\n"), 1):  # lines end at LF only, as in makemap
            line = raw.strip()
            if not line or line[0] == "#":
                continue
            parts = line.split(None, 1)
            if len(parts) < 2:
                raise AccessMapError(source, number, f"no value for key {parts[0]!r} "
                                     "(write KEY<white space>VALUE, e.g. 'Connect:10.1 RELAY')")
            key, value = parts
            value = value.strip()
            if len(value) < 24:  # short values repeat (RELAY, ENCR:112): check each tag/value pair once
                memo = (key[:key.find(":") + 1].lower(), value)
                problem = checked.get(memo, False)
                if problem is False:
                    problem = checked[memo] = check(key, value)
            else:
                problem = check(key, value)
            if problem:
                raise AccessMapError(source, number, problem)
            if ":" in key and key[:key.find(":")].lower() not in IMPLEMENTED_TAGS:
                unused = unimplemented_tag(key)
                if unused:
                    tag_warnings += 1
                    if tag_warnings <= _TAG_WARNINGS_MAX:
                        amap.warnings.append(f"{source}:{number}: {unused}")
            key = _normalise_key(key)
            if key in index:
                first = amap._lines[index[key]]
                amap.warnings.append(f"{source}:{number}: duplicate key {key!r} ignored "
                                     f"(first entry on line {first} is used)")
                continue
            index[key] = len(amap._keys)
            keys_append(key)
            values_append(intern(value) if len(value) < 24 else value)
            lines_append(number)
        if tag_warnings > _TAG_WARNINGS_MAX:
            amap.warnings.append(f"{source}: {tag_warnings - _TAG_WARNINGS_MAX} more entries with tags mailward "
                                 "does not implement (not listed)")
        return amap

    @classmethod
    def load(cls, path: str | Path) -> "AccessMap":
        """Read and parse a file. An unreadable file is an :class:`AccessMapError` at line 0."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise AccessMapError(str(path), 0, f"cannot read the access map: {err.strerror}") from None
        return cls.from_text(data.decode("utf-8", "surrogateescape"), str(path))

    # -- lookups --------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` (any case), or None. One dict probe."""
        i = self._index.get(key.lower())
        if i is None:
            return None
        return Entry(self._keys[i], self._values[i], self.source, self._lines[i])

    def __contains__(self, key: str) -> bool:
        return key.lower() in self._index

    def __len__(self) -> int:
        return len(self._keys)

    def entries(self):
        """Every entry in file order."""
        for i, key in enumerate(self._keys):
            yield Entry(key, self._values[i], self.source, self._lines[i])


EMPTY = AccessMap()
