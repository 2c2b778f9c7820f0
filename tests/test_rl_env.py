"""WorldModelEnv over DotWorld / DotScorer (tests/rl_helpers.py): resets (episode and keyframe starts),
chunk rewards, termination, horizon, and the errors that leave the environment untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rl_helpers import CAMERA, TASKS, DotScorer, DotWorld, dot_episode, render

from wovr_core.config import ConfigError, load_config, make_config, save_config
from wovr_core.rl.config import EnvConfig, GRPOConfig, RLConfig
from wovr_core.rl.env import WorldModelEnv
from wovr_core.rl.errors import ImaginationError
from wovr_core.rl.grpo import group_advantages
from wovr_core.rl.protocols import ImaginationModel, SuccessScorer
from wovr_core.rl.starts import Start, start_from_arrays
from wovr_core.types import DUMMY_ACTION

RIGHT = TASKS[0]


def _start_at(x: float, task: str = RIGHT) -> Start:
    frames, actions = dot_episode(np.array([[x, 0.5]]))
    return start_from_arrays(frames, actions, task)


def _chunk(n: int, dx: float | list[float]) -> np.ndarray:
    actions = np.zeros((n, 8, 7), np.float32)
    actions[..., 0] = np.asarray(dx, np.float32).reshape(-1, 1) if np.ndim(dx) else dx
    actions[..., 6] = -1
    return actions


def _p(x: float) -> float:
    """DotScorer's probability for "right" at a dot rendered at x (computed through a rendered frame)."""
    return float(DotScorer().success_probability({CAMERA: render(np.array([[x, 0.5]]))}, RIGHT)[0])


def test_the_test_models_satisfy_the_protocols():
    assert isinstance(DotWorld(), ImaginationModel) and isinstance(DotScorer(), SuccessScorer)


def test_defaults_are_the_papers():
    cfg = EnvConfig()
    assert (cfg.chunk_size, cfg.max_steps, cfg.max_chunks) == (8, 256, 32)
    assert (cfg.reward_scale, cfg.done_threshold) == (5.0, 0.9)
    with pytest.raises(ConfigError, match="multiple"):
        make_config(EnvConfig, "tiny", {"max_steps": 20})


def test_the_rl_config_presets_round_trip(tmp_path):
    cfg = make_config(RLConfig, "paper", ["env.reward_frame=max", "keyframes.source_weights={grasp: 2.0}"])
    assert cfg.env.reward_frame == "max" and cfg.keyframes.source_weights == {"grasp": 2.0}
    assert load_config(save_config(cfg, tmp_path), RLConfig) == cfg
    with pytest.raises(ConfigError, match="not one of"):
        make_config(RLConfig, "tiny", ["env.reward_frame=mean"])
    # The world model's own action guidance unless the env says otherwise; a negative scale is refused.
    assert cfg.env.action_guidance is None
    assert make_config(RLConfig, "tiny", ["env.action_guidance=2.5"]).env.action_guidance == 2.5
    with pytest.raises(ConfigError, match="action_guidance"):
        make_config(RLConfig, "tiny", ["env.action_guidance=-1"])


def test_reset_starts_groups_that_share_a_start():
    env = WorldModelEnv(DotWorld(), DotScorer(), EnvConfig(max_steps=32))
    obs = env.reset([_start_at(0.3), _start_at(0.6, TASKS[1])], group_size=3)
    assert len(obs) == env.num_rollouts == 6
    assert obs.tasks == (RIGHT,) * 3 + (TASKS[1],) * 3
    np.testing.assert_array_equal(obs.images[CAMERA][4], render(np.array([[0.6, 0.5]]))[0])
    assert env.active_indices.tolist() == list(range(6))
    traj = env.trajectories()
    assert traj.start_probs[:3] == pytest.approx([_p(0.3)] * 3, abs=1e-6)
    assert traj.num_steps.tolist() == [0] * 6 and traj.first_success.tolist() == [-1] * 6


def test_probability_rewards_are_scaled_differences_of_the_last_frame_probability_and_success_terminates():
    env = WorldModelEnv(DotWorld(speed=0.03), DotScorer(), EnvConfig(max_steps=32, reward_signal="probability"))
    env.reset([_start_at(0.5)], group_size=2)
    p_start = _p(0.5)
    # Rollout 0 pushes right (8 * 0.03 = 0.24 per chunk), rollout 1 stays.
    first = env.step(_chunk(2, [1.0, 0.0]))
    assert first.indices.tolist() == [0, 1]
    p_last = first.probs[:, -1]
    assert p_last[0] == pytest.approx(_p(0.74), abs=1e-6)
    assert first.rewards == pytest.approx(5 * (p_last - p_start), abs=1e-6)
    assert not first.terminated.any()
    # Chunk 2: rollout 0 reaches x = 0.9 (p = 0.977 >= 0.9): success at step 1; it leaves the batch.
    second = env.step(_chunk(2, [1.0, 0.0]))
    assert second.terminated.tolist() == [True, False]
    assert second.rewards[0] == pytest.approx(5 * (second.probs[0, -1] - p_last[0]), abs=1e-6)
    assert env.active_indices.tolist() == [1] and len(env.observations()) == 1
    # Rollout 1 runs to the horizon (4 chunks) and is truncated.
    env.step(_chunk(1, 0.0))
    last = env.step(_chunk(1, 0.0))
    assert last.truncated.tolist() == [True] and env.done
    traj = env.trajectories()
    assert traj.num_steps.tolist() == [2, 4] and traj.first_success.tolist() == [1, -1]
    assert traj.success.tolist() == [True, False]
    # Returns telescope: 5 * (s_last - s_start).
    assert traj.returns[0] == pytest.approx(5 * (second.probs[0, -1] - p_start), abs=1e-5)
    assert traj.rewards[0, 2:].tolist() == [0.0, 0.0] and np.isnan(traj.probs[0, 2:]).all()
    with pytest.raises(RuntimeError, match="finished"):
        env.step(_chunk(0, 0.0))


