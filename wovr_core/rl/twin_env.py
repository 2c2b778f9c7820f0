"""``TwinEnv``: GRPO directly in the MuJoCo twin, the same-budget baseline of RL in imagination.

The interface :func:`~wovr_core.rl.rollout.collect_rollouts` drives (``reset(starts, group_size)``,
``done``, ``active_indices``, ``observations()``, ``step(actions)``, ``trajectories()``), with LIBERO in
place of the world model: a start is a task and one of LIBERO's fixed init states (:class:`TwinStart`), each
chunk step executes the chunk's actions in every active rollout's twin, and the success signal is LIBERO's
own predicate: ``s_t`` in {0, 1}, reward ``reward_scale * (s_t - s_{t-1})``, termination at the first
success, truncation at the horizon. Every rollout is a real (twin) trajectory and is counted against the
:class:`~wovr_core.rl.budget.TrajectoryBudget` when it starts.

With ``record=True`` the frames, states and actions of every rollout are kept for :meth:`TwinEnv.episodes`
(PACE writes them as new episodes for the world model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from wovr_core.rl.budget import TrajectoryBudget
from wovr_core.rl.env import GroupedRollouts, Trajectories
from wovr_core.rl.protocols import Observations
from wovr_core.rl.run_config import TwinEnvConfig
from wovr_core.types import ACTION_DIM, DUMMY_ACTION

TWIN_START = "twin"


@dataclass(frozen=True)
class TwinStart:
    """A group's start in the twin: a task of the suite and one of its LIBERO init states."""

    task_id: int
    init_state: int
    task: str = ""
    source: str = TWIN_START
    episode_index: int = -1
    frame_index: int = 0


@dataclass
class RecordedRollout:
    """One twin rollout as an episode: ``actions[t]`` led to frame t (``actions[0]`` is the dummy)."""

    task: str
    task_id: int
    init_state: int
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    success: bool = False


class _InProcessTwins:
    """The TwinPool interface over twins in this process (no parallelism; no process start-up either)."""

    def __init__(self, config, task_ids: list[int]):
        from wovr_core.sim.twin import LiberoTwin

        self.twins = [LiberoTwin(replace(config, task_id=t, seed=config.seed + i)) for i, t in enumerate(task_ids)]
        self.num_init_states = [t.num_init_states for t in self.twins]

    def __len__(self) -> int:
        return len(self.twins)

    def reset(self, init_states: list[int | None]) -> list[dict]:
        return [twin.reset(i) for twin, i in zip(self.twins, init_states, strict=True)]

    def step_some(self, indices: Sequence[int], actions: np.ndarray) -> list[tuple[dict, bool, bool, int]]:
        out = []
        for i, action in zip(indices, actions, strict=True):
            r = self.twins[i].step(action)
            out.append((r.obs, r.success, r.done, r.step))
        return out

    def close(self) -> None:
        for twin in self.twins:
            twin.close()
        self.twins = []


class _PooledTwins:
    """TwinPool (one process per rollout), stepping only the active rollouts."""

    def __init__(self, config, task_ids: list[int]):
        from wovr_core.sim.vec_env import TwinPool

        self.pool = TwinPool(config, len(task_ids), task_ids)
        self.num_init_states = self.pool.num_init_states

    def __len__(self) -> int:
        return len(self.pool)

    def reset(self, init_states: list[int | None]) -> list[dict]:
        return self.pool.reset(init_states)

    def step_some(self, indices: Sequence[int], actions: np.ndarray) -> list[tuple[dict, bool, bool, int]]:
        return self.pool.step_some(indices, actions)

    def close(self) -> None:
        self.pool.close()


