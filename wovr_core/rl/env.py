"""``WorldModelEnv``: a batch of imagined rollouts, G per start, stepped one action chunk at a time.

Per chunk step t each active rollout imagines ``chunk_size`` frames, the reward model scores every frame, and

- ``s_t`` = whether the chunk's last frame (``reward_frame="last"``, the reference: its per-frame differences
  summed over a chunk telescope to the last frame) or its best frame (``"max"``) is a success, p >= 0.5
  (``reward_signal="success"``, the paper's r = 1 at p >= 0.5), or that probability (``"probability"``);
- reward ``r_t = reward_scale * (s_t - s_{t-1})``, with ``s_{-1}`` that of the start frame (ours:
  the reference starts from 0; a group shares its start, so advantages are the same either way and the
  return reads as progress from the start);
- the rollout terminates at the first chunk whose max frame probability reaches ``done_threshold`` and is
  truncated after ``max_chunks`` steps.

Finished rollouts leave the model's batch (``state.select``), so a group that succeeds early costs nothing.
The environment records, per rollout, the steps taken and the first success step: the first whose scored frame
reaches ``success_threshold`` (s_t = 1: the paper's r = 1 at p >= 0.5), or the terminating step if that comes
first. The GRPO loss ends there; the steps between it and termination are the post-success steps it masks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wovr_core.rl.config import EnvConfig
from wovr_core.rl.errors import ImaginationError
from wovr_core.rl.protocols import Frames, ImaginationModel, Observations, SuccessScorer
from wovr_core.rl.starts import Start
from wovr_core.types import ACTION_DIM


@dataclass(frozen=True)
class StepResult:
    """What one chunk step did to the rollouts that were active before it."""

    indices: np.ndarray  # (n,) rollout indices
    frames: Frames  # camera -> (n, chunk, H, W, 3) uint8
    probs: np.ndarray  # (n, chunk) success probability of every imagined frame
    rewards: np.ndarray  # (n,)
    terminated: np.ndarray  # (n,) bool: max frame probability reached done_threshold at this step
    truncated: np.ndarray  # (n,) bool: horizon reached without success


@dataclass(frozen=True)
class Trajectories:
    """Per-rollout record of a finished (or ongoing) batch; rollout i belongs to group i // group_size."""

    group_size: int
    starts: tuple[Start, ...]  # one per group
    num_steps: np.ndarray  # (N,) chunk steps taken
    first_success: np.ndarray  # (N,) step index of the first success, -1 = none
    rewards: np.ndarray  # (N, max_chunks), 0 after the last step
    probs: np.ndarray  # (N, max_chunks, chunk), NaN after the last step
    start_probs: np.ndarray  # (N,) p(success) of the start frame (s_{-1} derives from it)

    @property
    def returns(self) -> np.ndarray:
        return self.rewards.sum(axis=1)

    @property
    def success(self) -> np.ndarray:
        return self.first_success >= 0

    @property
    def num_rollouts(self) -> int:
        return len(self.num_steps)

    @staticmethod
    def concat(parts: Sequence[Trajectories]) -> Trajectories:
        """The rollouts of several batches of the same environment as one (groups in order)."""
        if not parts:
            raise ValueError("cannot concatenate zero trajectory batches")
        if len({p.group_size for p in parts}) != 1 or len({p.rewards.shape[1:] for p in parts}) != 1:
            raise ValueError("trajectory batches of different group sizes or horizons cannot be concatenated")
        return Trajectories(parts[0].group_size, tuple(s for p in parts for s in p.starts),
                            *(np.concatenate([getattr(p, f) for p in parts])
                              for f in ("num_steps", "first_success", "rewards", "probs", "start_probs")))


