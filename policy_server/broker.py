"""Serve one action per control step from action chunks, fetching the next chunk early enough that the
robot never waits at a chunk boundary. Torch-free; works with :class:`PolicyClient.infer` or any
in-process ``infer(obs) -> {"actions": ...}``.

Timeline (one ``act(obs)`` call per control step ``s``)::

    step:      s0 ........................ s0+T-1
    chunk A:   a0 a1 a2 a3 a4 a5 a6 a7            (requested with the observation of step s0)
    request B:             ^ sent at step r when the steps left in A <= latency estimate + margin
    chunk B:               b0 b1 b2 b3 ...        b0 belongs to step r: the steps that passed while B was
                                                  in flight are stale and skipped

With ``ensemble_decay`` set, overlapping chunks are blended ACT-style (temporal ensembling).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)
GRIPPER_DIM = 6
GRIPPER_OPEN = -1.0


@dataclass(frozen=True)
class BrokerConfig:
    control_hz: float = 20.0
    # Extra time on top of the measured latency quantile before a new chunk is requested.
    margin_s: float = 0.02
    latency_quantile: float = 0.9
    latency_window: int = 50
    # None = use the newest chunk only; k > 0 = ACT temporal ensembling with weights exp(-k * i), i = 0 oldest.
    ensemble_decay: float | None = None
    # Also request a chunk every this many steps (more overlap for ensembling); None = only when running out.
    request_every_steps: int | None = None
    # How long act() may block for a chunk when none covers the current step (first step, or starvation).
    max_wait_s: float = 1.0
    # What act() does when no chunk arrives in time: "hold" (zero motion, keep gripper) or "raise".
    on_failure: Literal["hold", "raise"] = "hold"

    def __post_init__(self) -> None:
        if self.control_hz <= 0:
            raise ValueError(f"control_hz must be > 0, got {self.control_hz}")
        if self.ensemble_decay is not None and self.ensemble_decay < 0:
            raise ValueError(f"ensemble_decay must be >= 0, got {self.ensemble_decay}")
        if self.request_every_steps is not None and self.request_every_steps < 1:
            raise ValueError(f"request_every_steps must be >= 1, got {self.request_every_steps}")


@dataclass
class BrokerStats:
    steps: int = 0
    requests: int = 0
    failed_requests: int = 0
    waited_steps: int = 0  # steps at which act() had to wait for a chunk (after the first one)
    hold_steps: int = 0  # steps answered with a hold action because no chunk was available
    stale_actions_skipped: int = 0
    latencies_s: deque = field(default_factory=lambda: deque(maxlen=1000))

    def latency_quantile(self, q: float, window: int | None = None) -> float | None:
        recent = list(self.latencies_s)[-window:] if window else list(self.latencies_s)
        return float(np.quantile(recent, q)) if recent else None


@dataclass(frozen=True)
class _Chunk:
    start_step: int  # the step whose observation produced it: actions[k] belongs to start_step + k
    actions: np.ndarray
    checkpoint_id: str = ""

    @property
    def end_step(self) -> int:  # exclusive
        return self.start_step + len(self.actions)

    def covers(self, step: int) -> bool:
        return self.start_step <= step < self.end_step


def ensemble_action(chunks: Sequence[_Chunk], step: int, decay: float) -> np.ndarray:
    """ACT temporal ensembling over every chunk that covers ``step`` (oldest first, weight exp(-decay*i)).

    The gripper is binary (-1/+1): averaging would command a half-open gripper, so it follows the newest chunk.
    """
    covering = [c for c in chunks if c.covers(step)]
    if not covering:
        raise ValueError(f"no chunk covers step {step}")
    stacked = np.stack([c.actions[step - c.start_step] for c in covering]).astype(np.float64)
    weights = np.exp(-decay * np.arange(len(covering)))
    action = (weights[:, None] * stacked).sum(0) / weights.sum()
    if stacked.shape[1] > GRIPPER_DIM:
        action[GRIPPER_DIM] = stacked[-1, GRIPPER_DIM]
    return action.astype(np.float32)


class ChunkBroker:
    """One action per ``act(obs)`` call, from chunks fetched ahead of time on a background thread."""

    def __init__(self, infer: Callable[[dict], Mapping[str, Any]], config: BrokerConfig = BrokerConfig()):
        self._infer = infer
        self.config = config
        self.stats = BrokerStats()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-broker")
        self._chunks: deque[_Chunk] = deque(maxlen=8)
        self._pending: concurrent.futures.Future | None = None
        self._pending_step = 0
        self._step = 0
        self._last_gripper = GRIPPER_OPEN
        self.last_checkpoint_id = ""

    # -------------------------------------------------------------------------------------------- public
    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The action for this control step (call exactly once per step with the newest observation)."""
        step = self._step
        self._step += 1
        self.stats.steps += 1
        self._collect(block=False)
        if not self._covered(step):
            self._wait_for_chunk(step, obs)
        if not self._covered(step):
            return self._hold(step)
        action = self._select(step)
        self._maybe_prefetch(step, obs)
        self._last_gripper = float(action[GRIPPER_DIM]) if action.shape[0] > GRIPPER_DIM else self._last_gripper
        return action

    def lead_steps(self) -> int:
        """Steps before the end of the current chunk at which the next one is requested."""
        latency = self.stats.latency_quantile(self.config.latency_quantile, self.config.latency_window) or 0.0
        return math.ceil((latency + self.config.margin_s) * self.config.control_hz)

    def reset(self) -> None:
        """New episode: forget chunks (a pending request is left to finish and then ignored)."""
        self._chunks.clear()
        self._pending = None
        self._step = 0
        self._last_gripper = GRIPPER_OPEN

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ChunkBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ internals
    def _request(self, obs: Mapping[str, Any]) -> tuple[np.ndarray, str, float]:
        t0 = time.perf_counter()
        reply = self._infer(dict(obs))
        actions = np.asarray(reply["actions"], dtype=np.float32)
        if actions.ndim != 2 or actions.shape[0] == 0:
            raise ValueError(f"expected actions of shape (T, D), got {actions.shape}")
        return actions, str(reply.get("checkpoint_id", "")), time.perf_counter() - t0

    def _submit(self, step: int, obs: Mapping[str, Any]) -> None:
        self.stats.requests += 1
        self._pending_step = step
        self._pending = self._executor.submit(self._request, obs)

    def _collect(self, block: bool, timeout_s: float | None = None) -> None:
        """Install the pending chunk if it is done (or, with ``block``, once it is)."""
        pending = self._pending
        if pending is None or (not block and not pending.done()):
            return
        try:
            actions, checkpoint_id, latency = pending.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            return
        except Exception as e:
            self._pending = None
            self.stats.failed_requests += 1
            log.warning("chunk request failed: %s: %s", type(e).__name__, e)
            if self.config.on_failure == "raise":
                raise
            return
        self._pending = None
        self.stats.latencies_s.append(latency)
        chunk = _Chunk(self._pending_step, actions, checkpoint_id)
        self.stats.stale_actions_skipped += max(0, min(self._step - 1, chunk.end_step) - chunk.start_step)
        self._chunks.append(chunk)
        self.last_checkpoint_id = checkpoint_id

    def _covered(self, step: int) -> bool:
        return any(c.covers(step) for c in self._chunks)

    def _wait_for_chunk(self, step: int, obs: Mapping[str, Any]) -> None:
        if step > 0:
            self.stats.waited_steps += 1
        deadline = time.perf_counter() + self.config.max_wait_s
        for _ in range(2):  # the pending (late) request, then a fresh one if that does not cover this step
            if self._pending is None:
                self._submit(step, obs)
            self._collect(block=True, timeout_s=max(0.0, deadline - time.perf_counter()))
            if self._covered(step) or time.perf_counter() >= deadline:
                return

    def _select(self, step: int) -> np.ndarray:
        while self._chunks and self._chunks[0].end_step <= step:
            self._chunks.popleft()
        if self.config.ensemble_decay is not None:
            return ensemble_action(list(self._chunks), step, self.config.ensemble_decay)
        newest = next(c for c in reversed(self._chunks) if c.covers(step))
        return newest.actions[step - newest.start_step].copy()

    def _maybe_prefetch(self, step: int, obs: Mapping[str, Any]) -> None:
        if self._pending is not None:
            return
        steps_left = max(c.end_step for c in self._chunks) - (step + 1)
        every = self.config.request_every_steps
        if steps_left <= self.lead_steps() or (every is not None and step - self._pending_step >= every):
            self._submit(step, obs)

    def _hold(self, step: int) -> np.ndarray:
        self.stats.hold_steps += 1
        message = f"no action chunk for step {step} within {self.config.max_wait_s} s"
        if self.config.on_failure == "raise":
            raise TimeoutError(message)
        log.warning("%s: holding position", message)
        hold = np.zeros(GRIPPER_DIM + 1, dtype=np.float32)
        hold[GRIPPER_DIM] = self._last_gripper
        return hold
