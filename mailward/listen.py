"""``server.listen`` entries, parsed in one place: ``HOST:PORT``, ``[v6]:PORT``.

Used by the configuration check, the binding of the sockets at start, the privileged-port
rule and the delivery side's MX-loop check (the addresses it must not deliver to)."""

from __future__ import annotations


def parse_listen(item: str) -> tuple[str, int]:
    """``"127.0.0.1:2525"`` → ("127.0.0.1", 2525); ``"[::1]:25"`` → ("::1", 25). Raises
    ValueError naming what is expected."""
    host, sep, port = item.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host.strip("[]"):
        raise ValueError(f'HOST:PORT entries like "127.0.0.1:2525" or "[::1]:25" (not {item!r})')
    return host.strip("[]"), int(port)
