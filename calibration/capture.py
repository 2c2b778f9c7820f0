"""Capture loops that touch devices: board views from a ``Camera``; stationary samples from an ``Arm`` + camera.

They only collect and give feedback; solving and refusing is done by ``intrinsics`` and ``hand_eye``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from calibration.board import BoardDetection, BoardDetector
from calibration.config import HandEyeConfig, IntrinsicsConfig
from calibration.coverage import CoverageGrid
from calibration.errors import CalibrationError, DegenerateInputError
from calibration.geometry import pose_to_transform
from calibration.hand_eye import HandEyeSample, board_pose_from_detection
from wovr_core.hardware.arm import Arm
from wovr_core.hardware.camera import Camera
from wovr_core.types import RobotState

log = logging.getLogger(__name__)


@dataclass
class IntrinsicsCapture:
    """Accepted board views from one camera and how many frames it took."""

    views: list[BoardDetection]
    width: int
    height: int
    frames_read: int
    coverage: CoverageGrid


@dataclass(frozen=True)
class CaptureProgress:
    """Feedback after each accepted view (intrinsics) or visited pose (hand-eye)."""

    index: int
    total: int
    num_corners: int
    message: str
    extra: dict = field(default_factory=dict)


def _is_new_view(view: BoardDetection, previous: list[BoardDetection], min_shift_px: float) -> bool:
    """A view is new unless some earlier view saw the same corners at nearly the same pixels (board held still)."""
    for old in previous:
        common, a, b = np.intersect1d(view.ids, old.ids, return_indices=True)
        if len(common) < 0.8 * max(len(view.ids), len(old.ids)):
            continue
        shift = np.linalg.norm(view.image_points[a] - old.image_points[b], axis=1).mean()
        if shift < min_shift_px:
            return False
    return True


def capture_intrinsics_views(camera: Camera, config: IntrinsicsConfig,
                             on_progress: Callable[[CaptureProgress], None] | None = None) -> IntrinsicsCapture:
    """Read frames until ``num_views`` distinct views with enough corners are found or ``max_frames`` are read."""
    detector = BoardDetector(config.board)
    views: list[BoardDetection] = []
    coverage: CoverageGrid | None = None
    size: tuple[int, int] | None = None
    frames = 0
    while len(views) < config.num_views and frames < config.max_frames:
        frame = camera.read()
        frames += 1
        h, w = frame.shape
        if size is None:
            size, coverage = (w, h), CoverageGrid(w, h)
        elif size != (w, h):
            raise CalibrationError(f"camera {camera.name!r} changed resolution mid-capture: {size} -> {(w, h)}")
        view = detector.detect(frame.rgb)
        if view.num_corners < config.min_corners or not _is_new_view(view, views, config.min_new_view_px):
            continue
        views.append(view)
        coverage.add(view.image_points)
        if on_progress is not None:
            on_progress(CaptureProgress(len(views), config.num_views, view.num_corners,
                                        f"view {len(views)}/{config.num_views}: {view.num_corners} corners, "
                                        f"{coverage.hint()}", {"coverage": coverage.fraction}))
    if size is None:
        raise DegenerateInputError(f"camera {camera.name!r} returned no frames")
    return IntrinsicsCapture(views, size[0], size[1], frames, coverage)


def _still(a: RobotState, b: RobotState, tolerance_m: float) -> bool:
    return float(np.linalg.norm(np.asarray(a.ee_pos) - np.asarray(b.ee_pos))) <= tolerance_m


def capture_hand_eye_samples(camera: Camera, arm: Arm, poses: list[np.ndarray], move_to: Callable[[np.ndarray], object],
                             K: np.ndarray, dist: np.ndarray, config: HandEyeConfig,
                             on_progress: Callable[[CaptureProgress], None] | None = None,
                             sleep: Callable[[float], None] = time.sleep) -> list[HandEyeSample]:
    """Visit each pose (``move_to`` goes through the safety envelope), wait, and record the hand pose with the
    board pose seen at that moment. Poses where the board is not seen or the hand still moves are skipped."""
    detector = BoardDetector(config.board)
    samples: list[HandEyeSample] = []
    for index, T_target in enumerate(poses, start=1):
        move_to(T_target)
        if config.motion.settle_s > 0:
            sleep(config.motion.settle_s)
        for _ in range(config.motion.frames_to_skip):
            camera.read()
        before = arm.state()
        frame = camera.read()
        after = arm.state()
        detection = detector.detect(frame.rgb)
        if not _still(before, after, config.motion.max_motion_during_capture_m):
            message = "hand still moving while capturing; skipped (raise motion.settle_s)"
        elif detection.num_corners < config.min_corners:
            message = f"board not found ({detection.num_corners} corners < {config.min_corners}); skipped"
        else:
            T_cam_board = board_pose_from_detection(detection, K, dist)
            samples.append(HandEyeSample(pose_to_transform(after.ee_pos, after.ee_quat), detection, T_cam_board))
            message = f"{detection.num_corners} corners, board at {1000 * np.linalg.norm(T_cam_board[:3, 3]):.0f} mm"
        log.debug("pose %d/%d: %s", index, len(poses), message)
        if on_progress is not None:
            on_progress(CaptureProgress(index, len(poses), detection.num_corners,
                                        f"pose {index}/{len(poses)}: {message}"))
    if len(samples) < config.min_poses:
        raise DegenerateInputError(
            f"hand-eye: the board was found in only {len(samples)} of {len(poses)} poses; need "
            f"{config.min_poses}. Check the board is in view from the start pose, the board settings "
            f"({config.board.squares_x}x{config.board.squares_y}, {config.board.dictionary}) and the lighting.")
    return samples
