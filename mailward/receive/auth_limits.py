"""Counters over a sliding window, for what authenticated submission limits: failed AUTH
attempts per client address (``submission.max_auth_failures`` within
``submission.auth_failure_window``) and messages per authenticated user
(``submission.rate_limit_messages`` within ``submission.rate_limit_window``).

In memory, per receiving process (with ``server.workers`` above 1 each worker counts its
own). Memory is bounded: at most ``MAX_KEYS`` keys and ``limit`` times per key are kept; past
``MAX_KEYS`` the keys with nothing left in their window are dropped, then the oldest.
No I/O; the clock is a parameter for the tests.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable


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
        times = self._current(key)
        if times is None:
            if len(self._times) >= self.MAX_KEYS:
                self._shrink()
            times = self._times[key] = deque(maxlen=self.limit)
        times.append(self.clock())

    def _shrink(self) -> None:
        for key in list(self._times):
            self._current(key)
        while len(self._times) >= self.MAX_KEYS:
            del self._times[next(iter(self._times))]