class TwinEnv(GroupedRollouts):
    """Rollouts in LIBERO twins, G per start, stepped one action chunk at a time (see the module docstring)."""

    def __init__(self, config: TwinEnvConfig, cameras: Sequence[str], image_size: int,
                 budget: TrajectoryBudget | None = None, record: bool = False, budget_use: str = "twin_grpo"):
        from wovr_core.sim.twin import MAX_STEPS

        config.validate()
        self.config = config
        self.cameras = list(cameras)
        self.image_size = config.image_size or image_size
        self.budget, self.record, self.budget_use = budget, record, budget_use
        limit = config.max_steps or MAX_STEPS[config.suite]
        self.max_chunks = math.ceil(limit / config.chunk_size)
        self._twins: Any = None
        self._task_ids: list[int] = []
        self.recorded: list[RecordedRollout] = []

    def _twin_config(self):
        from wovr_core.sim.twin import TwinConfig

        return TwinConfig(suite=self.config.suite, image_size=self.image_size, cameras=tuple(self.cameras),
                          max_steps=self.max_chunks * self.config.chunk_size)

    def _ensure_twins(self, task_ids: list[int]) -> None:
        if self._twins is not None and self._task_ids == task_ids:
            return
        self.close()
        backend = _PooledTwins if self.config.processes else _InProcessTwins
        self._twins = backend(self._twin_config(), task_ids)
        self._task_ids = task_ids

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def reset(self, starts: Sequence[TwinStart], group_size: int) -> Observations:
        if not starts:
            raise ValueError("reset needs at least one start")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        n = len(starts) * group_size
        if self.budget is not None:
            self.budget.spend(n, self.budget_use)  # BudgetExceeded before any trajectory is taken
        rollout_start = np.repeat(np.arange(len(starts)), group_size)
        self._ensure_twins([starts[g].task_id for g in rollout_start])
        obs = self._twins.reset([starts[g].init_state for g in rollout_start])
        # The twin's predicate is 0 at a reset: s_{-1} = 0 for every rollout.
        self._begin([replace(s, task=s.task or obs[0]["task"]) for s in starts], group_size, self.max_chunks,
                    self.config.chunk_size, np.zeros(n, np.float32))
        self._tasks = tuple(o["task"] for o in obs)
        self._current = {c: np.stack([o[f"observation.images.{c}"] for o in obs]) for c in self.cameras}
        self._recording = []
        if self.record:
            for i, o in enumerate(obs):
                s = self._starts[rollout_start[i]]
                rec = RecordedRollout(o["task"], s.task_id, s.init_state)
                self._append(rec, o, DUMMY_ACTION)
                self._recording.append(rec)
        return self.observations()

    def _append(self, rec: RecordedRollout, obs: dict, action: np.ndarray) -> None:
        for c in self.cameras:
            rec.frames.setdefault(c, []).append(obs[f"observation.images.{c}"])
        rec.states.append(np.asarray(obs["observation.state"], np.float32))
        rec.actions.append(np.asarray(action, np.float32))

    def observations(self) -> Observations:
        self._require_reset()
        return Observations({c: v[self._active].copy() for c, v in self._current.items()},
                            tuple(self._tasks[i] for i in self._active))

    def step(self, actions: np.ndarray) -> None:
        """Execute one chunk (n_active, chunk_size, 7) in each active rollout's twin."""
        self._require_reset()
        n, chunk = len(self._active), self.config.chunk_size
        if n == 0:
            raise RuntimeError("all rollouts have finished; call reset()")
        actions = np.asarray(actions, np.float32)
        if actions.shape != (n, chunk, ACTION_DIM):
            raise ValueError(f"actions must be ({n}, {chunk}, {ACTION_DIM}) for the {n} active rollouts, "
                             f"got {actions.shape}")
        if not np.isfinite(actions).all():
            raise ValueError("actions contain NaN or inf")
        idx = self._active
        t = int(self._num_steps[idx[0]])
        success = np.zeros(n, bool)
        finished = np.zeros(n, bool)
        probs = np.zeros((n, chunk), np.float32)
        for k in range(chunk):
            running = np.flatnonzero(~finished)
            if not len(running):
                break
            results = self._twins.step_some(idx[running].tolist(), actions[running, k])
            for j, (obs, ok, done, _) in zip(running, results, strict=True):
                for c in self.cameras:
                    self._current[c][idx[j]] = obs[f"observation.images.{c}"]
                if self.record:
                    self._append(self._recording[idx[j]], obs, actions[j, k])
                success[j] |= ok
                finished[j] = done or ok
                probs[j, k:] = float(success[j])  # the predicate after each executed action (held to chunk end)
        rewards = self.config.reward_scale * success.astype(np.float32)  # s_{t-1} = 0 for a still-active rollout
        truncated = ~success & (finished | (t + 1 >= self.max_chunks))
        self._rewards[idx, t] = rewards
        self._probs[idx, t] = probs
        self._num_steps[idx] += 1
        self._first_success[idx[success]] = t
        for j in np.flatnonzero(success) if self.record else ():
            self._recording[idx[j]].success = True
        self._active = idx[~(success | truncated)]

    def trajectories(self) -> Trajectories:
        self._require_reset()
        if self.record and self.done:
            self.recorded.extend(self._recording)
            self._recording = []
        return super().trajectories()

    def episodes(self) -> list[RecordedRollout]:
        """The recorded rollouts of every finished batch so far (``record=True``), and forget them."""
        out, self.recorded = self.recorded, []
        return out

    def close(self) -> None:
        if self._twins is not None:
            self._twins.close()
        self._twins, self._task_ids = None, []

    def __enter__(self) -> TwinEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TwinStarts:
    """A StartSource over the suite's tasks and their LIBERO init states from ``first_init_state`` on
    (seeded, resumable); keep them apart from the evaluation's init states for a fair comparison."""

    def __init__(self, config: TwinEnvConfig, seed: int = 0):
        from wovr_core.sim.suites import get_task, task_names

        names = task_names(config.suite)
        self.task_ids = list(config.tasks) or list(range(len(names)))
        self.names = {t: names[t] for t in self.task_ids}
        self.num_init = {t: len(get_task(config.suite, t).init_states()) for t in self.task_ids}
        self.first = config.first_init_state
        self.rng = np.random.default_rng(seed)

    def sample(self, groups: int) -> list[TwinStart]:
        out = []
        for _ in range(groups):
            t = self.task_ids[int(self.rng.integers(len(self.task_ids)))]
            first = min(self.first, self.num_init[t] - 1)
            out.append(TwinStart(t, int(self.rng.integers(first, self.num_init[t])), self.names[t]))
        return out

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
