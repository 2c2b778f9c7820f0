"""The real classes plug into RL in imagination: tiny WorldModel (ImaginationModel), SuccessClassifier
(SuccessScorer) and a micro VLA through VLATokenPolicy (TokenPolicy), untrained, for a few chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vla_helpers import libero_like_stats, micro_config, single_torch_thread  # noqa: F401 (autouse fixture)
from wm_helpers import tiny_model_config

from wovr_core.config import ConfigError, make_config
from wovr_core.policy.vla_policy import VLAPolicy
from wovr_core.reward import RewardModelConfig, SuccessClassifier
from wovr_core.rl import (
    EnvConfig,
    GRPOConfig,
    GRPOTrainer,
    ImaginationError,
    ImaginationModel,
    Start,
    SuccessScorer,
    TokenPolicy,
    TrainerConfig,
    VLATokenPolicy,
    WorldModelEnv,
    collect_rollouts,
)
from wovr_core.rl.starts import start_from_arrays
from wovr_core.types import DUMMY_ACTION
from wovr_core.world_model import WorldModel

TASK = "put the cube in the basket"
CAMERAS = ("agentview", "wrist")


@pytest.fixture(scope="module")
def models():
    world = WorldModel.build(tiny_model_config()).prepare_for_inference()
    scorer = SuccessClassifier(make_config(RewardModelConfig, "tiny", {"image_size": 32, "tasks": [TASK]}))
    policy = VLATokenPolicy(VLAPolicy.create(micro_config(use_state=False), libero_like_stats(), tasks=[TASK],
                                             device="cpu", seed=0))
    return world, scorer, policy


def _starts():
    rng = np.random.default_rng(0)
    frames = {c: rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8) for c in CAMERAS}
    actions = rng.uniform(-1, 1, (12, 7)).astype(np.float32)
    actions[0] = DUMMY_ACTION
    return [Start(TASK, {c: v[:1] for c, v in frames.items()}),
            start_from_arrays(frames, actions, TASK, frame_index=9, source="operator")]


def test_the_real_models_satisfy_the_protocols_and_train(models):
    world, scorer, policy = models
    assert isinstance(world, ImaginationModel) and isinstance(scorer, SuccessScorer)
    assert isinstance(policy, TokenPolicy)
    env = WorldModelEnv(world, scorer, EnvConfig(max_steps=16))
    batch = collect_rollouts(env, policy, _starts(), 2, 1.6, torch.Generator().manual_seed(0))
    traj = batch.trajectories
    assert traj.num_rollouts == 4 and (traj.num_steps >= 1).all() and np.isfinite(traj.returns).all()
    with torch.no_grad():
        again = policy.log_prob(batch.observations, batch.tokens, 1.6)
    torch.testing.assert_close(again, batch.old_log_probs, atol=1e-5, rtol=0)
    before = [p.detach().clone() for p in policy.parameters()]
    stats = GRPOTrainer(policy, TrainerConfig(), GRPOConfig(group_size=2)).update(batch)
    assert np.isfinite(stats["loss"]) and stats["mean_ratio"] == pytest.approx(1.0, abs=1e-4)
    if stats["optimizer_steps"]:
        assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))


def test_a_world_model_gone_nan_is_caught(models):
    _, scorer, _ = models
    world = WorldModel.build(tiny_model_config()).prepare_for_inference()
    with torch.no_grad():
        next(world.denoiser.parameters()).fill_(float("nan"))
    env = WorldModelEnv(world, scorer, EnvConfig(max_steps=16))
    env.reset(_starts()[:1], 2)
    with pytest.raises(ImaginationError, match="NaN"):
        env.step(np.zeros((2, 8, 7), np.float32))


def test_a_vla_reading_proprio_is_refused():
    with pytest.raises(ConfigError, match="use_state=False"):
        VLATokenPolicy(VLAPolicy.create(micro_config(), libero_like_stats(), tasks=[TASK], device="cpu"))
