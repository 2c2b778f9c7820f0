"""Mapping a device clock onto the host clock."""

from __future__ import annotations

from collections import deque


class DeviceClockMapper:
    """Estimates ``host_time - device_time`` from (device stamp, host receive time) pairs.

    Transport delay only ever adds to the observed difference, so the smallest difference seen
    recently is the best estimate of the clock offset (plus the minimum latency). A sliding
    window lets the estimate follow slow drift between the two clocks.
    """

    def __init__(self, window: int = 256):
        self._diffs: deque[float] = deque(maxlen=window)
        self.offset: float | None = None

    def update(self, device_time: float, host_receive_time: float) -> float:
        """Add one observation; returns the device time mapped to the host clock."""
        self._diffs.append(host_receive_time - device_time)
        self.offset = min(self._diffs)
        return device_time + self.offset

    def reset(self) -> None:
        self._diffs.clear()
        self.offset = None
