"""Access map lookups in sendmail's order (cf/m4/proto.m4: LookUpDomain, LookUpAddress,
LookUpFull, LookUpUser, SearchList).

* host name (``D``): the name, then each parent domain — ``a.b.example``, ``b.example``,
  ``example``; a bracketed address name ``[192.0.2.1]`` is shortened inside the brackets
  ``[192.0.2]``, ``[192.0]``, ``[192]`` (IPv6 ``[IPv6:...]`` by groups).
* address (``A``): the address, then shorter prefixes — IPv4 by octets (``192.0.2.1``,
  ``192.0.2``, ``192.0``, ``192``), IPv6 in sendmail's ``IPv6:`` form by groups
  (``IPv6:2001:db8:0:0:0:0:0:1``, ``IPv6:2001:db8:0:0:0:0:0`` ... ``IPv6:2001``, ``IPv6``).
* full address (``F``): ``user+detail@domain``, ``user+*@domain``, ``user@domain``.
* user (``U``): ``user+detail@``, ``user+*@``, ``user@``.
* exact (``E``): the key as given (``E:`` with an empty key is the bare tag ``Tag:``).

At each step the tagged key (``Tag:key``) is tried, and for the ordinary tags (sendmail's
``+`` mark: Connect, From, To) the untagged key right after it; TLS tags only look up
tagged keys (``!`` mark). The first key found wins. Every key tried is recorded in a
:class:`Trace`, which is what ``mailward policy test`` prints.

Pure functions over an :class:`~mailward.policy.accessmap.AccessMap`; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailward.policy.accessmap import AccessMap, Entry

_IPV4_BRACKET = re.compile(r"\[(.+)\.[^.:\]]+\]\Z")
_IPV6_BRACKET2 = re.compile(r"\[(.+)::[^.:\]]+\]\Z")
_IPV6_BRACKET1 = re.compile(r"\[(.+):[^.:\]]+\]\Z")
_ADDR_STEPS = (re.compile(r"(.+)::[^.:]+\Z"), re.compile(r"(.+):[^.:]+\Z"), re.compile(r"(.+)\.[^.:]+\Z"))


@dataclass
class Trace:
    """The keys tried, in order, each with the entry found (or None)."""

    tried: list[tuple[str, Entry | None]] = field(default_factory=list)

    def get(self, amap: AccessMap, key: str) -> Entry | None:
        entry = amap.get(key)
        self.tried.append((key, entry))
        return entry


def domain_keys(name: str) -> list[str]:
    """sendmail's LookUpDomain order for a host name (without tag)."""
    name = name.strip().rstrip(".")
    keys: list[str] = []
    while name and len(keys) < 128:
        keys.append(name)
        if name.startswith("["):
            for pattern in (_IPV4_BRACKET, _IPV6_BRACKET2, _IPV6_BRACKET1):
                m = pattern.match(name)
                if m:
                    name = f"[{m.group(1)}]"
                    break
            else:
                break
            continue
        _, dot, rest = name.partition(".")
        if not dot or not rest:
            break
        name = rest
    return keys


def addr_keys(addr: str) -> list[str]:
    """sendmail's LookUpAddress order for an address in ``${client_addr}`` form."""
    keys: list[str] = []
    while addr and len(keys) < 64:
        keys.append(addr)
        for pattern in _ADDR_STEPS:
            m = pattern.match(addr)
            if m:
                addr = m.group(1)
                break
        else:
            break
    return keys


def full_keys(address: str) -> list[str]:
    """LookUpFull: user+detail@domain, user+*@domain, user@domain."""
    local, _, domain = address.rpartition("@")
    keys = [address]
    user, plus, _detail = local.partition("+")
    if plus and user:
        keys += [f"{user}+*@{domain}", f"{user}@{domain}"]
    return keys


def user_keys(user_at: str) -> list[str]:
    """LookUpUser: user+detail@, user+*@, user@ (argument ends with '@')."""
    local = user_at[:-1]
    keys = [user_at]
    user, plus, _detail = local.partition("+")
    if plus and user:
        keys += [f"{user}+*@", f"{user}@"]
    return keys


