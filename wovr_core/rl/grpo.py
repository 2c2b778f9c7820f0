"""Masked GRPO: the objective of RL in imagination, as pure torch functions.

For N trajectories in groups of G that share a start (DESIGN.md section 4):

1. Return ``R_i`` = sum of the trajectory's rewards. Advantage ``A_i = (R_i - mean_g) / (std_g + eps)`` within
   its group (``std`` with Bessel's correction, as ``torch.std``). Groups whose returns are all equal (within
   ``equal_returns_tol``) carry no signal and are dropped.
2. Loss mask: chunk steps up to and including the first success (all steps when there is none); the
   ``mask_after_success=False`` ablation keeps every step taken.
3. Ratio per token (RLinf ``logprob_type: token_level``, its setting for OpenVLA-OFT): each of the K =
   chunk x action_dim tokens of a step is one PPO sample with the trajectory's advantage,
   ``l = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))``, ``r = exp(log p - log p_old)``. Tokens of a chunk
   are conditionally independent given the observation, so the per-token ratio is exact and keeps a
   56-token chunk's ratio from being a product that is almost always clipped.
4. Aggregation: mean over a step's K tokens, mean over the trajectory's T_valid steps (weight 1 / T_valid, so
   long failures do not outweigh short successes), mean over kept trajectories. This is RLinf's
   ``masked_mean_ratio`` up to a constant factor. No KL term, no entropy bonus.

:func:`clipped_token_loss` works on flat rows (one row = one chunk step) with per-row weights, so a trainer can
split a batch into micro-batches and accumulate gradients exactly; :func:`masked_grpo_loss` is the whole
objective on padded (N, T, K) tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wovr_core.rl.config import GRPOConfig


@dataclass(frozen=True)
class GroupAdvantages:
    advantages: torch.Tensor  # (N,) float32, 0 for dropped groups
    keep: torch.Tensor  # (N,) bool, False for trajectories of dropped groups
    dropped_groups: int
    num_groups: int


def group_advantages(returns: torch.Tensor, config: GRPOConfig) -> GroupAdvantages:
    """Group-relative advantages of ``returns`` (N,), N a multiple of ``config.group_size``, groups contiguous."""
    returns = torch.as_tensor(returns, dtype=torch.float32)
    g = config.group_size
    if returns.ndim != 1 or returns.numel() % g:
        raise ValueError(f"returns must be (N,) with N a multiple of the group size {g}, got {tuple(returns.shape)}")
    if not torch.isfinite(returns).all():
        raise ValueError("returns contain NaN or inf")
    grouped = returns.view(-1, g)
    spread = grouped.max(dim=1).values - grouped.min(dim=1).values
    keep_group = spread > config.equal_returns_tol
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)
    advantages = torch.where(keep_group[:, None], (grouped - mean) / (std + config.advantage_eps), 0.0)
    return GroupAdvantages(advantages.reshape(-1), keep_group.repeat_interleave(g),
                           int((~keep_group).sum()), int(keep_group.numel()))


def valid_steps(num_steps: torch.Tensor, first_success: torch.Tensor, mask_after_success: bool = True
                ) -> torch.Tensor:
    """Steps in the loss per trajectory: up to and including the first success (index, -1 = none), else all
    ``num_steps`` taken (always all of them without ``mask_after_success``)."""
    num_steps = torch.as_tensor(num_steps, dtype=torch.long)
    first_success = torch.as_tensor(first_success, dtype=torch.long)
    if not mask_after_success:
        return num_steps
    return torch.where(first_success >= 0, torch.minimum(first_success + 1, num_steps), num_steps)


def valid_step_mask(num_steps: torch.Tensor, first_success: torch.Tensor, max_steps: int,
                    mask_after_success: bool = True) -> torch.Tensor:
    """(N, max_steps) bool: True where step t enters the loss."""
    steps = valid_steps(num_steps, first_success, mask_after_success)
    return torch.arange(max_steps)[None, :] < steps[:, None]


def trajectory_weights(steps_in_loss: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per-step weight of each trajectory: 1 / (T_valid * number of kept trajectories); 0 when dropped."""
    steps = torch.as_tensor(steps_in_loss, dtype=torch.float32)
    used = keep & (steps > 0)
    n_used = int(used.sum())
    if n_used == 0:
        return torch.zeros_like(steps)
    return torch.where(used, 1.0 / (steps.clamp(min=1) * n_used), 0.0)


