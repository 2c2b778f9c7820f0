"""The same-budget baseline's environment: GRPO rollouts in the LIBERO twin with its own success predicate,
every trajectory counted against the budget file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from vla_helpers import libero_like_stats, micro_config, single_torch_thread  # noqa: F401 (autouse fixture)

from wovr_core.rl.budget import BudgetExceeded, TrajectoryBudget
from wovr_core.rl.rollout import collect_rollouts
from wovr_core.rl.run_config import TwinEnvConfig
from wovr_core.rl.trainer import GRPOTrainer
from wovr_core.rl.twin_env import TwinEnv, TwinStart, TwinStarts
from wovr_core.rl.vla_adapter import VLATokenPolicy

pytest.importorskip("libero")


def _policy(task: str) -> VLATokenPolicy:
    from wovr_core.policy.vla_policy import VLAPolicy

    return VLATokenPolicy(VLAPolicy.create(micro_config(use_state=False), libero_like_stats(), tasks=[task],
                                           device="cpu", seed=0))


def test_budget_counts_persist_and_refuse_overspending(tmp_path):
    budget = TrajectoryBudget(tmp_path / "budget.json", limit=5)
    budget.spend(3, "pace_rollouts")
    again = TrajectoryBudget(tmp_path / "budget.json", limit=5)
    assert again.used == 3 and again.remaining == 2
    with pytest.raises(BudgetExceeded, match="budget of 5 has 2 left"):
        again.spend(3, "twin_grpo")
    assert json.loads((tmp_path / "budget.json").read_text())["spent"] == {"pace_rollouts": 3}
    # A twin env refuses a reset past the budget before it starts any simulator.
    env = TwinEnv(TwinEnvConfig(suite="libero_object", max_steps=16), ["agentview"], 32, budget=again)
    with pytest.raises(BudgetExceeded):
        env.reset([TwinStart(0, 0), TwinStart(0, 1)], group_size=2)
    assert env._twins is None


@pytest.mark.sim
def test_grpo_rollouts_in_the_twin_follow_the_predicate_and_count_against_the_budget(tmp_path):
    cfg = TwinEnvConfig(suite="libero_object", tasks=(0,), max_steps=16, image_size=32)
    starts = TwinStarts(cfg, seed=0).sample(1)
    assert starts[0].task_id == 0 and starts[0].task
    budget = TrajectoryBudget(tmp_path / "budget.json", limit=10)
    policy = _policy(starts[0].task)
    with TwinEnv(cfg, ["agentview", "wrist"], 32, budget=budget, record=True) as env:
        batch = collect_rollouts(env, policy, starts, 2, 1.6, torch.Generator().manual_seed(0))
        traj = batch.trajectories
        assert traj.num_rollouts == 2 and env.max_chunks == 2
        assert ((traj.num_steps >= 1) & (traj.num_steps <= 2)).all()
        # An untrained policy does not solve the task in 16 steps: no success, zero reward, full horizon.
        assert (traj.first_success == -1).all() and (traj.returns == 0).all() and (traj.num_steps == 2).all()
        assert batch.observations.images["agentview"].shape == (4, 32, 32, 3)
        assert batch.stats()["success/twin"] == 0.0
        from wovr_core.rl.config import GRPOConfig

        stats = GRPOTrainer(policy, grpo=GRPOConfig(group_size=2)).update(batch)
        assert stats["dropped_groups"] == 1  # equal returns: nothing to learn from, as GRPO says
        episodes = env.episodes()
        assert len(episodes) == 2 and all(len(e.actions) == 17 for e in episodes)
        assert np.array_equal(episodes[0].actions[0], np.array([0, 0, 0, 0, 0, 0, -1], np.float32))
        assert episodes[0].frames["wrist"][0].shape == (32, 32, 3) and not episodes[0].success
    assert budget.used == 2 and TrajectoryBudget(tmp_path / "budget.json").spent == {"twin_grpo": 2}


@pytest.mark.sim
@pytest.mark.slow
def test_the_twin_baseline_makes_as_many_updates_as_its_budget_pays_for(tmp_path):
    from wovr_core.config import make_config
    from wovr_core.policy.vla_policy import VLAPolicy
    from wovr_core.rl.run import run_twin_grpo
    from wovr_core.rl.run_config import RLRunConfig
    from wovr_core.sim.suites import task_names

    task = task_names("libero_object")[0]
    VLAPolicy.create(micro_config(use_state=False), libero_like_stats(), tasks=[task], device="cpu",
                     seed=0).save(tmp_path / "policy")
    cfg = make_config(RLRunConfig, "tiny", ["rl.groups_per_update=1", "rl.grpo.group_size=2", "twin.tasks=[0]",
                                            "twin.max_steps=16", "real_budget=5", "device=cpu", "threads=1"])
    summary = run_twin_grpo(cfg, tmp_path / "policy", tmp_path / "run", progress=False)
    # 5 trajectories pay for 2 updates of 2 rollouts; the fifth is left unspent.
    assert summary["finished"] and summary["updates"] == 2 and summary["real_trajectories"] == 4
    assert json.loads((tmp_path / "run" / "budget.json").read_text()) == {"limit": 5, "used": 4,
                                                                         "spent": {"twin_grpo": 4}}
    assert (tmp_path / "run" / "policy" / "model.safetensors").exists()
