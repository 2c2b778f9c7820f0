"""Rollout collection and GRPO updates with a real (tiny) token policy in the DotWorld: the recorded batch,
exact micro-batching, gradient clipping, the error paths, and a learning test."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from rl_helpers import TASKS, DotScorer, DotWorld, TaskTablePolicy, dot_episode

from wovr_core.rl.config import EnvConfig, GRPOConfig, TrainerConfig
from wovr_core.rl.env import WorldModelEnv
from wovr_core.rl.errors import PolicyError
from wovr_core.rl.protocols import TokenPolicy
from wovr_core.rl.rollout import collect_rollouts
from wovr_core.rl.starts import start_from_arrays
from wovr_core.rl.trainer import GRPOTrainer

TEMPERATURE = 1.6


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _starts(x: float = 0.5):
    frames, actions = dot_episode(np.array([[x, 0.5]]))
    return [start_from_arrays(frames, actions, task, source="episode") for task in TASKS]


def _collect(policy, seed=0, speed=0.03, starts=None, group_size=8):
    # Probability rewards: every group carries a signal, which the update mechanics below need.
    env = WorldModelEnv(DotWorld(speed=speed), DotScorer(), EnvConfig(max_steps=32, reward_signal="probability"))
    return collect_rollouts(env, policy, starts or _starts(), group_size, TEMPERATURE,
                            torch.Generator().manual_seed(seed))


def test_the_batch_records_every_chunk_step_with_its_sampling_log_probs():
    policy = TaskTablePolicy()
    assert isinstance(policy, TokenPolicy)
    with torch.no_grad():
        policy.table.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
    batch = _collect(policy)
    traj = batch.trajectories
    assert batch.num_rows == int(traj.num_steps.sum()) and batch.tokens.shape == (batch.num_rows, 56)
    for i in range(traj.num_rollouts):  # each rollout's rows are its steps 0 .. n-1, in order
        assert batch.step_index[batch.rollout_index == i].tolist() == list(range(traj.num_steps[i]))
    assert batch.observations.tasks[0] == TASKS[0] and batch.observations.tasks[-1] in TASKS
    # Stored log-probs are what the policy gives the stored tokens: the first PPO ratio is exactly 1.
    with torch.no_grad():
        again = policy.log_prob(batch.observations, batch.tokens, TEMPERATURE)
    torch.testing.assert_close(again, batch.old_log_probs)
    stats = batch.stats()
    assert set(stats) >= {"success_rate", "mean_return", "success/episode"}


def test_micro_batching_gives_the_same_update():
    policy_a = TaskTablePolicy()
    batch = _collect(policy_a)
    policy_b = copy.deepcopy(policy_a)
    for policy, micro in ((policy_a, 1), (policy_b, 10_000)):
        config = TrainerConfig(micro_batch_size=micro, max_grad_norm=1e9, temperature=TEMPERATURE)
        trainer = GRPOTrainer(policy, config, optimizer=torch.optim.SGD(policy.parameters(), lr=1.0))
        stats = trainer.update(batch)
    assert stats["optimizer_steps"] == 1 and stats["mean_ratio"] == pytest.approx(1.0)
    torch.testing.assert_close(policy_a.table, policy_b.table, atol=1e-6, rtol=0)
    assert policy_a.table.abs().sum() > 0  # the update did something


def test_gradients_are_clipped():
    policy = TaskTablePolicy()
    before = copy.deepcopy(policy)
    sgd = torch.optim.SGD(policy.parameters(), lr=1.0)
    trainer = GRPOTrainer(policy, TrainerConfig(max_grad_norm=1e-3), optimizer=sgd)
    stats = trainer.update(_collect(policy))
    assert stats["grad_norm"] > 1e-3  # the raw norm is reported
    step = torch.cat([(p - q).flatten() for p, q in zip(policy.parameters(), before.parameters(), strict=True)])
    assert float(step.detach().norm()) == pytest.approx(1e-3, rel=1e-3)


def test_minibatches_take_several_optimizer_steps_and_the_ratio_moves():
    policy = TaskTablePolicy()
    trainer = GRPOTrainer(policy, TrainerConfig(lr=0.5, minibatches=4, epochs=2))
    stats = trainer.update(_collect(policy))
    assert stats["optimizer_steps"] == 8
    assert stats["mean_ratio"] != pytest.approx(1.0, abs=1e-6) and stats["approx_kl"] > 0
    assert stats["clip_fraction"] > 0  # a big step drives some ratios past the clip range


def test_a_batch_without_signal_leaves_the_policy_unchanged():
    policy = TaskTablePolicy()
    before = copy.deepcopy(policy.state_dict())
    # The dot cannot move: every rollout of a group gets the same return, so every group is dropped.
    batch = _collect(policy, speed=0.0)
    stats = GRPOTrainer(policy, TrainerConfig()).update(batch)
    assert stats["dropped_groups"] == stats["num_groups"] == 2 and stats["optimizer_steps"] == 0
    assert all(torch.equal(v, policy.state_dict()[k]) for k, v in before.items())


def test_non_finite_log_probs_raise_and_leave_the_weights_alone():
    class Flaky(TaskTablePolicy):
        broken = False

        def log_prob(self, observations, tokens, temperature):
            out = super().log_prob(observations, tokens, temperature)
            return out * float("nan") if self.broken else out

    policy = Flaky()
    batch = _collect(policy)
    before = copy.deepcopy(policy.state_dict())
    policy.broken = True
    trainer = GRPOTrainer(policy, TrainerConfig())
    with pytest.raises(PolicyError, match="non-finite"):
        trainer.update(batch)
    assert all(torch.equal(v, policy.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="temperature"):
        GRPOTrainer(policy, TrainerConfig(temperature=1.0)).update(batch)


def test_grpo_in_imagination_learns_to_push_the_dot():
    """Success depends only on the action tokens (x-moves toward the task's side): it must go up. From 0%
    success only the probability reward (dense here: DotScorer's p grows toward the goal) gives a signal; the
    success reward starts paying once some rollouts succeed."""
    torch.manual_seed(0)
    policy = TaskTablePolicy()
    trainer = GRPOTrainer(policy, TrainerConfig(lr=0.2, minibatches=2, temperature=TEMPERATURE), GRPOConfig())
    env = WorldModelEnv(DotWorld(speed=0.03), DotScorer(), EnvConfig(max_steps=32, reward_signal="probability"))
    generator = torch.Generator().manual_seed(0)
    success = []
    for _ in range(20):
        batch = collect_rollouts(env, policy, _starts() * 2, 8, TEMPERATURE, generator)
        stats = trainer.update(batch)
        success.append(stats["rollout/success_rate"])
        assert np.isfinite(stats["loss"])
    assert np.mean(success[:3]) < 0.1
    assert np.mean(success[-3:]) > 0.8
    # Both tasks were learned: greedy x-actions point to the right for one task and to the left for the other.
    centres = -1 + (2 * torch.arange(8) + 1) / 8
    mean_dx = (torch.softmax(policy.table, -1) * centres).sum(-1).view(2, 8, 7)[:, :, 0].mean(1)
    assert mean_dx[0] > 0.3 and mean_dx[1] < -0.3


def test_groups_collected_a_few_at_a_time_make_one_batch_of_every_group():
    policy = TaskTablePolicy()
    with torch.no_grad():  # deterministic enough: the first task's rollouts succeed, the second's do not
        policy.table[:, 0::7, -1] = 50.0
    env = WorldModelEnv(DotWorld(speed=0.03), DotScorer(), EnvConfig(max_steps=32))
    starts = _starts() * 2  # tasks 0, 1, 0, 1
    once = collect_rollouts(env, policy, starts, 3, TEMPERATURE, torch.Generator().manual_seed(0))
    apart = collect_rollouts(env, policy, starts, 3, TEMPERATURE, torch.Generator().manual_seed(0), groups_at_once=1)
    traj = apart.trajectories
    assert traj.num_rollouts == 12 and traj.group_size == 3 and [s.task for s in traj.starts] == list(TASKS) * 2
    np.testing.assert_array_equal(traj.success, once.trajectories.success)
    assert traj.success.tolist() == ([True] * 3 + [False] * 3) * 2
    # Every row points at its own rollout: the observation's task is its group's, its steps count from 0.
    assert apart.num_rows == int(traj.num_steps.sum())
    for row in range(apart.num_rows):
        rollout = apart.rollout_index[row]
        assert apart.observations.tasks[row] == traj.starts[rollout // 3].task
    for rollout in range(12):
        steps = apart.step_index[apart.rollout_index == rollout]
        assert steps.tolist() == list(range(traj.num_steps[rollout]))
    assert apart.tokens.shape == (apart.num_rows, once.tokens.shape[1])


def test_imagined_success_counts_each_tasks_rollouts():
    from wovr_core.rl.rollout import imagined_success

    policy = TaskTablePolicy()
    with torch.no_grad():  # every task pushes the dot right: the first task's goal, away from the second's
        policy.table[:, 0::7, -1] = 50.0
    env = WorldModelEnv(DotWorld(speed=0.03), DotScorer(), EnvConfig(max_steps=32))
    starts = _starts() * 3  # 3 starts per task, imagined 2 at a time
    counts = imagined_success(env, policy, starts, rollouts_per_start=4, temperature=TEMPERATURE, seed=0,
                              start_batch=2)
    assert counts == {TASKS[0]: (12, 12), TASKS[1]: (0, 12)}


def test_pearson_r_of_imagined_and_real_success():
    from wovr_core.rl.reliability import pearson_r

    assert pearson_r([(0.1, 0.2), (0.5, 0.6), (0.9, 1.0)]) == pytest.approx(1.0)
    assert pearson_r([(1.0, 0.27), (0.8, 0.51), (0.6, 0.6)]) < -0.9  # a world model that rewards exploitation
    assert pearson_r([(0.1, 0.2), (0.5, 0.6)]) is None  # too few pairs
    assert pearson_r([(1.0, 0.2), (1.0, 0.6), (1.0, 0.4)]) is None  # imagination cannot tell them apart
    with pytest.raises(ValueError, match="NaN"):
        pearson_r([(0.1, 0.2), (np.nan, 0.6), (0.9, 1.0)])


def test_the_update_trains_on_steps_after_a_success_only_without_post_success_masking():
    policy = TaskTablePolicy()
    with torch.no_grad():  # mostly right-moves: success (p >= 0.5) about a chunk before termination (p >= 0.9)
        policy.table[:, 0::7, -1] = 3.0
    env = WorldModelEnv(DotWorld(speed=0.01), DotScorer(), EnvConfig(max_steps=64, reward_signal="probability"))
    batch = collect_rollouts(env, policy, _starts(), 8, TEMPERATURE, torch.Generator().manual_seed(0))
    traj = batch.trajectories
    assert ((traj.first_success >= 0) & (traj.first_success + 1 < traj.num_steps)).any()
    masked = GRPOTrainer(copy.deepcopy(policy), TrainerConfig(temperature=TEMPERATURE), GRPOConfig())
    unmasked = GRPOTrainer(copy.deepcopy(policy), TrainerConfig(temperature=TEMPERATURE),
                           GRPOConfig(mask_after_success=False))
    kept = masked.update(batch)
    assert kept["dropped_groups"] == 0 and kept["valid_fraction"] < 1.0
    assert unmasked.update(batch)["valid_fraction"] == 1.0
