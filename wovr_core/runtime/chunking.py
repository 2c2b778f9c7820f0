"""Action-chunk scheduling: serve the step of the newest chunk that is due now; drop past steps."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wovr_core.types import ActionChunk


@dataclass(frozen=True)
class ScheduledAction:
    action: np.ndarray  # (7,)
    chunk_seq: int
    step: int  # index within the chunk
    t_obs: float  # capture time of the observation the chunk was computed from
    dropped: int  # steps of this chunk skipped (already in the past) just before this one
    remaining: int  # steps of this chunk left after this one


@dataclass
class ChunkStats:
    chunks: int = 0
    served: int = 0
    dropped: int = 0  # steps skipped because their time had passed
    replaced: int = 0  # unserved steps discarded when a newer chunk arrived
    ignored_chunks: int = 0  # chunks older than the one in use
    exhausted_cycles: int = 0  # cycles with no step left to serve

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class ChunkScheduler:
    """Step ``k`` of a chunk computed from an observation captured at ``t_obs`` is due at
    ``t_obs + k / control_hz``. At each control cycle the due step is served; steps whose time has
    passed (inference latency, overruns) are dropped, never executed late.

    ``tolerance`` (fraction of a period) absorbs cycle jitter so a cycle that runs slightly early
    does not serve the same step twice.
    """

    def __init__(self, control_hz: float, tolerance: float = 0.25):
        if not control_hz > 0:
            raise ValueError(f"control_hz must be > 0, got {control_hz}")
        self.dt = 1.0 / control_hz
        self.tolerance = tolerance
        self.stats = ChunkStats()
        self._chunk: ActionChunk | None = None
        self._next_step = 0

    @property
    def chunk(self) -> ActionChunk | None:
        return self._chunk

    def clear(self) -> None:
        self._chunk = None
        self._next_step = 0

    def submit(self, chunk: ActionChunk) -> bool:
        """Use ``chunk`` from now on; returns False (and ignores it) if it is older than the current one."""
        if self._chunk is not None and chunk.t_obs < self._chunk.t_obs:
            self.stats.ignored_chunks += 1
            return False
        if self._chunk is not None:
            self.stats.replaced += max(0, self._chunk.horizon - self._next_step)
        self._chunk = chunk
        self._next_step = 0
        self.stats.chunks += 1
        return True

    def due_step(self, now: float) -> int:
        """Index of the step of the current chunk due at ``now`` (may be past the end)."""
        if self._chunk is None:
            return 0
        return max(self._next_step, math.floor((now - self._chunk.t_obs) / self.dt + self.tolerance))

    def remaining(self, now: float) -> int:
        """Steps of the current chunk not yet in the past (including the one due now)."""
        if self._chunk is None:
            return 0
        return max(0, self._chunk.horizon - self.due_step(now))

    def next(self, now: float) -> ScheduledAction | None:
        """The action for the control cycle at ``now``, or None when nothing is left to serve."""
        chunk = self._chunk
        if chunk is None:
            self.stats.exhausted_cycles += 1
            return None
        step = self.due_step(now)
        dropped = min(step, chunk.horizon) - self._next_step
        if dropped > 0:
            self.stats.dropped += dropped
        if step >= chunk.horizon:
            self._next_step = chunk.horizon
            self.stats.exhausted_cycles += 1
            return None
        self._next_step = step + 1
        self.stats.served += 1
        return ScheduledAction(
            action=np.asarray(chunk.actions[step], dtype=np.float32).copy(), chunk_seq=chunk.seq, step=step,
            t_obs=chunk.t_obs, dropped=max(dropped, 0), remaining=chunk.horizon - step - 1,
        )