def _probe(amap: AccessMap, trace: Trace, tag: str, keys: list[str], untagged: bool) -> Entry | None:
    for key in keys:
        entry = trace.get(amap, f"{tag}:{key}")
        if entry is None and untagged and key:
            entry = trace.get(amap, key)
        if entry is not None:
            return entry
    return None


def lookup_domain(amap: AccessMap, trace: Trace, tag: str, name: str, untagged: bool = False) -> Entry | None:
    return _probe(amap, trace, tag, domain_keys(name), untagged) if name else None


def lookup_addr(amap: AccessMap, trace: Trace, tag: str, addr: str, untagged: bool = False) -> Entry | None:
    return _probe(amap, trace, tag, addr_keys(addr), untagged) if addr else None


def lookup_bare_tag(amap: AccessMap, trace: Trace, tag: str) -> Entry | None:
    return trace.get(amap, f"{tag}:")


def host_keys(name: str, addr: str) -> list[str]:
    """The keys (without tag) that tls_client, tls_server, try_tls and srv_features look up
    for a peer, first hit wins — one sequence for the receiving and the sending side:

    1. the name and its parents (LookUpDomain): ``mx.good.test``, ``good.test``, ``test``;
       a bracketed name is shortened inside its brackets: ``[127.0.0.3]``, ``[127.0.0]`` ...
    2. the address in brackets, shortened the same way (LookUpAddress of sendmail 8.17),
       unless step 1 already looked those keys up (a ``[addr]`` route or client name);
    3. the bare address and its prefixes: ``127.0.0.3``, ``127.0.0``, ``127.0``, ``127``;
    4. ``""``: the bare ``Tag:``.

    ``addr`` is in sendmail's form (``127.0.0.1``, ``IPv6:::1``). Observed with sendmail 8.17
    delivering through ``esmtp:[127.0.0.3]`` and ``esmtp:mx.good.test`` routes."""
    keys: list[str] = domain_keys(name) if name else []
    if addr:
        keys += domain_keys(f"[{addr}]") + addr_keys(addr)
    seen: set[str] = set()
    ordered = [k for k in keys if not (k.lower() in seen or seen.add(k.lower()))]
    return ordered + [""]


def lookup_host(amap: AccessMap, trace: Trace, tag: str, name: str, addr: str) -> Entry | None:
    """:func:`host_keys` in order (TLS tags: tagged keys only): the lookups of tls_client,
    tls_server, try_tls and srv_features."""
    return _probe(amap, trace, tag, host_keys(name, addr), untagged=False)


def split_address(address: str) -> tuple[str, str]:
    """``<User@Domain.>`` → ("User", "domain"); no domain → (local part, "")."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if text.startswith("@") and ":" in text:  # source route @a,@b:user@c (RFC 5321 §4.1.2)
        text = text.split(":", 1)[1]
    local, at, domain = text.rpartition("@")
    if not at:
        return text, ""
    return local, domain.rstrip(".").lower()


def search_address(amap: AccessMap, trace: Trace, tag: str, address: str, untagged: bool,
                   with_user: bool = True, bare_tag: bool = False) -> Entry | None:
    """SearchList over <F:user@domain> <U:user@> <D:domain> [<E:>]: From:, To:, TLS_Rcpt:.

    ``with_user`` False leaves out the ``user@`` step (sendmail's blocklist for non-local
    recipients); ``bare_tag`` adds the bare ``Tag:`` default at the end (TLS_Rcpt)."""
    local, domain = split_address(address)
    if domain:
        entry = _probe(amap, trace, tag, full_keys(f"{local}@{domain}"), untagged)
        if entry is None and with_user:
            entry = _probe(amap, trace, tag, user_keys(f"{local}@"), untagged)
        if entry is None:
            entry = lookup_domain(amap, trace, tag, domain, untagged)
    else:
        entry = _probe(amap, trace, tag, user_keys(f"{local}@"), untagged) if local else None
    if entry is None and bare_tag:
        entry = lookup_bare_tag(amap, trace, tag)
    return entry