def test_success_rewards_pay_the_crossing_only_and_leave_groups_without_success_equal():
    env = WorldModelEnv(DotWorld(speed=0.03), DotScorer(), EnvConfig(max_steps=32))
    assert env.config.reward_signal == "success" and _p(0.5) < 0.5 < _p(0.74 + 0.24)
    env.reset([_start_at(0.5)], group_size=2)
    first = env.step(_chunk(2, [1.0, 0.0]))  # rollout 0 reaches x = 0.74 (p 0.44): no success yet
    assert first.probs[0, -1] > first.probs[1, -1] and first.rewards.tolist() == [0.0, 0.0]
    second = env.step(_chunk(2, [1.0, 0.0]))  # x = 0.98: p >= 0.9, success
    assert second.terminated.tolist() == [True, False] and second.rewards.tolist() == [5.0, 0.0]
    # Two rollouts that move the dot different amounts without succeeding: their probability returns differ
    # by a little, their success returns not at all, so GRPO drops the group instead of learning from it.
    returns = {}
    for signal in ("probability", "success"):
        env = WorldModelEnv(DotWorld(speed=0.01), DotScorer(), EnvConfig(max_steps=16, reward_signal=signal))
        env.reset([_start_at(0.3)], group_size=2)
        while not env.done:
            env.step(_chunk(len(env.active_indices), [0.2, 0.0][:len(env.active_indices)]))
        returns[signal] = env.trajectories().returns
    assert not env.trajectories().success.any()
    assert GRPOConfig().equal_returns_tol < abs(returns["probability"][0] - returns["probability"][1]) < 1e-3
    assert returns["success"].tolist() == [0.0, 0.0]
    grpo = GRPOConfig(group_size=2)
    assert group_advantages(torch.as_tensor(returns["success"]), grpo).dropped_groups == 1
    assert group_advantages(torch.as_tensor(returns["probability"]), grpo).dropped_groups == 0


def test_termination_looks_at_every_frame_of_the_chunk():
    # From x = 0.8, three steps right reach 0.89 (p 0.97), five steps left end at 0.74 (p 0.44): the chunk's max
    # crosses 0.9, so the rollout succeeds although its last frame does not.
    actions = _chunk(1, 0.0)
    actions[0, :3, 0], actions[0, 3:, 0] = 1.0, -1.0
    for frame, expected in (("last", lambda probs: probs[-1]), ("max", lambda probs: probs.max())):
        env = WorldModelEnv(DotWorld(speed=0.03), DotScorer(),
                            EnvConfig(max_steps=32, reward_frame=frame, reward_signal="probability"))
        env.reset([_start_at(0.8)], group_size=1)
        result = env.step(actions)
        assert result.terminated.tolist() == [True] and result.probs[0].max() >= 0.9 > result.probs[0, -1]
        assert result.rewards[0] == pytest.approx(5 * (expected(result.probs[0]) - _p(0.8)), abs=1e-5)
        assert env.trajectories().first_success.tolist() == [0]


def test_keyframe_starts_carry_the_anchor_and_the_frames_before_the_keyframe():
    positions = np.stack([np.linspace(0.3, 0.7, 20), np.full(20, 0.5)], 1)
    frames, actions = dot_episode(positions)
    key = start_from_arrays(frames, actions, RIGHT, frame_index=10, memory_frames=4, source="operator")
    np.testing.assert_array_equal(key.frames[CAMERA], frames[CAMERA][[0, 7, 8, 9, 10]])
    np.testing.assert_array_equal(key.actions, np.concatenate([DUMMY_ACTION[None], actions[7:11]]))
    # Near the episode start the memory is padded with frame 0 and its dummy action.
    early = start_from_arrays(frames, actions, RIGHT, frame_index=2, memory_frames=4)
    np.testing.assert_array_equal(early.frames[CAMERA], frames[CAMERA][[0, 0, 0, 1, 2]])
    np.testing.assert_array_equal(early.actions, actions[[0, 0, 0, 1, 2]])

    world = DotWorld()
    env = WorldModelEnv(world, DotScorer(), EnvConfig(max_steps=32))
    obs = env.reset([start_from_arrays(frames, actions, RIGHT), key], group_size=2)
    context, context_actions = world.observed[-1]
    # One observe call: the o_0-only start expanded the way the model expands it, the keyframe start as is.
    np.testing.assert_array_equal(context[CAMERA][0], frames[CAMERA][[0] * 5])
    np.testing.assert_array_equal(context_actions[0], np.tile(DUMMY_ACTION, (5, 1)))
    np.testing.assert_array_equal(context[CAMERA][1], key.frames[CAMERA])
    # The policy first sees o_0 in group 0 and the keyframe in group 1.
    np.testing.assert_array_equal(obs.images[CAMERA][2], frames[CAMERA][10])
    np.testing.assert_array_equal(obs.images[CAMERA][0], frames[CAMERA][0])
    result = env.step(_chunk(4, 1.0))
    assert result.probs[2, -1] > result.probs[0, -1]  # the keyframe group started further right


