"""Counters over a sliding window, for what authenticated submission limits: failed AUTH
attempts per client address (``submission.max_auth_failures`` within
``submission.auth_failure_window``) and messages per authenticated user
(``submission.rate_limit_messages`` within ``submission.rate_limit_window``).

Client addresses are counted by :func:`address_key`: an IPv4 address as itself (also when it
arrives IPv4-mapped on a dual-stack socket, ``::ffff:192.0.2.1``), an IPv6 address by its
``submission.auth_failure_prefix_length`` network (/64 by default: one host usually holds a
whole /64, and counting single IPv6 addresses would give it 2^64 fresh starts).

Attempts in progress are counted by the session's server (``SMTPServer.auth_inflight``), beside
these failures: an AUTH waits while they could reach the limit (:mod:`.session_auth`).

In memory, per receiving process (with ``server.workers`` above 1 each worker counts its
own). Memory is bounded: at most ``MAX_KEYS`` keys and ``limit`` times per key are kept; past
``MAX_KEYS`` the keys with nothing left in their window are dropped, then the oldest.
:meth:`WindowCounter.resized` keeps what was counted when a reload changes the limits.
No I/O; the clock is a parameter for the tests.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from typing import Callable


def address_key(addr: str, ipv6_prefix: int = 64) -> str:
    """What a client address is counted as: IPv4 itself (IPv4-mapped IPv6 unwrapped), IPv6
    its /``ipv6_prefix`` network; anything that is not an address, as it is."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6 and ipv6_prefix < 128:
        return str(ipaddress.ip_network(f"{ip}/{ipv6_prefix}", strict=False))
    return str(ip)


class WindowCounter:
    MAX_KEYS = 100000

    def __init__(self, window: float, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.limit = max(1, limit)
        self.clock = clock
        self._times: dict[str, deque[float]] = {}

    def _current(self, key: str) -> deque[float] | None:
        times = self._times.get(key)
        if times is None:
            return None
        horizon = self.clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._times[key]
            return None
        return times

    def count(self, key: str) -> int:
        times = self._current(key)
        return len(times) if times else 0

    def reached(self, key: str) -> bool:
        """``limit`` events within the window already."""
        return self.count(key) >= self.limit

    def add(self, key: str) -> None:
        """Count an event now."""
        times = self._current(key)
        if times is None:
            if len(self._times) >= self.MAX_KEYS:
                self._shrink()
            times = self._times[key] = deque(maxlen=self.limit)
        times.append(self.clock())

    def resized(self, window: float, limit: int) -> "WindowCounter":
        """A counter with new limits that keeps what this one counted."""
        new = WindowCounter(window, limit, self.clock)
        for key in list(self._times):
            times = self._current(key)
            if times:
                new._times[key] = deque(times, maxlen=new.limit)
        return new

    def _shrink(self) -> None:
        for key in list(self._times):
            self._current(key)
        while len(self._times) >= self.MAX_KEYS:
            del self._times[next(iter(self._times))]
