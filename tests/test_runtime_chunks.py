"""ChunkScheduler: serves the step due now, drops past steps, prefers the newest chunk."""

from __future__ import annotations

import numpy as np

from wovr_core.runtime.chunking import ChunkScheduler
from wovr_core.types import ActionChunk

HZ = 10.0


def chunk(t_obs: float, horizon: int = 8, seq: int = 1) -> ActionChunk:
    actions = np.zeros((horizon, 7), np.float32)
    actions[:, 0] = np.arange(horizon)  # step index in x, to see which step was served
    actions[:, 6] = seq
    return ActionChunk(actions=actions, t_obs=t_obs, seq=seq)


def test_serves_steps_in_order_on_time():
    s = ChunkScheduler(HZ)
    s.submit(chunk(0.0))
    served = [s.next(0.0 + k * 0.1).step for k in range(8)]
    assert served == list(range(8))
    assert s.next(0.8) is None
    assert s.stats.dropped == 0 and s.stats.served == 8


def test_inference_latency_drops_past_steps():
    s = ChunkScheduler(HZ)
    s.submit(chunk(0.0))
    first = s.next(0.23)  # the chunk arrived 230 ms after its observation
    assert first.step == 2 and first.dropped == 2
    assert first.action[0] == 2.0
    assert s.next(0.31).step == 3


def test_jitter_does_not_repeat_or_skip():
    s = ChunkScheduler(HZ)
    s.submit(chunk(0.0))
    times = [0.0, 0.098, 0.205, 0.29, 0.41, 0.495]
    assert [s.next(t).step for t in times] == [0, 1, 2, 3, 4, 5]
    assert s.stats.dropped == 0


def test_overrun_drops_steps_never_executes_late():
    s = ChunkScheduler(HZ)
    s.submit(chunk(0.0))
    s.next(0.0)
    late = s.next(0.52)  # the loop stalled for 5 periods
    assert late.step == 5 and late.dropped == 4


def test_newer_chunk_replaces_older_and_older_is_ignored():
    s = ChunkScheduler(HZ)
    s.submit(chunk(0.0, seq=1))
    s.next(0.0)
    s.next(0.1)
    assert s.submit(chunk(0.15, seq=2))
    nxt = s.next(0.2)
    assert nxt.chunk_seq == 2 and nxt.step == 0
    assert s.stats.replaced == 6
    assert not s.submit(chunk(0.05, seq=3))
    assert s.stats.ignored_chunks == 1 and s.chunk.seq == 2


def test_remaining_and_exhaustion():
    s = ChunkScheduler(HZ)
    assert s.next(0.0) is None and s.remaining(0.0) == 0
    s.submit(chunk(0.0, horizon=4))
    assert s.remaining(0.0) == 4
    assert s.remaining(0.31) == 1
    assert s.next(5.0) is None
    assert s.stats.dropped == 4 and s.stats.exhausted_cycles == 2
