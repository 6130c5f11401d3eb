"""When to try a message again, and how many deliveries may run at once.

Delivery attempts say only *Transient* or *Permanent*; timing belongs here (chasquid/Postfix
split). The rules, with Postfix's defaults (all in ``[delivery]``):

* :class:`RetryPolicy` — exponential backoff with jitter: after the n-th failed attempt wait
  ``retry_first * 2**(n-1)`` seconds, at most ``retry_max``, spread by ``+/- retry_jitter``
  (so that messages deferred together do not come back together), never past the moment the
  message expires; a message older than ``give_up_after`` whose attempt fails again is
  bounced (RFC 5321 §4.5.4.1: "give up ... at least 4-5 days").
* :class:`Schedule` — which queue ids are due when; a pure timetable read with an explicit
  ``now`` (tests drive it with a fake clock).
* :class:`Limits` — at most ``max_deliveries`` messages at once, and at most
  ``max_per_destination`` connections to one destination (a domain or a route).

Nothing here does I/O or reads the clock by itself; nothing here raises on any input.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    first: float = 300.0
    maximum: float = 14400.0
    jitter: float = 0.2
    give_up_after: float = 432000.0

    @classmethod
    def from_config(cls, d) -> "RetryPolicy":
        return cls(d.retry_first, d.retry_max, d.retry_jitter, d.give_up_after)

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1 = the first)."""
        n = max(1, attempts)
        base = min(self.first * (2 ** min(n - 1, 60)), self.maximum)
        if self.jitter and rng is not None:
            base += rng.uniform(-self.jitter, self.jitter) * base
        return max(0.0, min(base, self.maximum))

    def expired(self, received_at: float, now: float) -> bool:
        return now - received_at >= self.give_up_after

    def next_attempt(self, received_at: float, last_attempt: float, attempts: int,
                     rng: random.Random | None = None) -> float:
        """The time of the next attempt: backoff from the last one, but no later than expiry
        (so the last try happens when the message expires, and then it bounces)."""
        when = last_attempt + self.delay(attempts, rng)
        return min(when, received_at + self.give_up_after)


class Schedule:
    """A timetable of queue ids; the latest ``add`` for an id wins."""

    def __init__(self) -> None:
        self._when: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def add(self, qid: str, when: float) -> None:
        self._when[qid] = when
        heapq.heappush(self._heap, (when, qid))

    def remove(self, qid: str) -> None:
        self._when.pop(qid, None)

    def __contains__(self, qid: str) -> bool:
        return qid in self._when

    def __len__(self) -> int:
        return len(self._when)

    def when(self, qid: str) -> float | None:
        return self._when.get(qid)

    def _clean(self) -> None:
        while self._heap and self._when.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # superseded or removed

    def next_time(self) -> float | None:
        self._clean()
        return self._heap[0][0] if self._heap else None

    def due(self, now: float, limit: int | None = None) -> list[str]:
        """Ids whose time has come, earliest first, at most ``limit``; they leave the
        timetable (the others stay, so a busy runner takes only what it can start)."""
        out = []
        while limit is None or len(out) < limit:
            self._clean()
            if not self._heap or self._heap[0][0] > now:
                return out
            _, qid = heapq.heappop(self._heap)
            del self._when[qid]
            out.append(qid)
        return out

    def everything_now(self, now: float) -> None:
        """``mailward queue flush``: every id is due now."""
        for qid in list(self._when):
            self.add(qid, now)


class Limits:
    """Concurrency limits: in all, and per destination. ``async with limits.slot(dest):``."""

    def __init__(self, total: int, per_destination: int):
        self.total = total
        self.per_destination = per_destination
        self.active = 0
        self.by_destination: dict[str, int] = {}
        self._cond: asyncio.Condition | None = None

    def can_start(self, destination: str) -> bool:
        return self.active < self.total and self.by_destination.get(destination, 0) < self.per_destination

    def acquire_now(self, destination: str) -> bool:
        if not self.can_start(destination):
            return False
        self.active += 1
        self.by_destination[destination] = self.by_destination.get(destination, 0) + 1
        return True

    def release(self, destination: str) -> None:
        self.active -= 1
        left = self.by_destination.get(destination, 1) - 1
        if left > 0:
            self.by_destination[destination] = left
        else:
            self.by_destination.pop(destination, None)

    @asynccontextmanager
    async def slot(self, destination: str):
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            await self._cond.wait_for(lambda: self.acquire_now(destination))
        try:
            yield
        finally:
            async with self._cond:
                self.release(destination)
                self._cond.notify_all()