def test_a_nan_world_model_state_is_a_clear_error_and_loses_nothing():
    world = DotWorld()
    env = WorldModelEnv(world, DotScorer(), EnvConfig(max_steps=32))
    env.reset([_start_at(0.5)], group_size=2)
    env.step(_chunk(2, 0.5))
    before = env.trajectories()
    world.fail_next = True
    with pytest.raises(ImaginationError, match="NaN"):
        env.step(_chunk(2, 0.5))
    after = env.trajectories()
    assert after.num_steps.tolist() == before.num_steps.tolist() == [1, 1]
    np.testing.assert_array_equal(after.rewards, before.rewards)
    # The same step, retried with a healthy model, gives what an undisturbed environment gives.
    world.fail_next = False
    retried = env.step(_chunk(2, 0.5))
    reference = WorldModelEnv(DotWorld(), DotScorer(), EnvConfig(max_steps=32))
    reference.reset([_start_at(0.5)], group_size=2)
    reference.step(_chunk(2, 0.5))
    np.testing.assert_allclose(retried.rewards, reference.step(_chunk(2, 0.5)).rewards)


def test_bad_reward_model_output_and_bad_frames_are_clear_errors():
    scorer = DotScorer()
    env = WorldModelEnv(DotWorld(), scorer, EnvConfig(max_steps=32))
    env.reset([_start_at(0.5)], group_size=2)
    scorer.return_nan = True
    with pytest.raises(ImaginationError, match="reward model"):
        env.step(_chunk(2, 0.0))
    assert env.trajectories().num_steps.tolist() == [0, 0]

    class FloatFrames(DotWorld):
        def imagine(self, state, actions):
            frames, new = super().imagine(state, actions)
            return {CAMERA: np.full(frames[CAMERA].shape, np.nan)}, new

    env = WorldModelEnv(FloatFrames(), DotScorer(), EnvConfig(max_steps=32))
    env.reset([_start_at(0.5)], group_size=2)
    with pytest.raises(ImaginationError, match="NaN"):
        env.step(_chunk(2, 0.0))


def test_bad_actions_and_misuse_are_refused():
    env = WorldModelEnv(DotWorld(), DotScorer(), EnvConfig(max_steps=32))
    with pytest.raises(RuntimeError, match="reset"):
        env.observations()
    env.reset([_start_at(0.5)], group_size=2)
    with pytest.raises(ValueError, match=r"\(2, 8, 7\)"):
        env.step(_chunk(3, 0.0))
    bad = _chunk(2, 0.0)
    bad[1, 3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        env.step(bad)
    with pytest.raises(ValueError, match=r"needs \(2, 7\) actions"):
        Start(RIGHT, {CAMERA: np.zeros((2, 16, 16, 3), np.uint8)}, None)
    with pytest.raises(ValueError, match="uint8"):
        Start(RIGHT, {CAMERA: np.zeros((1, 16, 16, 3), np.float32)})


def test_the_first_success_is_the_first_step_at_p_05_and_the_rollout_goes_on_to_p_09():
    """s_t = 1 from p >= 0.5 (the loss mask ends there); termination waits for p >= 0.9: the steps between
    are the post-success steps masked GRPO leaves out."""
    env = WorldModelEnv(DotWorld(speed=0.02), DotScorer(), EnvConfig(max_steps=32))
    env.reset([_start_at(0.5)], group_size=1)
    first = env.step(_chunk(1, 1.0))  # x = 0.66: p < 0.5
    second = env.step(_chunk(1, 1.0))  # x = 0.82: 0.5 <= p < 0.9
    assert first.probs[0, -1] < 0.5 <= second.probs[0, -1] < 0.9 and second.rewards.tolist() == [5.0]
    assert not second.terminated.any() and env.trajectories().first_success.tolist() == [1]
    third = env.step(_chunk(1, 1.0))  # x = 0.9 (clamped): p >= 0.9
    assert third.terminated.tolist() == [True] and third.rewards.tolist() == [0.0]
    traj = env.trajectories()
    assert traj.first_success.tolist() == [1] and traj.num_steps.tolist() == [3]  # one post-success step