class GroupedRollouts:
    """Bookkeeping shared by the environments that step G rollouts per start one chunk at a time (the world
    model's and the twin's): which rollouts still run, and each one's per-chunk record."""

    _starts: tuple = ()
    _group_size = 0

    def _begin(self, starts: Sequence[Any], group_size: int, max_chunks: int, chunk_size: int,
               start_probs: np.ndarray) -> None:
        n = len(starts) * group_size
        self._starts = tuple(starts)
        self._group_size = group_size
        self._active = np.arange(n)
        self._start_probs = start_probs.astype(np.float32)
        self._num_steps = np.zeros(n, np.int64)
        self._first_success = np.full(n, -1, np.int64)
        self._rewards = np.zeros((n, max_chunks), np.float32)
        self._probs = np.full((n, max_chunks, chunk_size), np.nan, np.float32)

    @property
    def num_rollouts(self) -> int:
        return len(self._num_steps) if self._starts else 0

    @property
    def active_indices(self) -> np.ndarray:
        """Rollouts still running, in the order of ``observations()`` and of ``step()``'s actions."""
        self._require_reset()
        return self._active.copy()

    @property
    def done(self) -> bool:
        return len(self._active) == 0

    def trajectories(self) -> Trajectories:
        self._require_reset()
        return Trajectories(self._group_size, self._starts, self._num_steps.copy(), self._first_success.copy(),
                            self._rewards.copy(), self._probs.copy(), self._start_probs.copy())

    def _require_reset(self) -> None:
        if not self._starts:
            raise RuntimeError("call reset() first")


