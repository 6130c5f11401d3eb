"""Parsing of SMTP command arguments: paths and ESMTP parameters. Pure; no I/O.

Paths follow RFC 5321 §4.1.2 (Reverse-path / Forward-path): ``<local@domain>``, the null
path ``<>`` for MAIL, ``<postmaster>`` for RCPT, and a source route ``<@a,@b:user@d>``
which §4.1.1.3 says to accept and ignore. Non-ASCII is allowed only with SMTPUTF8
(RFC 6531 §3.3). Parameter values, such as DSN's ORCPT and ENVID (RFC 3461), are kept
verbatim, case preserved. Every failure raises :class:`SyntaxProblem` carrying the reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailward.smtp.replies import NOT_UTF8_ALLOWED, Reply


class SyntaxProblem(Exception):
    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


@dataclass(frozen=True)
class Path:
    address: str  # "" for the null reverse-path
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] if "@" in self.address else ""

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0] if "@" in self.address else self.address


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]"
_ATEXT_UTF8 = r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]|[^\x00-\x7f])"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
_DOT_ATOM_UTF8 = re.compile(rf"{_ATEXT_UTF8}+(?:\.{_ATEXT_UTF8}+)*\Z")
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e]|[^\x00-\x7f])*"\Z')
_LABEL = r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)"
_LABEL_UTF8 = r"(?:(?:[A-Za-z0-9]|[^\x00-\x7f])(?:(?:[A-Za-z0-9\-]|[^\x00-\x7f]){0,61}(?:[A-Za-z0-9]|[^\x00-\x7f]))?)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?\Z")
_DOMAIN_UTF8 = re.compile(rf"{_LABEL_UTF8}(?:\.{_LABEL_UTF8})*\.?\Z")
_ADDRESS_LITERAL = re.compile(r"\[(?:\d{1,3}(?:\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]+)\]\Z")
_PARAM_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*\Z")
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*\Z")
# An octet a command line may not hold: a control other than HTAB, or DEL (RFC 5321 §4.1.1:
# commands are printable text); one search instead of a Python step per octet.
COMMAND_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

MAX_LOCAL_PART = 64    # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255       # RFC 5321 §4.5.3.1.2
MAX_PATH = 256         # RFC 5321 §4.5.3.1.3, brackets included


def valid_domain(domain: str, utf8: bool = False) -> bool:
    if not domain or len(domain) > MAX_DOMAIN:
        return False
    return bool(_ADDRESS_LITERAL.match(domain) or (_DOMAIN_UTF8 if utf8 else _DOMAIN).match(domain))


def _syntax(text: str, code: int = 501, status: str = "5.1.3") -> SyntaxProblem:
    return SyntaxProblem(Reply(code, status, text))


def _split_path(arg: str) -> tuple[str, str]:
    """'<addr> PARAMS' → ('addr', 'PARAMS'); quoted local parts may contain '>' and spaces."""
    arg = arg.lstrip(" ")
    if not arg.startswith("<"):
        raise _syntax("Syntax error in mailbox address: expected <address>", 501, "5.5.2")
    i, quoted = 1, False
    while i < len(arg):
        ch = arg[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return arg[1:i], arg[i + 1:]
        i += 1
    raise _syntax("Syntax error in mailbox address: unbalanced <", 501, "5.5.2")


def _check_mailbox(address: str, utf8: bool) -> None:
    if len(address) + 2 > MAX_PATH:
        raise _syntax("Address too long (RFC 5321 §4.5.3.1.3)", 501, "5.1.3")
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise _syntax(f"<{address}>... Syntax error in mailbox address: missing local part or domain")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise _syntax(f"<{address}>... Local part too long (RFC 5321 §4.5.3.1.1)")
    atom = _DOT_ATOM_UTF8 if utf8 else _DOT_ATOM
    if not (atom.match(local) or _QUOTED.match(local)):
        raise _syntax(f"<{address}>... Syntax error in local part")
    if not valid_domain(domain, utf8):
        raise _syntax(f"<{address}>... Syntax error in domain")


def parse_params(text: str) -> dict[str, str | None]:
    """'SIZE=100 BODY=8BITMIME' → {'SIZE': '100', 'BODY': '8BITMIME'} (keys upper-cased)."""
    params: dict[str, str | None] = {}
    for item in text.split(" "):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not _PARAM_KEY.match(key) or (eq and not value):
            raise _syntax(f"Syntax error in parameter {item!r}", 501, "5.5.4")
        upper = key.upper()
        if upper in params:
            raise _syntax(f"Parameter {upper} given twice", 501, "5.5.4")
        params[upper] = value if eq else None
    return params


def parse_path(arg: str, *, kind: str, smtputf8: bool = False) -> Path:
    """Parse the argument after ``FROM:`` (kind='MAIL') or ``TO:`` (kind='RCPT').

    For RCPT, ``smtputf8`` says whether the transaction's MAIL carried SMTPUTF8.
    """
    inner, rest = _split_path(arg)
    if rest and not rest.startswith(" "):
        raise _syntax("Syntax error: a space must separate the address from parameters", 501, "5.5.2")
    params = parse_params(rest)
    utf8 = "SMTPUTF8" in params if kind == "MAIL" else smtputf8
    if inner.startswith("@"):  # source route: accept and ignore (RFC 5321 §4.1.1.3, Appendix C)
        route, colon, inner = inner.partition(":")
        if not colon:
            raise _syntax("Syntax error in source route", 501, "5.1.3")
    if not inner.isascii() and not utf8:
        raise SyntaxProblem(NOT_UTF8_ALLOWED)
    if inner == "":
        if kind != "MAIL":
            raise _syntax("Null recipient address <> is not allowed", 501, "5.1.3")
    elif kind == "RCPT" and inner.lower() == "postmaster":
        inner = "postmaster"  # RFC 5321 §4.5.1: <postmaster> without a domain must be accepted
    else:
        _check_mailbox(inner, utf8=utf8)
    return Path(inner, params)


def check_xtext(value: str) -> bool:
    """RFC 3461 §4: ENVID and ORCPT values are xtext."""
    return bool(_XTEXT.match(value))


# Inside a quoted local part: the quoted-pair backslash, and what separates the fields of a
# log line (", key=value") or the date of a Received: header ("; date").
_QUOTED_UNSAFE = frozenset(',=;\\')


def printable_address(address: str) -> str:
    """``address`` for a log line or a trace header: every character that is not printable
    (C0 and C1 controls such as U+0085, U+2028 and U+2029, format characters) becomes an
    escape (``\\x85``, ``\\u2028``), as do ``,`` ``=`` ``;`` and ``\\`` inside a quoted local
    part (RFC 5321 §4.1.2 lets a quoted string hold them), so that a client cannot end a
    line or forge a field of it. Every backslash in the result starts an escape; addresses
    without quotes or unprintable characters come back unchanged."""
    if address.isprintable() and '"' not in address:
        return address
    out, quoted, pair = [], False, False
    for ch in address:
        if pair:  # the character after a quoted-pair backslash is content, even a quote
            pair = False
            out.append(_escape(ch) if ch == '"' or ch in _QUOTED_UNSAFE or not ch.isprintable() else ch)
            continue
        if ch == '"':
            quoted = not quoted
            out.append(ch)
            continue
        if quoted and ch == "\\":
            pair = True
        if not ch.isprintable() or (quoted and ch in _QUOTED_UNSAFE):
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)


def printable_fields(fields: dict) -> dict:
    """Log fields that carry the client's words (addresses, and replies that quote them):
    a quoted local part may hold ', relay=...' or U+2028, which must neither pose as another
    field nor end the line (see :func:`printable_address`)."""
    return {k: printable_address(v) if isinstance(v, str) else v for k, v in fields.items()}


def printable_bytes(data: bytes) -> str:
    """Client bytes for a log line: printable ASCII as is, everything else as an escape
    (\\r, \\n, \\xNN), and ',' and '=' escaped too so that the text cannot pose as
    another field of the line."""
    text = data.decode("latin-1").encode("unicode_escape").decode("ascii")
    return text.replace(",", "\\x2c").replace("=", "\\x3d")


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
