"""Is an address delivered on this machine? One function for the receiving side (RCPT:
relaying, the local-user check) and the delivering side (Maildir or SMTP)."""

from __future__ import annotations


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".") if "@" in address else ""


def local_address(address: str, local_domains, route=None) -> bool:
    """``<postmaster>`` (RFC 5321 §4.5.1, any case), a domain in ``local_domains``, or a
    domain that ``route`` (domain → route or None) sends to ``local``."""
    if "@" not in address:
        return address.lower() == "postmaster"
    domain = domain_of(address)
    if domain in local_domains:
        return True
    found = route(domain) if route is not None and domain else None
    return found is not None and found.kind == "local"
