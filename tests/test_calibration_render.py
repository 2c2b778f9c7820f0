"""The synthetic board renderer is exact (corners land where the camera model projects them) and the
geometry helpers agree with each other: the ground truth of every other calibration test rests on this."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.board import BoardDetector, board_image
from calibration.config import BoardConfig
from calibration.coverage import CoverageGrid
from calibration.geometry import (
    invert,
    make_transform,
    matrix_to_quat,
    quat_to_matrix,
    rotation_angle_deg,
    rotvec_to_matrix,
    transform_error,
)
from calibration.render import BoardRenderer, ImageNoise
from calibration.synthetic import SyntheticBoardCamera
from wovr_core.hardware.camera import CameraConfig, make_camera
from wovr_core.hardware.errors import DeviceNotConnectedError

K = np.array([[610.0, 0, 318.0], [0, 605.0, 243.0], [0, 0, 1]])
DIST = np.array([-0.08, 0.05, 0.001, -0.0005, 0.0])
POSES = [((0.0, 0.0, 0.0), 0.40), ((0.4, 0.2, 0.1), 0.50), ((-0.3, 0.5, 0.3), 0.65), ((0.2, -0.5, 1.0), 0.80)]


@pytest.mark.parametrize("dist", [None, DIST], ids=["pinhole", "distorted"])
def test_rendered_corners_are_detected_where_the_camera_model_projects_them(dist):
    board = BoardConfig()
    renderer = BoardRenderer(board, K, dist, (640, 480))
    detector = BoardDetector(board)
    rng = np.random.default_rng(0)
    for rotvec, depth in POSES:
        T = make_transform(np.array(rotvec), (-0.14, -0.10, depth))
        found = detector.detect(renderer.render(T, ImageNoise(), rng))
        assert found.num_corners == board.num_corners
        error = found.image_points - renderer.project(T, found.object_points)
        assert np.sqrt(np.mean(np.sum(error ** 2, axis=1))) < 0.2  # px, with blur and noise
        assert np.all(np.abs(error.mean(axis=0)) < 0.1)  # no systematic offset (pixel-centre convention)


def test_board_image_places_board_points_at_documented_pixels():
    board = BoardConfig()
    image = board_image(board, px_per_square=100, margin_px=50)
    found = BoardDetector(board).detect(image)
    expected = 50 + found.object_points[:, :2] * 100 / board.square_length_m - 0.5
    np.testing.assert_allclose(found.image_points, expected, atol=0.05)


def test_board_behind_the_camera_renders_an_empty_image():
    renderer = BoardRenderer(BoardConfig(), K, None, (320, 240))
    T = make_transform(np.zeros(3), (-0.1, -0.1, -0.5))
    image = renderer.render(T, ImageNoise(noise_std=0.0, blur_sigma_px=0.0))
    assert np.all(image == int(ImageNoise().background))
    assert BoardDetector(BoardConfig()).detect(image).num_corners == 0


def test_synthetic_board_camera_is_a_registered_camera_with_truthful_intrinsics():
    import calibration  # noqa: F401  (registers synthetic_board)

    camera = make_camera(CameraConfig(type="synthetic_board", name="cam", width=320, height=240,
                                      options={"seed": 1, "fx": 300.0}))
    assert isinstance(camera, SyntheticBoardCamera)
    with pytest.raises(DeviceNotConnectedError):
        camera.read()
    with camera:
        frames = [camera.read() for _ in range(3)]
        assert camera.intrinsics()["K"][0][0] == 300.0
    assert [f.seq for f in frames] == [1, 2, 3]
    assert frames[0].rgb.shape == (240, 320, 3) and frames[0].rgb.dtype == np.uint8
    assert not np.array_equal(frames[0].rgb, frames[1].rgb)  # the board moves between views


def test_quaternion_and_transform_helpers_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(50):
        rotvec = rng.normal(size=3)
        rotvec *= rng.uniform(0, np.pi - 1e-3) / np.linalg.norm(rotvec)
        R = rotvec_to_matrix(rotvec)
        q = matrix_to_quat(R)
        assert q[3] >= 0 and np.isclose(np.linalg.norm(q), 1.0)
        np.testing.assert_allclose(quat_to_matrix(q), R, atol=1e-12)
        assert np.isclose(rotation_angle_deg(R), np.degrees(np.linalg.norm(rotvec)), atol=1e-6)
        T = make_transform(R, rng.normal(size=3))
        np.testing.assert_allclose(invert(T) @ T, np.eye(4), atol=1e-12)
    # 180-degree rotations take the non-trace branches
    for R in (np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])):
        np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(R)), R, atol=1e-12)
    t_err, r_err = transform_error(make_transform(np.zeros(3), [0, 0, 0.003]), np.eye(4))
    assert np.isclose(t_err, 0.003) and r_err == 0.0


def test_coverage_grid_names_the_regions_still_empty():
    grid = CoverageGrid(640, 480)
    grid.add(np.array([[10.0, 10.0], [630.0, 470.0]]))
    assert "top-left" not in grid.empty_regions() and "bottom-right" not in grid.empty_regions()
    assert "top-right" in grid.empty_regions() and "centre" in grid.empty_regions()
    assert 0 < grid.fraction < 0.1
    assert "move the board to" in grid.hint()
