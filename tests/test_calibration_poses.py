"""Calibration pose generation (inside the box, within the tilt limit, diverse, short travel) and the
closed-loop mover that reaches them through the safety envelope."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.config import HandEyeConfig, PoseSamplerConfig
from calibration.errors import DegenerateInputError, MotionError
from calibration.geometry import make_transform, pose_to_transform, rotation_between_deg
from calibration.hand_eye import check_pose_diversity
from calibration.motion import DeltaMover, pose_error
from calibration.poses import generate_poses, in_workspace, travel_length
from wovr_core.hardware.arm import ArmConfig
from wovr_core.hardware.safety import SafetyConfig, SafetyEnvelope
from wovr_core.hardware.synthetic import SyntheticArm

START = make_transform(np.diag([1.0, -1.0, -1.0]), [0.5, 0.0, 0.40])
PIVOT = np.array([0.0, 0.0, 0.4])


def test_poses_stay_in_the_box_and_tilt_limits_and_are_diverse():
    config = PoseSamplerConfig(num_poses=15, max_rotation_deg=30.0, min_rotation_deg=10.0)
    poses = generate_poses(START, PIVOT, config)
    assert len(poses) == 15
    for T in poses:
        assert in_workspace(T, config)
        assert 10.0 - 1e-6 <= rotation_between_deg(START[:3, :3], T[:3, :3]) <= 30.0 + 1e-6
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
    diversity = check_pose_diversity(poses, HandEyeConfig())
    assert diversity.axis_spread_deg > 45 and diversity.max_rotation_deg > 30


def test_poses_look_at_the_pivot():
    # the pivot (where the board is) stays on the hand's z axis, so the board stays in view
    config = PoseSamplerConfig(translation_jitter_m=0.0)
    pivot_base = START[:3, :3] @ PIVOT + START[:3, 3]
    for T in generate_poses(START, PIVOT, config):
        np.testing.assert_allclose(T[:3, :3] @ PIVOT + T[:3, 3], pivot_base, atol=1e-9)


def test_poses_are_ordered_for_short_travel_and_reproducible():
    config = PoseSamplerConfig(num_poses=15, seed=4)
    poses = generate_poses(START, PIVOT, config)
    shuffled = [poses[i] for i in np.random.default_rng(0).permutation(len(poses))]
    assert travel_length(poses, START) < travel_length(shuffled, START)
    again = generate_poses(START, PIVOT, config)
    assert all(np.array_equal(a, b) for a, b in zip(poses, again, strict=True))


def test_a_workspace_too_small_for_diverse_poses_is_refused():
    p = START[:3, 3]
    config = PoseSamplerConfig(workspace_min=tuple(p - 0.01), workspace_max=tuple(p + 0.01))
    poses = generate_poses(START, PIVOT, config)
    assert all(in_workspace(T, config) for T in poses)
    with pytest.raises(DegenerateInputError, match="planned poses"):
        check_pose_diversity(poses, HandEyeConfig(), what="planned poses")


def make_arm() -> SyntheticArm:
    arm = SyntheticArm(ArmConfig(type="synthetic", options={"start_pos": [0.5, 0.0, 0.4]}))
    arm.connect()
    return arm


def test_mover_reaches_poses_within_the_safety_limits():
    arm = make_arm()
    safety_config = SafetyConfig()
    mover = DeltaMover(arm, SafetyEnvelope(safety_config), rate_hz=0)
    for target in generate_poses(START, PIVOT, PoseSamplerConfig(num_poses=4)):
        state = mover(target)
        pos_err, rot_err = pose_error(state, target)
        assert pos_err <= mover.position_tolerance_m and rot_err <= mover.rotation_tolerance_deg
    sent = np.array(arm.sent, dtype=np.float64)
    assert len(sent) == mover.steps_sent > 0
    step_m = np.linalg.norm(sent[:, :3], axis=1) * arm.config.translation_scale
    step_rad = np.linalg.norm(sent[:, 3:6], axis=1) * arm.config.rotation_scale
    assert step_m.max() <= safety_config.step_translation_limit + 1e-7
    assert step_rad.max() <= safety_config.step_rotation_limit + 1e-7
    assert np.all(sent[:, 6] == 0.0)  # inside the open/close hysteresis: the gripper (maybe holding the board) stays


def test_mover_refuses_a_pose_outside_the_safety_workspace():
    arm = make_arm()
    mover = DeltaMover(arm, SafetyEnvelope(SafetyConfig()), rate_hz=0)
    state = arm.state()
    target = pose_to_transform(state.ee_pos, state.ee_quat)
    target[2, 3] = 1.2  # above the envelope's box
    with pytest.raises(MotionError, match="safety envelope: .*workspace"):
        mover(target)


def test_mover_stops_when_the_safety_envelope_is_estopped():
    arm = make_arm()
    safety = SafetyEnvelope(SafetyConfig())
    safety.estop("test")
    state = arm.state()
    target = pose_to_transform(state.ee_pos + np.array([0.05, 0, 0]), state.ee_quat)
    with pytest.raises(MotionError, match=r"e-stop latched \(test\)"):
        DeltaMover(arm, safety, rate_hz=0)(target)
    np.testing.assert_allclose(arm.state().ee_pos, state.ee_pos)  # nothing moved
