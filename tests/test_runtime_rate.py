"""RateLoop: fixed grid, overruns counted, missed ticks skipped (never replayed in a burst)."""

from __future__ import annotations

import time

import pytest

from wovr_core.runtime.rate import RateLoop


class ManualClock:
    """Time that only moves when the loop sleeps or the test says so."""

    def __init__(self):
        self.t = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def test_sleeps_the_rest_of_each_period():
    clock = ManualClock()
    loop = RateLoop(10, clock=clock, sleep=clock.sleep)
    loop.start()
    for work in (0.02, 0.05, 0.0):
        clock.t += work
        tick = loop.wait()
        assert tick.late_s == 0.0
    assert clock.sleeps == pytest.approx([0.08, 0.05, 0.1])
    assert clock.t == pytest.approx(100.3)
    assert loop.stats.overruns == 0 and loop.stats.cycles == 3


def test_overrun_is_accounted_and_grid_restarts():
    clock = ManualClock()
    loop = RateLoop(10, clock=clock, sleep=clock.sleep)
    loop.start()
    clock.t += 0.35  # 2.5 periods of work
    tick = loop.wait()
    assert tick.late_s == pytest.approx(0.25)
    assert loop.stats.overruns == 1 and loop.stats.missed_ticks == 2
    assert loop.stats.max_overrun_s == pytest.approx(0.25)
    assert clock.sleeps == []  # started the next cycle at once
    clock.t += 0.01
    loop.wait()
    assert clock.sleeps == pytest.approx([0.09])  # a full period after the late start, no burst
    assert loop.stats.last_period_s == pytest.approx(0.1)


def test_real_clock_keeps_rate():
    loop = RateLoop(50)
    t0 = time.perf_counter()
    ticks = list(loop.ticks(max_cycles=10))
    elapsed = time.perf_counter() - t0
    assert [t.index for t in ticks] == list(range(10))
    assert elapsed >= 9 * 0.02 * 0.95  # nine waits between ten ticks


def test_rejects_bad_rate():
    with pytest.raises(ValueError):
        RateLoop(0)
