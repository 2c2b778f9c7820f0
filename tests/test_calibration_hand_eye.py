"""Hand-eye calibration end to end on the synthetic rig (exact kinematic arm, rendered board, pixel noise),
driven through the real safety envelope; and refusal of degenerate pose sets before solving."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.capture import capture_hand_eye_samples
from calibration.config import HandEyeConfig, MotionConfig
from calibration.errors import DegenerateInputError
from calibration.geometry import make_transform, pose_to_transform, rotvec_to_matrix, transform_error
from calibration.hand_eye import HandEyeSample, axis_spread_deg, check_pose_diversity, solve_hand_eye
from calibration.motion import DeltaMover
from calibration.poses import generate_poses
from calibration.synthetic import SyntheticBoardCamera
from wovr_core.hardware.arm import ArmConfig
from wovr_core.hardware.camera import CameraConfig
from wovr_core.hardware.safety import SafetyConfig, SafetyEnvelope
from wovr_core.hardware.synthetic import SyntheticArm

FAST_MOTION = MotionConfig(rate_hz=0, settle_s=0.0, frames_to_skip=0)
PIVOT = {"eye_in_hand": 0.40, "eye_to_hand": 0.10}


def run_rig(setup: str, seed: int, config: HandEyeConfig | None = None, camera_options: dict | None = None):
    """Calibrate on the synthetic rig; returns (result, truth, samples, camera)."""
    config = config or HandEyeConfig(setup=setup, motion=FAST_MOTION)
    config.poses.seed = seed
    arm = SyntheticArm(ArmConfig(type="synthetic"))
    camera = SyntheticBoardCamera(CameraConfig(type="synthetic_board", name="cam", width=640, height=480,
                                               options={"seed": seed, **(camera_options or {})}))
    with arm, camera:
        truth = camera.follow(arm, setup)
        state = arm.state()
        T_start = pose_to_transform(state.ee_pos, state.ee_quat)
        poses = generate_poses(T_start, np.array([0.0, 0.0, PIVOT[setup]]), config.poses)
        mover = DeltaMover(arm, SafetyEnvelope(SafetyConfig()), rate_hz=0)
        samples = capture_hand_eye_samples(camera, arm, poses, mover, camera.K, camera.dist, config)
        return solve_hand_eye(samples, camera.K, camera.dist, config), truth, samples, camera


@pytest.mark.parametrize("setup", ["eye_in_hand", "eye_to_hand"])
def test_recovers_the_camera_transform_within_2mm_and_0_2deg(setup):
    result, truth, samples, _ = run_rig(setup, seed=1)
    t_err, r_err = transform_error(result.T_camera, truth.T_camera)
    assert t_err < 0.002 and r_err < 0.2, (1000 * t_err, r_err)
    T_board_true = truth.T_base_board if setup == "eye_in_hand" else truth.T_ee_board
    t_board, _ = transform_error(result.T_board, T_board_true)
    assert t_board < 0.003
    assert result.setup == setup and len(result.views_used) == len(samples) == 15
    assert result.reprojection_rms_px < 0.3
    assert result.translation_residual_mm["max"] < 2.0 and result.rotation_residual_deg["max"] < 0.3
    assert result.diversity.axis_spread_deg > 20


@pytest.fixture(scope="module")
def eye_in_hand_samples():
    _, truth, samples, camera = run_rig("eye_in_hand", seed=2)
    return truth, samples, camera


def test_every_closed_form_method_is_within_bounds_without_refinement(eye_in_hand_samples):
    truth, samples, camera = eye_in_hand_samples
    for method in ("tsai", "park", "horaud", "andreff", "daniilidis", "shah", "li"):
        config = HandEyeConfig(setup="eye_in_hand", method=method, refine=False)
        estimate = solve_hand_eye(samples, camera.K, camera.dist, config)
        t_err, r_err = transform_error(estimate.T_camera, truth.T_camera)
        assert t_err < 0.002 and r_err < 0.2, (method, 1000 * t_err, r_err)
        assert estimate.method == method


def test_a_pose_read_while_moving_is_rejected_and_named(eye_in_hand_samples):
    truth, samples, camera = eye_in_hand_samples
    bad = samples[4]
    moved = bad.T_base_ee @ make_transform(rotvec_to_matrix([0.0, 0.01, 0.0]), [0.006, 0.0, 0.0])
    corrupted = list(samples)
    corrupted[4] = HandEyeSample(moved, bad.detection, bad.T_cam_board)
    result = solve_hand_eye(corrupted, camera.K, camera.dist, HandEyeConfig(setup="eye_in_hand"))
    assert result.views_rejected == [4] and 4 not in result.views_used
    t_err, r_err = transform_error(result.T_camera, truth.T_camera)
    assert t_err < 0.002 and r_err < 0.2


def test_board_lost_from_view_is_refused():
    with pytest.raises(DegenerateInputError, match="board was found in only 0 of 15 poses"):
        run_rig("eye_in_hand", seed=0, camera_options={"board_visible": False})


# ---- degenerate pose sets (pure: no rendering) ----------------------------------------------------------

START = make_transform(np.diag([1.0, -1.0, -1.0]), [0.45, 0.0, 0.40])


def poses_from(rotvecs, offsets):
    return [START @ make_transform(rotvec_to_matrix(r), o) for r, o in zip(rotvecs, offsets, strict=True)]


def test_rotations_about_one_axis_are_refused():
    n = 12
    rng = np.random.default_rng(0)
    poses = poses_from([(0, 0, a) for a in np.radians(np.linspace(-40, 40, n))], rng.uniform(-0.1, 0.1, (n, 3)))
    with pytest.raises(DegenerateInputError, match=r"about nearly the same axis \(axis spread 0.0 deg"):
        check_pose_diversity(poses, HandEyeConfig())


def test_nearly_identical_orientations_are_refused():
    rng = np.random.default_rng(1)
    poses = poses_from(rng.normal(scale=0.02, size=(12, 3)), rng.uniform(-0.1, 0.1, (12, 3)))
    with pytest.raises(DegenerateInputError, match="barely rotate"):
        check_pose_diversity(poses, HandEyeConfig())


def test_rotations_in_place_are_refused():
    rng = np.random.default_rng(2)
    poses = poses_from(rng.normal(scale=0.4, size=(12, 3)), np.zeros((12, 3)))
    with pytest.raises(DegenerateInputError, match=r"span only 0.0 mm"):
        check_pose_diversity(poses, HandEyeConfig())


def test_too_few_poses_are_refused():
    rng = np.random.default_rng(3)
    poses = poses_from(rng.normal(scale=0.4, size=(5, 3)), rng.uniform(-0.1, 0.1, (5, 3)))
    with pytest.raises(DegenerateInputError, match="only 5 robot poses"):
        check_pose_diversity(poses, HandEyeConfig())


def test_axis_spread_measures_the_angle_between_axes():
    x, y = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    assert axis_spread_deg(np.array([x, x, -x])) == pytest.approx(0.0, abs=1e-6)
    assert axis_spread_deg(np.array([x, y])) == pytest.approx(90.0)
    tilted = np.array([np.cos(np.radians(30)), np.sin(np.radians(30)), 0])
    assert axis_spread_deg(np.array([x, tilted])) == pytest.approx(30.0)
