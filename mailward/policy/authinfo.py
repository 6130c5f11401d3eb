"""``AuthInfo:`` entries of the access map: the credentials for SMTP AUTH as a client
("sendmail cf/README, SMTP AUTHENTICATION").

Format, one entry a line of the access map::

    AuthInfo:smarthost.example  "U:relayuser" "I:relayuser" "P:secret" "M:PLAIN LOGIN"
    AuthInfo:192.0.2.25         "U:other" "P=c2VjcmV0"
    AuthInfo:                   "U:default" "P:pw"         # every other host

The value is a list of tokens ``"TDstring"``, quotes included: ``T`` the item, ``D`` ``:``
for plain text or ``=`` for base64 (a password holding a ``"`` must be written that way):

* ``U`` user (authorization) id, ``I`` authentication id: at least one of them; a missing
  one takes the other's value (sendmail's rule).
* ``P`` password: required.
* ``R`` realm: kept (sendmail's default is ``$j``); PLAIN and LOGIN do not use it.
* ``M`` the mechanisms to try, in order, separated by spaces (default: every mechanism
  mailward implements, PLAIN then LOGIN).

Lookup, sendmail's ``authinfo`` ruleset: ``${server_name}`` with the ``AuthInfo:`` tag and
its parent domains, then ``${server_addr}`` and its prefixes, then the bare ``AuthInfo:``;
the first hit wins — the same keys as ``TLS_Srv:`` (:func:`mailward.policy.lookup.lookup_host`
with :data:`TAG`; the delivery client does that lookup). This module only parses: the
access map loader imports it to check each ``AuthInfo:`` line as it loads.

Failure behaviour: :func:`problem` says why a value is unusable without ever quoting it (a
password must not reach an error message or a log line); the map loader turns that into
``FILE:LINE: why``. :func:`parse` raises :class:`AuthInfoError` with the same text.
:class:`AuthInfo`'s ``repr`` leaves the password out. Pure functions, no I/O.

Security: the access map then holds passwords in clear. Keep it readable only by the user
mailward runs as (sendmail's advice: "either the access map must be unreadable by everyone
but root (or the trusted user) or FEATURE(`authinfo') must be used").
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

TAG = "AuthInfo"
_ITEMS = {"U": "user (authorization) id", "I": "authentication id", "P": "password", "R": "realm",
          "M": "list of mechanisms"}
_TOKEN = re.compile(r'\s*"([^"]*)"')
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}\Z")   # RFC 4422 §3.1 mechanism names


class AuthInfoError(ValueError):
    """An unusable ``AuthInfo:`` value; the text never holds the value itself."""


@dataclass(frozen=True)
class AuthInfo:
    """The credentials for one next hop. ``where`` is ``file:line`` of the entry (for log lines)."""
    user: str                                   # U: the authorization identity
    authid: str                                 # I: the authentication identity
    password: str = field(repr=False)
    realm: str = ""
    mechanisms: tuple[str, ...] = ()            # M:, upper-cased; () means every one implemented
    key: str = ""
    where: str = ""


def _items(value: str) -> dict[str, str]:
    items: dict[str, str] = {}
    pos, text = 0, value.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            if '"' in text[pos:] and text[pos:].count('"') % 2:
                raise AuthInfoError("unterminated quote: write each item as \"T:text\" or \"T=base64\"")
            raise AuthInfoError("text outside quotes: write each item as \"T:text\" or \"T=base64\" "
                                "(T one of U, I, P, R, M)")
        pos = m.end()
        token = m.group(1)
        tag, delimiter, body = token[:1].upper(), token[1:2], token[2:]
        if tag not in _ITEMS or delimiter not in (":", "="):
            raise AuthInfoError(f"an item must start with U, I, P, R or M and then ':' (text) or '=' "
                                f"(base64), as in \"U:user\"; got one starting with {token[:2]!r}"
                                if tag != "P" else "the password item must be \"P:text\" or \"P=base64\"")
        if tag in items:
            raise AuthInfoError(f"the {_ITEMS[tag]} ({tag}) is given twice")
        if delimiter == "=":
            try:
                body = base64.b64decode(body, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise AuthInfoError(f"the {_ITEMS[tag]} ({tag}=) is not base64 of UTF-8 text") from None
        items[tag] = body
    return items


def parse(value: str, key: str = "", where: str = "") -> AuthInfo:
    """The credentials of an ``AuthInfo:`` value, or :class:`AuthInfoError`."""
    items = _items(value)
    if not items.get("P"):
        raise AuthInfoError("no password: add \"P:password\" (or \"P=base64\")")
    user, authid = items.get("U", ""), items.get("I", "")
    if not user and not authid:
        raise AuthInfoError("no user: add \"U:user\" or \"I:authid\"")
    mechanisms = tuple(items.get("M", "").upper().split())
    for name in mechanisms:
        if not _MECHANISM.match(name):
            raise AuthInfoError(f"{name[:30]!r} in M: is not a SASL mechanism name (RFC 4422 §3.1)")
    return AuthInfo(user or authid, authid or user, items["P"], items.get("R", ""), mechanisms, key, where)


def problem(value: str) -> str | None:
    """Why ``value`` is not a usable ``AuthInfo:`` value, or None (for the map loader)."""
    try:
        parse(value)
    except AuthInfoError as err:
        return f"AuthInfo: {err}"
    return None
