"""Masked GRPO pinned on hand-made tensors: every expected number is worked out in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from wovr_core.config import ConfigError, make_config
from wovr_core.rl.config import GRPOConfig
from wovr_core.rl.grpo import (
    clipped_token_loss,
    group_advantages,
    masked_grpo_loss,
    trajectory_weights,
    valid_step_mask,
    valid_steps,
)


def test_defaults_are_the_papers():
    cfg = GRPOConfig()
    assert (cfg.group_size, cfg.clip_low, cfg.clip_high, cfg.advantage_eps) == (8, 0.2, 0.28, 1e-6)
    with pytest.raises(ConfigError, match="group_size"):
        make_config(GRPOConfig, "tiny", {"group_size": 1})


def test_advantages_are_normalized_within_each_group():
    # Group [1, 2, 3, 4]: mean 2.5, std (Bessel) sqrt((2.25 + .25 + .25 + 2.25) / 3) = 1.2909944;
    # A = (R - 2.5) / (1.2909944 + 1e-6). Group [10, 10, 10, 14]: mean 11, std sqrt((3 + 9) / 3) = 2.
    out = group_advantages(torch.tensor([1.0, 2, 3, 4, 10, 10, 10, 14]), GRPOConfig(group_size=4))
    expected = [-1.1618941, -0.3872980, 0.3872980, 1.1618941, -0.4999998, -0.4999998, -0.4999998, 1.4999993]
    assert out.advantages.tolist() == pytest.approx(expected, abs=1e-6)
    assert out.keep.all() and out.dropped_groups == 0 and out.num_groups == 2


def test_groups_with_equal_returns_are_dropped():
    # Group 0 all equal -> dropped (A = 0, keep False). Group 1 [0, 1, 0, 1]: std sqrt(4 * .25 / 3) = 0.5773503,
    # A = +-0.5 / (0.5773503 + 1e-6) = +-0.8660239.
    out = group_advantages(torch.tensor([1.0, 1, 1, 1, 0, 1, 0, 1]), GRPOConfig(group_size=4))
    assert out.keep.tolist() == [False] * 4 + [True] * 4
    assert out.dropped_groups == 1
    assert out.advantages.tolist() == pytest.approx([0, 0, 0, 0, -0.8660239, 0.8660239, -0.8660239, 0.8660239],
                                                    abs=1e-6)
    # Float noise below the tolerance is "equal", not a signal to amplify by 1 / (std + eps).
    assert group_advantages(torch.tensor([0.3, 0.3 + 1e-8]), GRPOConfig(group_size=2)).dropped_groups == 1


def test_bad_returns_are_refused():
    with pytest.raises(ValueError, match="multiple of the group size"):
        group_advantages(torch.zeros(6), GRPOConfig(group_size=4))
    with pytest.raises(ValueError, match="NaN"):
        group_advantages(torch.tensor([0.0, float("nan")]), GRPOConfig(group_size=2))


def _leaf(values):
    return torch.log(torch.tensor(values, dtype=torch.float32)).requires_grad_(True)


def test_ppo_clip_is_asymmetric_and_per_token():
    cfg = GRPOConfig()  # ratio clipped to [0.8, 1.28]
    # Row 0, A = +1, ratios [1.5, 0.5]: max(-1.5, -1.28) = -1.28 (clipped), max(-0.5, -0.8) = -0.5 -> mean -0.89.
    # Row 1, A = -1, ratios [0.5, 1.5]: max(0.5, 0.8) = 0.8 (clipped), max(1.5, 1.28) = 1.5 -> mean 1.15.
    # Loss = 0.5 * -0.89 + 0.5 * 1.15 = 0.13.
    log_probs = _leaf([[1.5, 0.5], [0.5, 1.5]])
    old = torch.zeros(2, 2)
    loss, stats = clipped_token_loss(log_probs, old, torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.5]), cfg)
    assert float(loss.detach()) == pytest.approx(0.13, abs=1e-6)
    assert stats.clipped == 2 and stats.tokens == 4 and stats.clip_fraction == 0.5
    assert stats.mean_ratio == pytest.approx(1.0)
    # k3: (r - 1) - ln r = 0.0945349 (r = 1.5), 0.1931472 (r = 0.5); mean of two of each = 0.1438410.
    assert stats.approx_kl == pytest.approx(0.1438410, abs=1e-6)
    loss.backward()
    # Clipped tokens get no gradient; unclipped: d(-A r)/d log p = -A r, times weight 0.5 and 1/K = 1/2.
    assert log_probs.grad.flatten().tolist() == pytest.approx([0.0, -0.125, 0.0, 0.375], abs=1e-6)

    # The upper bound is 1.28, not 1.2: a ratio of 1.25 with A > 0 is not clipped (loss -1.25).
    loss, stats = clipped_token_loss(_leaf([[1.25]]), torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1), cfg)
    assert float(loss.detach()) == pytest.approx(-1.25) and stats.clipped == 0
    assert stats.mean_ratio == pytest.approx(1.25)
    assert stats.approx_kl == pytest.approx(0.25 - math.log(1.25))
    # ... while 0.79 < 0.8 with A < 0 is: max(0.79, 0.8) = 0.8.
    loss, stats = clipped_token_loss(_leaf([[0.79]]), torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1), cfg)
    assert float(loss.detach()) == pytest.approx(0.8) and stats.clipped == 1


def test_the_loss_mask_ends_at_the_first_success():
    # num_steps [3, 2, 4], first success [1, -1, 3]: in the loss 2 (steps 0-1), 2 (all), 4 (steps 0-3).
    num_steps, first = torch.tensor([3, 2, 4]), torch.tensor([1, -1, 3])
    assert valid_steps(num_steps, first).tolist() == [2, 2, 4]
    assert valid_step_mask(num_steps, first, 4).tolist() == [
        [True, True, False, False], [True, True, False, False], [True, True, True, True]]
    # The ablation keeps the steps after a success: every step taken.
    assert valid_steps(num_steps, first, mask_after_success=False).tolist() == [3, 2, 4]
    assert valid_step_mask(num_steps, first, 4, mask_after_success=False).tolist() == [
        [True, True, True, False], [True, True, False, False], [True, True, True, True]]


def test_trajectories_are_weighted_by_one_over_their_valid_steps():
    # Kept trajectories with 1, 4 and 2 valid steps (3 kept): weights 1/(1*3), 1/(4*3), 0 (dropped), 1/(2*3).
    weights = trajectory_weights(torch.tensor([1, 4, 3, 2]), torch.tensor([True, True, False, True]))
    assert weights.tolist() == pytest.approx([1 / 3, 1 / 12, 0.0, 1 / 6])


def test_masked_grpo_loss_weights_steps_and_trajectories():
    cfg = GRPOConfig(group_size=2)
    # One group, returns [1, 0]: std sqrt(0.5), A = +-0.5 / (0.7071068 + 1e-6) = +-0.7071058.
    # Trajectory 0 took 2 steps but succeeded at step 0 -> 1 valid step; trajectory 1: 4 steps, no success.
    # At ratio 1, d loss / d log p = -A * (1/K) * (1/T_valid) * (1/N_kept) with K = 2, N_kept = 2:
    # trajectory 0: -0.7071058 / 4 = -0.1767764; trajectory 1: +0.7071058 / 16 = +0.0441941 per token.
    log_probs = torch.zeros(2, 4, 2, requires_grad=True)
    loss, stats = masked_grpo_loss(log_probs, torch.zeros(2, 4, 2), torch.tensor([1.0, 0.0]),
                                   torch.tensor([2, 4]), torch.tensor([0, -1]), cfg)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-7)  # mean of -A over trajectories, A zero-mean
    loss.backward()
    grad = log_probs.grad
    assert grad[0, 0].tolist() == pytest.approx([-0.1767764] * 2, abs=1e-6)
    assert grad[0, 1:].abs().max() == 0  # after the first success (and padding)
    assert grad[1].flatten().tolist() == pytest.approx([0.0441941] * 8, abs=1e-6)
    # 5 of the 6 steps taken enter the loss.
    assert stats.valid_fraction == pytest.approx(5 / 6)
    assert (stats.dropped_groups, stats.num_groups) == (0, 1)
    assert stats.mean_ratio == 1.0 and stats.clip_fraction == 0.0 and stats.approx_kl == 0.0


def test_without_post_success_masking_the_steps_after_a_success_are_trained_on():
    cfg = GRPOConfig(group_size=2, mask_after_success=False)
    # As above, but trajectory 0 keeps both of its steps: -0.7071058 / (2 * 2 * 2) = -0.0883882 per token.
    log_probs = torch.zeros(2, 4, 2, requires_grad=True)
    loss, stats = masked_grpo_loss(log_probs, torch.zeros(2, 4, 2), torch.tensor([1.0, 0.0]),
                                   torch.tensor([2, 4]), torch.tensor([0, -1]), cfg)
    loss.backward()
    grad = log_probs.grad
    assert grad[0, :2].flatten().tolist() == pytest.approx([-0.0883882] * 4, abs=1e-6)
    assert grad[0, 2:].abs().max() == 0  # padding
    assert grad[1].flatten().tolist() == pytest.approx([0.0441941] * 8, abs=1e-6)
    assert stats.valid_fraction == 1.0


def test_dropped_groups_get_no_gradient_and_do_not_count():
    cfg = GRPOConfig(group_size=2)
    # Group 0 [1, 1] dropped; group 1 [2, 0]: A = +-0.7071058, 1 step each, N_kept = 2, K = 1:
    # gradients -A / 2 = -0.3535529 and +0.3535529.
    log_probs = torch.zeros(4, 1, 1, requires_grad=True)
    loss, stats = masked_grpo_loss(log_probs, torch.zeros(4, 1, 1), torch.tensor([1.0, 1.0, 2.0, 0.0]),
                                   torch.ones(4, dtype=torch.long), torch.full((4,), -1), cfg)
    loss.backward()
    assert log_probs.grad.flatten().tolist() == pytest.approx([0, 0, -0.3535529, 0.3535529], abs=1e-6)
    assert (stats.dropped_groups, stats.num_groups) == (1, 2)
    assert stats.valid_fraction == pytest.approx(2 / 4)


def test_no_kl_or_entropy_term():
    cfg = GRPOConfig(group_size=3)
    # Returns [0, 1, 2]: the middle trajectory has A = 0 exactly. With no KL penalty its tokens contribute
    # nothing at any ratio, and nothing but the taken tokens' log-probs enters the loss.
    old = torch.zeros(3, 1, 2)
    near = torch.zeros(3, 1, 2, requires_grad=True)
    far = torch.tensor([[[0.0, 0.0]], [[3.0, -5.0]], [[0.0, 0.0]]], requires_grad=True)
    args = (torch.tensor([0.0, 1.0, 2.0]), torch.ones(3, dtype=torch.long), torch.full((3,), -1), cfg)
    loss_near, _ = masked_grpo_loss(near, old, *args)
    loss_far, _ = masked_grpo_loss(far, old, *args)
    assert float(loss_near.detach()) == pytest.approx(float(loss_far.detach()))
    loss_far.backward()
    assert far.grad[1].abs().max() == 0


def test_shapes_are_checked():
    cfg = GRPOConfig(group_size=2)
    with pytest.raises(ValueError, match="both be"):
        clipped_token_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.zeros(2), cfg)
    with pytest.raises(ValueError, match="valid steps"):
        masked_grpo_loss(torch.zeros(2, 2, 1), torch.zeros(2, 2, 1), torch.tensor([0.0, 1.0]),
                         torch.tensor([3, 1]), torch.tensor([-1, -1]), cfg)