class WorldModelEnv(GroupedRollouts):
    """Imagined rollouts over an :class:`ImaginationModel` scored by a :class:`SuccessScorer`."""

    def __init__(self, model: ImaginationModel[Any], scorer: SuccessScorer, config: EnvConfig | None = None):
        self.model = model
        self.scorer = scorer
        self.config = config or EnvConfig()
        self.config.validate()

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def reset(self, starts: Sequence[Start], group_size: int) -> Observations:
        """Start ``group_size`` rollouts from each start (rollouts ``[g*G, (g+1)*G)`` share start g)."""
        cfg = self.config
        if not starts:
            raise ValueError("reset needs at least one start")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        cameras = starts[0].cameras
        for s in starts:
            if s.cameras != cameras:
                raise ValueError(f"all starts must have the cameras {cameras}, got {s.cameras} (episode "
                                 f"{s.episode_index})")
        contexts = [s.full_context(cfg.memory_frames) for s in starts]
        frames = {c: np.stack([f[c] for f, _ in contexts]) for c in cameras}
        actions = np.stack([a for _, a in contexts]).astype(np.float32)
        state = self.model.observe(frames, actions)
        self._check_state(state, "observing the starts")
        current = {c: frames[c][:, -1] for c in cameras}
        start_probs = self._score(current, [s.task for s in starts], "the start frames")

        rollout_start = np.repeat(np.arange(len(starts)), group_size)
        self._begin(starts, group_size, cfg.max_chunks, cfg.chunk_size, start_probs[rollout_start])
        self._cameras = cameras
        self._tasks = tuple(starts[i].task for i in rollout_start)
        self._state = state.select(rollout_start)
        self._current = {c: v[rollout_start] for c, v in current.items()}
        self._prev_score = self._signal(start_probs[rollout_start]).astype(np.float64)
        return self.observations()

    def _signal(self, score: np.ndarray) -> np.ndarray:
        """s_t of a score: the success indicator or the probability itself (EnvConfig.reward_signal)."""
        cfg = self.config
        return (score >= cfg.success_threshold).astype(np.float64) if cfg.reward_signal == "success" else score

    def observations(self) -> Observations:
        """What the policy sees now, for the active rollouts."""
        self._require_reset()
        return Observations({c: v.copy() for c, v in self._current.items()},
                            tuple(self._tasks[i] for i in self._active))

    def step(self, actions: np.ndarray) -> StepResult:
        """Imagine one chunk for every active rollout: ``actions`` (n_active, chunk_size, 7) in robot units.

        Raises :class:`ImaginationError` (environment unchanged) when a model returns unusable values.
        """
        self._require_reset()
        cfg = self.config
        n = len(self._active)
        if n == 0:
            raise RuntimeError("all rollouts have finished; call reset()")
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (n, cfg.chunk_size, ACTION_DIM):
            raise ValueError(f"actions must be ({n}, {cfg.chunk_size}, {ACTION_DIM}) for the {n} active rollouts, "
                             f"got {actions.shape}")
        if not np.isfinite(actions).all():
            raise ValueError("actions contain NaN or inf")
        t = self._num_steps[self._active[0]]  # active rollouts advance in lockstep
        where = f"chunk step {t}"
        frames, state = self.model.imagine(self._state, actions)
        frames = self._check_frames(frames, n, where)
        self._check_state(state, where)
        flat = {c: v.reshape(n * cfg.chunk_size, *v.shape[2:]) for c, v in frames.items()}
        tasks = [task for i in self._active for task in [self._tasks[i]] * cfg.chunk_size]
        probs = self._score(flat, tasks, f"the frames of {where}").reshape(n, cfg.chunk_size)

        scored = probs[:, -1] if cfg.reward_frame == "last" else probs.max(axis=1)
        score = self._signal(scored)
        rewards = (cfg.reward_scale * (score - self._prev_score[self._active])).astype(np.float32)
        terminated = probs.max(axis=1) >= cfg.done_threshold
        succeeded = (scored >= cfg.success_threshold) | terminated
        truncated = ~terminated & (t + 1 >= cfg.max_chunks)

        # Commit (nothing above changed the environment).
        idx = self._active
        self._rewards[idx, t] = rewards
        self._probs[idx, t] = probs
        self._prev_score[idx] = score
        self._num_steps[idx] += 1
        first = idx[succeeded & (self._first_success[idx] < 0)]
        self._first_success[first] = t
        keep = ~(terminated | truncated)
        self._current = {c: v[:, -1] for c, v in frames.items()}
        if keep.all():
            self._state = state
        else:
            self._active = idx[keep]
            self._current = {c: v[keep] for c, v in self._current.items()}
            self._state = state.select(np.flatnonzero(keep)) if keep.any() else None
        return StepResult(idx, frames, probs, rewards, terminated, truncated)

    # ---- checks ----------------------------------------------------------------------------------------------
    def _describe_starts(self) -> str:
        shown = ", ".join(f"{s.source} ep {s.episode_index} frame {s.frame_index}" for s in self._starts[:4])
        return shown + (", ..." if len(self._starts) > 4 else "")

    def _check_frames(self, frames: Frames, n: int, where: str) -> Frames:
        cfg = self.config
        if not isinstance(frames, dict) or set(frames) != set(self._cameras):
            got = sorted(frames) if isinstance(frames, dict) else type(frames).__name__
            raise ImaginationError(f"world model returned cameras {got} at {where}, expected {self._cameras}")
        out = {}
        for c in self._cameras:
            x = np.asarray(frames[c])
            if x.dtype != np.uint8:
                bad = " (with NaN/inf)" if x.dtype.kind == "f" and not np.isfinite(x).all() else ""
                raise ImaginationError(f"world model returned {x.dtype} frames{bad} for {c!r} at {where}; "
                                       f"expected uint8 (starts: {self._describe_starts()})")
            if x.shape[:2] != (n, cfg.chunk_size) or x.ndim != 5 or x.shape[-1] != 3:
                raise ImaginationError(f"world model returned frames of shape {x.shape} for {c!r} at {where}; "
                                       f"expected ({n}, {cfg.chunk_size}, H, W, 3)")
            out[c] = x
        return out

    def _check_state(self, state: Any, where: str) -> None:
        if state is None or not callable(getattr(state, "select", None)):
            raise ImaginationError(f"world model returned a state without select() when {where}")
        # The protocol says nothing about a state's insides; tensors and arrays among its attributes are
        # checked (a NaN latent decodes to plausible-looking uint8 frames, so the frames cannot tell).
        if dataclasses.is_dataclass(state):
            values = [getattr(state, f.name) for f in dataclasses.fields(state)]
        else:
            values = list(getattr(state, "__dict__", {}).values())
        for v in values:
            finite = True
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                finite = bool(torch.isfinite(v).all())
            elif isinstance(v, np.ndarray) and v.dtype.kind == "f":
                finite = bool(np.isfinite(v).all())
            if not finite:
                raise ImaginationError(f"world model state holds NaN or inf after {where} "
                                       f"(starts: {self._describe_starts()})")

    def _score(self, frames: Frames, tasks: Sequence[str], what: str) -> np.ndarray:
        n = len(tasks)
        probs = np.asarray(self.scorer.success_probability(frames, list(tasks)), dtype=np.float64)
        if probs.shape != (n,):
            raise ImaginationError(f"reward model returned shape {probs.shape} for {n} frames of {what}")
        if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
            raise ImaginationError(f"reward model returned probabilities outside [0, 1] or NaN for {what}: "
                                   f"{probs[~((probs >= 0) & (probs <= 1))][:4].tolist()}")
        return probs
