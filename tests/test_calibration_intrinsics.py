"""Intrinsics from rendered ChArUco views: accuracy against the known K, outlier rejection, and refusal of
degenerate input (too few views, no tilt, tilt about one axis only, board not found)."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.board import BoardDetection, BoardDetector
from calibration.capture import capture_intrinsics_views
from calibration.config import BoardConfig, IntrinsicsConfig
from calibration.errors import DegenerateInputError
from calibration.geometry import make_transform, rotvec_to_matrix
from calibration.intrinsics import calibrate_intrinsics, compare_with_factory
from calibration.render import BoardRenderer, ImageNoise
from calibration.synthetic import SyntheticBoardCamera
from wovr_core.hardware.camera import CameraConfig

W, H = 640, 480


def make_camera(**options) -> SyntheticBoardCamera:
    return SyntheticBoardCamera(CameraConfig(type="synthetic_board", name="cam", width=W, height=H,
                                             options={"seed": 0, **options}))


@pytest.fixture(scope="module")
def captured():
    camera = make_camera()
    with camera:
        capture = capture_intrinsics_views(camera, IntrinsicsConfig())
        return capture, camera.K, camera.intrinsics()


def focal_and_pp_error_pct(K_est, K_true):
    focal = 100 * np.abs([K_est[0, 0] - K_true[0, 0], K_est[1, 1] - K_true[1, 1]]) / np.diag(K_true)[:2]
    pp = 100 * np.abs(K_est[:2, 2] - K_true[:2, 2]) / K_true[:2, 2]
    return focal, pp


def test_recovers_focal_length_and_principal_point_within_half_a_percent(captured):
    capture, K_true, factory = captured
    assert len(capture.views) == IntrinsicsConfig().num_views
    assert capture.coverage.fraction > 0.6
    result = calibrate_intrinsics(capture.views, capture.width, capture.height, IntrinsicsConfig())
    focal, pp = focal_and_pp_error_pct(result.K, K_true)
    assert np.all(focal < 0.5) and np.all(pp < 0.5), (focal, pp)
    assert result.rms_px < 0.3
    assert result.views_rejected == []
    assert (result.width, result.height) == (W, H) and result.dist.shape == (5,)
    comparison = compare_with_factory(result, factory)
    assert comparison["compared"] and abs(comparison["difference_pct"]["fx"]) < 0.5


def test_a_corrupted_view_is_rejected_and_named(captured):
    capture, K_true, _ = captured
    views = list(capture.views)
    bad = views[7]
    shifted = bad.image_points.copy()
    shifted[::2] += 4.0  # e.g. the board bent or moved during exposure
    views[7] = BoardDetection(shifted, bad.object_points, bad.ids)
    result = calibrate_intrinsics(views, W, H, IntrinsicsConfig())
    assert 7 in result.views_rejected and 7 not in result.views_used
    focal, pp = focal_and_pp_error_pct(result.K, K_true)
    assert np.all(focal < 0.5) and np.all(pp < 0.5)


def test_too_few_views_are_refused(captured):
    capture, _, _ = captured
    with pytest.raises(DegenerateInputError, match=r"found with >= 12 corners in only 5 of 5 frames; need 10"):
        calibrate_intrinsics(capture.views[:5], W, H, IntrinsicsConfig())


def render_views(rotvecs, depths, centres) -> list[BoardDetection]:
    board = BoardConfig()
    camera = make_camera()
    renderer = BoardRenderer(board, camera.K, camera.dist, (W, H))
    detector = BoardDetector(board)
    rng = np.random.default_rng(0)
    views = []
    for rotvec, depth, (u, v) in zip(rotvecs, depths, centres, strict=True):
        R = rotvec_to_matrix(rotvec)
        centre = np.linalg.solve(camera.K, [u, v, 1.0]) * depth
        T = make_transform(R, centre - R @ [0.14, 0.10, 0.0])
        views.append(detector.detect(renderer.render(T, ImageNoise(), rng)))
    return views


def test_views_parallel_to_the_image_plane_are_refused():
    rng = np.random.default_rng(1)
    n = 12
    views = render_views([(0, 0, rng.uniform(-0.5, 0.5)) for _ in range(n)], rng.uniform(0.35, 0.6, n),
                         rng.uniform([200, 160], [440, 320], (n, 2)))
    with pytest.raises(DegenerateInputError, match="nearly parallel to the image plane"):
        calibrate_intrinsics(views, W, H, IntrinsicsConfig())


def test_views_tilted_about_one_axis_only_are_refused():
    rng = np.random.default_rng(2)
    n = 12
    views = render_views([(rng.uniform(-0.6, 0.6), 0, 0) for _ in range(n)], rng.uniform(0.35, 0.6, n),
                         rng.uniform([200, 160], [440, 320], (n, 2)))
    with pytest.raises(DegenerateInputError, match="tilted about one axis only"):
        calibrate_intrinsics(views, W, H, IntrinsicsConfig())


@pytest.mark.parametrize("options, board", [({"board_visible": False}, BoardConfig()),
                                            ({}, BoardConfig(dictionary="DICT_4X4_50"))],
                         ids=["board-out-of-view", "wrong-board-settings"])
def test_board_not_found_is_refused_with_the_board_settings_named(options, board):
    config = IntrinsicsConfig(board=board, max_frames=15)
    with make_camera(**options) as camera:
        capture = capture_intrinsics_views(camera, config)
    assert capture.views == [] and capture.frames_read == 15
    with pytest.raises(DegenerateInputError, match=rf"{board.dictionary}.*only 0 of 15 frames"):
        calibrate_intrinsics(capture.views, capture.width, capture.height, config,
                             frames_read=capture.frames_read)


def test_capture_reports_progress():
    messages = []
    with make_camera() as camera:
        capture_intrinsics_views(camera, IntrinsicsConfig(num_views=4), on_progress=lambda p: messages.append(p.message))
    assert len(messages) == 4 and messages[-1].startswith("view 4/4") and "coverage" in messages[-1]


def test_a_board_held_still_counts_as_one_view():
    from wovr_core.hardware.arm import ArmConfig
    from wovr_core.hardware.synthetic import SyntheticArm

    arm = SyntheticArm(ArmConfig(type="synthetic"))
    with arm, make_camera() as camera:
        camera.follow(arm, "eye_in_hand")  # the arm does not move: every frame shows the same pose
        capture = capture_intrinsics_views(camera, IntrinsicsConfig(num_views=3, max_frames=6))
    assert capture.frames_read == 6 and len(capture.views) == 1
