"""Collect imagined rollouts with a token policy: the batch a GRPO update consumes.

One row per chunk step taken by any rollout: the observation the policy acted on, the sampled tokens and their
log-probs at sampling time (``old_log_probs``), which rollout and step it belongs to. Rewards, step counts and
first successes are in :class:`~wovr_core.rl.env.Trajectories`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from wovr_core.rl.env import Trajectories, WorldModelEnv
from wovr_core.rl.errors import PolicyError
from wovr_core.rl.protocols import Observations, TokenPolicy
from wovr_core.rl.starts import Start


@dataclass(frozen=True)
class RolloutBatch:
    """Imagined rollouts of one policy version, G per start."""

    trajectories: Trajectories
    observations: Observations  # M rows
    tokens: torch.Tensor  # (M, K) int64, on the CPU
    old_log_probs: torch.Tensor  # (M, K) float32, on the CPU
    rollout_index: np.ndarray  # (M,) int64
    step_index: np.ndarray  # (M,) int64
    temperature: float

    @property
    def num_rows(self) -> int:
        return len(self.rollout_index)

    @staticmethod
    def concat(parts: Sequence[RolloutBatch]) -> RolloutBatch:
        """Batches collected one after another (same policy version) as one: rollout indices renumbered."""
        if not parts:
            raise ValueError("cannot concatenate zero rollout batches")
        offsets = np.cumsum([0] + [p.trajectories.num_rollouts for p in parts[:-1]])
        return RolloutBatch(Trajectories.concat([p.trajectories for p in parts]),
                            Observations.concat([p.observations for p in parts]),
                            torch.cat([p.tokens for p in parts]), torch.cat([p.old_log_probs for p in parts]),
                            np.concatenate([p.rollout_index + o for p, o in zip(parts, offsets, strict=True)]),
                            np.concatenate([p.step_index for p in parts]), parts[0].temperature)

    def stats(self) -> dict[str, float]:
        """Success rate, mean return and steps, overall and per start source (``success/<source>``)."""
        traj = self.trajectories
        out = {"success_rate": float(traj.success.mean()), "mean_return": float(traj.returns.mean()),
               "mean_steps": float(traj.num_steps.mean()), "rollouts": float(traj.num_rollouts)}
        by_source: dict[str, list[bool]] = defaultdict(list)
        for i, ok in enumerate(traj.success):
            by_source[traj.starts[i // traj.group_size].source].append(bool(ok))
        for source, oks in sorted(by_source.items()):
            out[f"success/{source}"] = float(np.mean(oks))
        return out


def collect_rollouts(env: WorldModelEnv, policy: TokenPolicy, starts: Sequence[Start], group_size: int,
                     temperature: float, generator: torch.Generator | None = None,
                     groups_at_once: int = 0) -> RolloutBatch:
    """Run ``group_size`` rollouts from each start until every one has succeeded or reached the horizon.

    ``groups_at_once``: run at most that many starts' groups together, one batch after another (0: all),
    which bounds what the environment holds at once (a LIBERO twin per rollout takes about half a GB)."""
    if 0 < groups_at_once < len(starts):
        return RolloutBatch.concat([collect_rollouts(env, policy, starts[lo:lo + groups_at_once], group_size,
                                                     temperature, generator)
                                    for lo in range(0, len(starts), groups_at_once)])
    env.reset(starts, group_size)
    rows_obs, rows_tokens, rows_lp, rows_rollout, rows_step = [], [], [], [], []
    step = 0
    while not env.done:
        active = env.active_indices
        obs = env.observations()
        with torch.no_grad():
            sample = policy.sample(obs, temperature, generator)
        tokens, log_probs = sample.tokens.detach().cpu(), sample.log_probs.detach().float().cpu()
        n = len(active)
        if tokens.ndim != 2 or tokens.shape[0] != n or log_probs.shape != tokens.shape:
            raise ValueError(f"policy.sample returned tokens {tuple(tokens.shape)} and log-probs "
                             f"{tuple(log_probs.shape)} for {n} observations; expected (n, K) both")
        if not torch.isfinite(log_probs).all():
            raise PolicyError(f"the policy produced non-finite log-probs at chunk step {step}")
        env.step(sample.actions)
        rows_obs.append(obs)
        rows_tokens.append(tokens.long())
        rows_lp.append(log_probs)
        rows_rollout.append(active)
        rows_step.append(np.full(n, step, np.int64))
        step += 1
    return RolloutBatch(env.trajectories(), Observations.concat(rows_obs), torch.cat(rows_tokens),
                        torch.cat(rows_lp), np.concatenate(rows_rollout), np.concatenate(rows_step), temperature)


def imagined_success(env: WorldModelEnv, policy: TokenPolicy, starts: Sequence[Start], rollouts_per_start: int,
                     temperature: float, seed: int, start_batch: int = 8) -> dict[str, tuple[int, int]]:
    """A policy's success in imagination: ``task -> (successes, rollouts)`` over ``rollouts_per_start``
    rollouts from each start, ``start_batch`` starts imagined together. The seed fixes the sampling stream,
    so policies compared on the same starts see the same randomness."""
    generator = torch.Generator().manual_seed(seed)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for lo in range(0, len(starts), start_batch):
        batch = starts[lo:lo + start_batch]
        traj = collect_rollouts(env, policy, batch, rollouts_per_start, temperature, generator).trajectories
        for i, ok in enumerate(traj.success):
            task = counts[batch[i // rollouts_per_start].task]
            task[0] += int(ok)
            task[1] += 1
    return {task: (s, n) for task, (s, n) in counts.items()}
