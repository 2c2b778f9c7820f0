"""One masked-GRPO update of a token policy over a batch of imagined rollouts.

The rows in the loss (chunk steps up to the first success, in groups that were not dropped) are shuffled and
split into ``minibatches`` optimizer steps per epoch; each optimizer step accumulates gradients over
micro-batches of ``micro_batch_size`` rows. Row weights (1 / (T_valid * kept trajectories), times the number
of minibatches so each step has full-batch scale) make the accumulated gradient independent of the
micro-batch size. Gradients are clipped to ``max_grad_norm``.
"""

from __future__ import annotations

import numpy as np
import torch

from wovr_core.rl.config import GRPOConfig, TrainerConfig
from wovr_core.rl.errors import PolicyError
from wovr_core.rl.grpo import (
    TokenStats,
    clipped_token_loss,
    group_advantages,
    trajectory_weights,
    valid_steps,
)
from wovr_core.rl.protocols import TokenPolicy
from wovr_core.rl.rollout import RolloutBatch


class GRPOTrainer:
    """Owns the optimizer of a :class:`TokenPolicy` and applies GRPO updates to it."""

    def __init__(self, policy: TokenPolicy, config: TrainerConfig | None = None, grpo: GRPOConfig | None = None,
                 optimizer: torch.optim.Optimizer | None = None):
        self.policy = policy
        self.config = config or TrainerConfig()
        self.grpo = grpo or GRPOConfig()
        self.config.validate()
        self.grpo.validate()
        self.params = [p for p in policy.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the policy has no trainable parameters")
        self.optimizer = optimizer or torch.optim.AdamW(self.params, lr=self.config.lr,
                                                        weight_decay=self.config.weight_decay)
        self.shuffle_generator = torch.Generator().manual_seed(self.config.seed)  # saved in resumable checkpoints
        self.updates = 0

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """Apply the update; returns its statistics (``optimizer_steps`` is 0 when every group was dropped).

        Raises :class:`PolicyError` on non-finite log-probs, loss or gradient norm; the optimizer step
        in progress is not taken (earlier minibatches of the same update have been applied).
        """
        cfg, traj = self.config, batch.trajectories
        if traj.group_size != self.grpo.group_size:
            raise ValueError(f"the batch has groups of {traj.group_size}, the GRPO config {self.grpo.group_size}")
        if abs(batch.temperature - cfg.temperature) > 1e-9:
            raise ValueError(f"the batch was sampled at temperature {batch.temperature}, the trainer computes "
                             f"log-probs at {cfg.temperature}: the PPO ratio would be wrong")
        groups = group_advantages(torch.as_tensor(traj.returns), self.grpo)
        steps = valid_steps(torch.as_tensor(traj.num_steps), torch.as_tensor(traj.first_success),
                            self.grpo.mask_after_success)
        weights = trajectory_weights(steps, groups.keep)
        rollout = torch.as_tensor(batch.rollout_index)
        in_loss = (torch.as_tensor(batch.step_index) < steps[rollout]) & groups.keep[rollout]
        rows = torch.nonzero(in_loss).flatten()
        stats = {**{f"rollout/{k}": v for k, v in batch.stats().items()},
                 "dropped_groups": float(groups.dropped_groups), "num_groups": float(groups.num_groups),
                 "valid_fraction": float(len(rows)) / max(int(traj.num_steps.sum()), 1),
                 "rows": float(len(rows)), "optimizer_steps": 0.0, "loss": 0.0, "grad_norm": 0.0,
                 "clip_fraction": 0.0, "approx_kl": 0.0, "mean_ratio": 1.0}
        if len(rows) == 0:
            return stats
        token_stats, losses, grad_norms = TokenStats(), [], []
        for _ in range(cfg.epochs):
            order = rows[torch.randperm(len(rows), generator=self.shuffle_generator)]
            for part in torch.tensor_split(order, min(cfg.minibatches, len(order))):
                loss, part_stats, grad_norm = self._optimizer_step(batch, part, rollout, groups.advantages,
                                                                   weights * cfg.minibatches)
                token_stats, losses, grad_norms = token_stats + part_stats, losses + [loss], grad_norms + [grad_norm]
        self.updates += 1
        stats.update(loss=float(np.mean(losses)), grad_norm=float(np.mean(grad_norms)),
                     clip_fraction=token_stats.clip_fraction, approx_kl=token_stats.approx_kl,
                     mean_ratio=token_stats.mean_ratio, optimizer_steps=float(len(losses)))
        return stats

    def _optimizer_step(self, batch: RolloutBatch, rows: torch.Tensor, rollout: torch.Tensor,
                        advantages: torch.Tensor, weights: torch.Tensor) -> tuple[float, TokenStats, float]:
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        total, stats = 0.0, TokenStats()
        for micro in torch.split(rows, cfg.micro_batch_size):
            idx = micro.numpy()
            log_probs = self.policy.log_prob(batch.observations.select(idx), batch.tokens[micro], cfg.temperature)
            if log_probs.shape != batch.tokens[micro].shape:
                raise ValueError(f"policy.log_prob returned {tuple(log_probs.shape)} for tokens "
                                 f"{tuple(batch.tokens[micro].shape)}")
            if not torch.isfinite(log_probs).all():
                self.optimizer.zero_grad(set_to_none=True)
                raise PolicyError("the policy produced non-finite log-probs during the update; weights "
                                        "unchanged by this step")
            owner = rollout[micro]
            loss, micro_stats = clipped_token_loss(log_probs, batch.old_log_probs[micro], advantages[owner],
                                                   weights[owner], self.grpo)
            loss.backward()
            total += float(loss.detach())
            stats = stats + micro_stats
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm))
        if not np.isfinite(total) or not np.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise PolicyError(f"non-finite GRPO loss ({total}) or gradient norm ({grad_norm}); weights "
                                    "unchanged by this step")
        self.optimizer.step()
        return total, stats, grad_norm