@dataclass
class TokenStats:
    """Sums over tokens, so micro-batches add up to the statistics of the whole batch."""

    tokens: int = 0
    clipped: int = 0  # tokens whose clipped term is the active one (no gradient)
    ratio_sum: float = 0.0
    approx_kl_sum: float = 0.0  # k3 estimator (r - 1) - log r, >= 0, of KL(old || new)

    def __add__(self, other: TokenStats) -> TokenStats:
        return TokenStats(self.tokens + other.tokens, self.clipped + other.clipped,
                          self.ratio_sum + other.ratio_sum, self.approx_kl_sum + other.approx_kl_sum)

    @property
    def clip_fraction(self) -> float:
        return self.clipped / self.tokens if self.tokens else 0.0

    @property
    def mean_ratio(self) -> float:
        return self.ratio_sum / self.tokens if self.tokens else 1.0

    @property
    def approx_kl(self) -> float:
        return self.approx_kl_sum / self.tokens if self.tokens else 0.0


def clipped_token_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                       weights: torch.Tensor, config: GRPOConfig) -> tuple[torch.Tensor, TokenStats]:
    """Loss of M chunk steps: ``sum_m weights[m] * mean_k l(m, k)`` (see the module docstring).

    ``log_probs`` (M, K) with gradient, ``old_log_probs`` (M, K), ``advantages`` and ``weights`` (M,).
    """
    if log_probs.ndim != 2 or log_probs.shape != old_log_probs.shape:
        raise ValueError(f"log_probs {tuple(log_probs.shape)} and old_log_probs {tuple(old_log_probs.shape)} must "
                         "both be (M, K)")
    m = log_probs.shape[0]
    if advantages.shape != (m,) or weights.shape != (m,):
        raise ValueError(f"advantages {tuple(advantages.shape)} and weights {tuple(weights.shape)} must be ({m},)")
    old = old_log_probs.to(log_probs.device, torch.float32).detach()
    adv = advantages.to(log_probs.device, torch.float32)[:, None]
    log_ratio = log_probs.float() - old
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - config.clip_low, 1.0 + config.clip_high)
    per_token = torch.maximum(unclipped, clipped)
    loss = (per_token.mean(dim=1) * weights.to(log_probs.device, torch.float32)).sum()
    with torch.no_grad():
        stats = TokenStats(tokens=int(ratio.numel()), clipped=int((clipped > unclipped).sum()),
                           ratio_sum=float(ratio.sum()), approx_kl_sum=float(((ratio - 1) - log_ratio).sum()))
    return loss, stats


@dataclass(frozen=True)
class GRPOStats:
    loss: float
    clip_fraction: float
    approx_kl: float
    mean_ratio: float
    valid_fraction: float  # steps in the loss / steps collected (kept groups, up to the first success)
    dropped_groups: int
    num_groups: int

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def masked_grpo_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor, returns: torch.Tensor,
                     num_steps: torch.Tensor, first_success: torch.Tensor,
                     config: GRPOConfig) -> tuple[torch.Tensor, GRPOStats]:
    """The whole objective on padded tensors: ``log_probs``/``old_log_probs`` (N, T, K) (padding ignored),
    ``returns`` (N,), ``num_steps`` (N,) chunk steps taken, ``first_success`` (N,) step index or -1."""
    n, t_max, _ = log_probs.shape
    groups = group_advantages(returns, config)
    steps = valid_steps(num_steps, first_success, config.mask_after_success)
    if steps.numel() and int(steps.max()) > t_max:
        raise ValueError(f"trajectories have up to {int(steps.max())} valid steps but the tensors hold {t_max}")
    mask = valid_step_mask(num_steps, first_success, t_max, config.mask_after_success) & groups.keep[:, None]
    weights = trajectory_weights(steps, groups.keep)
    rows = mask.nonzero(as_tuple=True)
    loss, token_stats = clipped_token_loss(log_probs[rows], old_log_probs[rows], groups.advantages[rows[0]],
                                           weights[rows[0]], config)
    collected = int(torch.as_tensor(num_steps).sum())
    stats = GRPOStats(loss=float(loss.detach()), clip_fraction=token_stats.clip_fraction,
                      approx_kl=token_stats.approx_kl, mean_ratio=token_stats.mean_ratio,
                      valid_fraction=int(mask.sum()) / collected if collected else 0.0,
                      dropped_groups=groups.dropped_groups, num_groups=groups.num_groups)
    return loss, stats
