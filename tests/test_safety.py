"""The safety envelope: every output is within every limit, holds are real holds, the latch latches."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wovr_core.config import ConfigError, make_config
from wovr_core.hardware.safety import LimitAudit, Reason, SafetyConfig, SafetyEnvelope
from wovr_core.types import RobotState

CFG = SafetyConfig()
NOW = 1000.0


def state_at(pos) -> RobotState:
    return RobotState(t=NOW, joint_pos=np.zeros(7), ee_pos=np.asarray(pos, dtype=np.float64),
                      ee_quat=np.array([1.0, 0, 0, 0]), gripper_width=0.08)


CENTER = state_at([0.5, 0.0, 0.3])

any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-2.0, max_value=2.0),
    st.sampled_from([0.0, 1.0, -1.0, 1e308, -1e308, math.nan, math.inf]),
)
actions = st.lists(any_float, min_size=7, max_size=7).map(np.array)
positions = st.tuples(st.floats(0.0, 1.1), st.floats(-0.7, 0.7), st.floats(-0.2, 1.0)).map(np.array)
obs_ages = st.one_of(st.floats(0.0, 0.5), st.sampled_from([math.nan, -1.0, 10.0]))


def test_normal_action_passes_unchanged():
    env = SafetyEnvelope()
    a = np.array([0.05, -0.05, 0.02, 0.0, 0.01, 0.0, -1.0], dtype=np.float32)
    d = env.filter(a, CENTER, NOW - 0.01, NOW)
    assert d.status == "ok" and d.reasons == ()
    np.testing.assert_array_equal(d.action, a)


@pytest.mark.parametrize("bad, reason", [
    ([math.nan, 0, 0, 0, 0, 0, 1], Reason.NON_FINITE_ACTION),
    ([0, 0, math.inf, 0, 0, 0, 1], Reason.NON_FINITE_ACTION),
    ([0, 0, 0, 0, 0, 0], Reason.BAD_SHAPE),
    ([[0, 0, 0, 0, 0, 0, 0]], Reason.BAD_SHAPE),
    ("seven", Reason.BAD_SHAPE),
    (None, Reason.BAD_SHAPE),
])
def test_malformed_actions_are_held(bad, reason):
    env = SafetyEnvelope()
    env.filter([0, 0, 0, 0, 0, 0, 0.0], CENTER, NOW, NOW)  # gripper at 0 before the bad command
    d = env.filter(bad, CENTER, NOW, NOW)
    assert d.held and reason in d.reasons
    np.testing.assert_array_equal(d.action, [0, 0, 0, 0, 0, 0, 0.0])


def test_stale_future_and_missing_observations_hold():
    env = SafetyEnvelope()
    a = np.zeros(7)
    assert Reason.STALE_OBSERVATION in env.filter(a, CENTER, NOW - CFG.stale_obs_s - 0.01, NOW).reasons
    assert Reason.FUTURE_OBSERVATION in env.filter(a, CENTER, NOW + 1.0, NOW).reasons
    assert Reason.STALE_OBSERVATION in env.filter(a, CENTER, None, NOW).reasons
    assert Reason.BAD_STATE in env.filter(a, None, NOW, NOW).reasons
    bad_state = state_at([math.nan, 0, 0.3])
    assert Reason.BAD_STATE in env.filter(a, bad_state, NOW, NOW).reasons
    assert Reason.BAD_CLOCK in env.filter(a, CENTER, NOW, math.nan).reasons


def test_lost_policy_server_holds_until_it_answers_again():
    env = SafetyEnvelope()
    a = np.array([0.05, 0, 0, 0, 0, 0, -1])
    assert env.filter(a, CENTER, NOW, NOW, source_time=NOW - 0.1).status == "ok"
    lost = env.filter(a, CENTER, NOW, NOW, source_time=NOW - CFG.source_timeout_s - 0.1)
    assert lost.held and Reason.SOURCE_LOST in lost.reasons
    assert not env.filter(a, CENTER, NOW, NOW, source_time=NOW).held


def test_estop_latches_until_explicit_reset():
    env = SafetyEnvelope()
    env.estop("test")
    a = np.array([0.1, 0, 0, 0, 0, 0, -1])
    for _ in range(3):
        d = env.filter(a, CENTER, NOW, NOW)
        assert d.held and d.reasons == (Reason.ESTOP,)
    env.reset()  # a new episode does not clear the latch
    assert env.filter(a, CENTER, NOW, NOW).held
    env.reset_estop()
    assert not env.filter(a, CENTER, NOW, NOW).held


def test_huge_action_is_clipped_to_step_limit():
    env = SafetyEnvelope()
    d = env.filter(np.array([1e9, 0, 0, 0, 0, 0, -1]), CENTER, NOW, NOW)
    assert d.clipped and Reason.ACTION_RANGE in d.reasons and Reason.STEP_TRANSLATION in d.reasons
    step = d.action[0] * CFG.translation_scale
    assert 0 < step <= CFG.step_translation_limit * (1 + 1e-6)


def test_speed_ramps_up_and_brakes_freely():
    env = SafetyEnvelope()
    full = np.array([1.0, 0, 0, 0, 0, 0, -1])
    steps = [env.filter(full, CENTER, NOW, NOW).action[0] * CFG.translation_scale for _ in range(6)]
    assert all(b >= a for a, b in zip(steps, steps[1:], strict=False))
    assert steps[0] < steps[-1] == pytest.approx(CFG.step_translation_limit, rel=1e-5)
    stop = env.filter(np.array([0, 0, 0, 0, 0, 0, -1.0]), CENTER, NOW, NOW)
    assert stop.status == "ok"  # braking to zero is never limited


def test_workspace_wall_and_recovery_from_outside():
    env = SafetyEnvelope()
    at_wall = state_at([0.5, 0.0, CFG.workspace_min[2] + 0.001])
    down = np.array([0, 0, -0.5, 0, 0, 0, -1])
    for _ in range(5):
        d = env.filter(down, at_wall, NOW, NOW)
        assert at_wall.ee_pos[2] + d.action[2] * CFG.translation_scale >= CFG.workspace_min[2] - 1e-9
    outside = state_at([0.5, 0.0, CFG.workspace_min[2] - 0.05])
    env = SafetyEnvelope()
    d = env.filter(down, outside, NOW, NOW)
    assert d.action[2] == 0.0 and Reason.WORKSPACE in d.reasons
    up = env.filter(np.array([0, 0, 0.2, 0, 0, 0, -1]), outside, NOW, NOW)
    assert up.action[2] > 0  # coming back in is allowed


def test_gripper_rate_and_hold_keeps_gripper():
    env = SafetyEnvelope()
    d = env.filter(np.array([0, 0, 0, 0, 0, 0, 1.0]), CENTER, NOW, NOW)
    assert d.action[6] == pytest.approx(-1.0 + CFG.gripper_step_limit)
    held = env.filter(np.array([math.nan] * 7), CENTER, NOW, NOW)
    assert held.action[6] == d.action[6]


def test_filter_chunk_predicts_position_and_does_not_commit():
    env = SafetyEnvelope()
    near = state_at([CFG.workspace_max[0] - 0.03, 0, 0.3])
    chunk = np.tile(np.array([1.0, 0, 0, 0, 0, 0, -1]), (8, 1))
    decisions = env.filter_chunk(chunk, near, NOW, NOW)
    reach = near.ee_pos[0] + sum(d.action[0] for d in decisions) * CFG.translation_scale
    assert reach <= CFG.workspace_max[0] + 1e-6
    assert any(Reason.WORKSPACE in d.reasons for d in decisions)
    # Not committed: the next single step still ramps from rest.
    first = env.filter(chunk[0], CENTER, NOW, NOW)
    assert first.action[0] == pytest.approx(decisions[0].action[0])
    # Late steps of a chunk planned from an old observation are held as stale.
    late = env.filter_chunk(chunk, CENTER, NOW - CFG.stale_obs_s + 0.1, NOW)
    assert not late[0].held and late[-1].held


def test_config_validation_and_overrides():
    with pytest.raises(ConfigError, match="workspace is empty"):
        SafetyEnvelope(SafetyConfig(workspace_min=(1, 0, 0), workspace_max=(0, 1, 1)))
    with pytest.raises(ConfigError, match="max_speed_mps"):
        make_config(SafetyConfig, "tiny", ["max_speed_mps=-1"])
    with pytest.raises(ConfigError, match="Did you mean"):
        make_config(SafetyConfig, "tiny", ["max_sped_mps=1"])


@settings(max_examples=300, deadline=None)
@given(actions, positions, obs_ages, st.booleans())
def test_any_single_command_is_within_limits(action, pos, age, lost_source):
    env = SafetyEnvelope()
    audit = LimitAudit(env.config)
    source_time = NOW - 5.0 if lost_source else NOW
    d = env.filter(action, state_at(pos), NOW - age, NOW, source_time=source_time)
    assert d.action.dtype == np.float32 and d.action.shape == (7,)
    assert audit.violations(d.action, pos, d.held) == []
    raw_unsafe = (not np.all(np.isfinite(action)) or np.any(np.abs(action) > 1) or lost_source
                  or not (0 <= age <= CFG.stale_obs_s))
    if raw_unsafe:
        assert d.status != "ok"
    if d.status == "ok":
        np.testing.assert_array_equal(d.action, action.astype(np.float32))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(actions, st.booleans()), min_size=2, max_size=40), positions)
def test_command_sequences_respect_ramp_limits(sequence, start):
    env = SafetyEnvelope()
    audit = LimitAudit(env.config)
    pos = start.copy()
    for action, estop in sequence:
        if estop:
            env.estop("test")
        d = env.filter(action, state_at(pos), NOW, NOW)
        assert audit.violations(d.action, pos, d.held) == []
        if estop:
            assert d.held
            env.reset_estop()
        pos = pos + d.action[:3].astype(np.float64) * CFG.translation_scale
