"""Fixed-rate loop timing with overrun accounting."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Tick:
    """One cycle of a :class:`RateLoop`."""

    index: int
    t_start: float  # loop clock (monotonic) when the cycle started
    late_s: float  # how much later than scheduled the cycle started (> 0 after an overrun)


@dataclass
class RateStats:
    cycles: int = 0
    overruns: int = 0
    missed_ticks: int = 0  # whole periods skipped because of overruns
    total_overrun_s: float = 0.0
    max_overrun_s: float = 0.0
    last_overrun_s: float = 0.0
    last_period_s: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class RateLoop:
    """Runs cycles at ``hz`` on a fixed grid.

    A cycle that takes longer than the period is an overrun: the next cycle starts at once (no
    sleep), the ticks it missed are counted but never replayed in a burst, and the grid restarts
    from there. ``clock``/``sleep`` are injectable so tests can drive time.
    """

    def __init__(self, hz: float, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep):
        if not hz > 0:
            raise ValueError(f"RateLoop rate must be > 0 Hz, got {hz}")
        self.hz = float(hz)
        self.period = 1.0 / self.hz
        self._clock = clock
        self._sleep = sleep
        self.stats = RateStats()
        self._index = 0
        self._deadline: float | None = None
        self._cycle_start: float | None = None

    def start(self) -> Tick:
        """Anchor the grid now; returns the first tick."""
        now = self._clock()
        self._index = 0
        self._cycle_start = now
        self._deadline = now + self.period
        return Tick(0, now, 0.0)

    def wait(self) -> Tick:
        """End the current cycle: sleep until the next grid point (or account an overrun)."""
        if self._deadline is None:
            return self.start()
        now = self._clock()
        overrun = now - self._deadline
        self.stats.cycles += 1
        if overrun > 0:
            missed = int(overrun // self.period)
            self.stats.overruns += 1
            self.stats.missed_ticks += missed
            self.stats.total_overrun_s += overrun
            self.stats.max_overrun_s = max(self.stats.max_overrun_s, overrun)
            self.stats.last_overrun_s = overrun
            start, late = now, overrun
        else:
            self.stats.last_overrun_s = 0.0
            self._sleep(-overrun)
            start, late = self._deadline, max(0.0, self._clock() - self._deadline)
        self.stats.last_period_s = start - (self._cycle_start if self._cycle_start is not None else start)
        self._cycle_start = start
        self._deadline = start + self.period
        self._index += 1
        return Tick(self._index, start, late)

    def ticks(self, max_cycles: int | None = None,
              should_stop: Callable[[], bool] | None = None) -> Iterator[Tick]:
        """``for tick in loop.ticks(): ...`` — yields at the rate until stopped."""
        tick = self.start()
        count = 0
        while (max_cycles is None or count < max_cycles) and not (should_stop and should_stop()):
            yield tick
            count += 1
            if max_cycles is not None and count >= max_cycles:
                break
            tick = self.wait()
