"""Retry timing and limits, with a fake clock (no network part is involved here)."""

from __future__ import annotations

import asyncio
import random

from mailward.deliver.scheduler import Limits, RetryPolicy, Schedule

DAY = 86400.0


def test_backoff_doubles_from_five_minutes_to_four_hours_without_jitter():
    p = RetryPolicy(300, 14400, 0.0, 5 * DAY)
    assert [p.delay(n) for n in range(1, 9)] == [300, 600, 1200, 2400, 4800, 9600, 14400, 14400]


def test_jitter_stays_within_bounds_and_spreads():
    p = RetryPolicy(300, 14400, 0.2, 5 * DAY)
    rng = random.Random(7)
    first = [p.delay(1, rng) for _ in range(200)]
    assert all(240 <= d <= 360 for d in first) and len({round(d) for d in first}) > 50
    assert all(p.delay(20, rng) <= 14400 for _ in range(200))  # never more than 4 h apart


def test_a_deferred_message_over_five_days_with_a_fake_clock():
    """Simulate every attempt failing: times follow the backoff; the last try is at expiry."""
    p = RetryPolicy(300, 14400, 0.0, 5 * DAY)
    received = now = 1_000_000.0
    attempts, times = 0, []
    while True:
        attempts += 1
        times.append(now - received)
        if p.expired(received, now):
            break  # this failed attempt bounces the message
        now = p.next_attempt(received, now, attempts)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[:3] == [300, 600, 1200] and max(gaps) == 14400
    assert times[-1] == 5 * DAY and attempts == 36


def test_schedule_with_fake_clock_latest_add_wins_and_flush():
    s = Schedule()
    s.add("A", 100)
    s.add("B", 50)
    s.add("A", 10)  # rescheduled earlier
    assert s.next_time() == 10 and s.due(9) == []
    assert s.due(60) == ["A", "B"] and len(s) == 0
    s.add("C", 500)
    s.add("D", 400)
    s.remove("D")
    assert s.next_time() == 500
    s.everything_now(200)
    assert s.due(200) == ["C"]


def test_limits_total_and_per_destination():
    lim = Limits(total=3, per_destination=2)
    assert lim.acquire_now("a") and lim.acquire_now("a") and not lim.acquire_now("a")
    assert lim.acquire_now("b") and not lim.acquire_now("c")  # total reached
    lim.release("a")
    assert lim.acquire_now("c")


def test_limits_slot_waits_for_a_free_one():
    async def main():
        lim = Limits(total=10, per_destination=1)
        order = []

        async def job(name, hold):
            async with lim.slot("dest"):
                order.append(f"start {name}")
                await asyncio.sleep(hold)
                order.append(f"end {name}")

        await asyncio.gather(job("1", 0.05), job("2", 0))
        return order

    assert asyncio.run(main()) == ["start 1", "end 1", "start 2", "end 2"]
