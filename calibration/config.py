"""Typed configs of the calibration procedures (``wovr calibrate ... --set key=value``). Light: no OpenCV."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from wovr_core.config import ConfigError, did_you_mean

Setup = Literal["eye_in_hand", "eye_to_hand"]


@dataclass
class BoardConfig:
    """A ChArUco board as printed: squares across/down, square and marker side in metres, ArUco dictionary."""

    squares_x: int = 7
    squares_y: int = 5
    square_length_m: float = 0.04
    marker_length_m: float = 0.03
    dictionary: str = "DICT_5X5_100"

    def validate(self) -> None:
        import cv2

        if self.squares_x < 3 or self.squares_y < 3:
            raise ConfigError(f"board needs at least 3x3 squares, got {self.squares_x}x{self.squares_y}")
        if not 0 < self.marker_length_m < self.square_length_m:
            raise ConfigError(f"board marker_length_m ({self.marker_length_m}) must be positive and smaller "
                              f"than square_length_m ({self.square_length_m})")
        names = [n for n in dir(cv2.aruco) if n.startswith("DICT_")]
        if self.dictionary not in names:
            raise ConfigError(f"unknown ArUco dictionary {self.dictionary!r}." + did_you_mean(self.dictionary, names))

    @property
    def size_m(self) -> tuple[float, float]:
        return self.squares_x * self.square_length_m, self.squares_y * self.square_length_m

    @property
    def num_corners(self) -> int:
        return (self.squares_x - 1) * (self.squares_y - 1)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IntrinsicsConfig:
    """Capture targets, refusal thresholds and the distortion model of an intrinsics calibration."""

    board: BoardConfig = field(default_factory=BoardConfig)
    num_views: int = 30  # capture stops after this many accepted views
    max_frames: int = 600  # ... or after reading this many frames
    min_views: int = 10  # fewer usable views -> refuse
    min_corners: int = 12  # a view needs this many chessboard corners
    min_new_view_px: float = 15.0  # capture: corners must move this much (mean) to count as a new view
    min_tilt_deg: float = 15.0  # the most tilted view must be tilted at least this much
    min_tilt_spread_deg: float = 5.0  # tilts must vary about both image axes (focal lengths fx and fy)
    distortion_model: Literal["plumb_bob", "rational_polynomial"] = "plumb_bob"
    fix_k3: bool = True  # k3 overfits with few views near the image corners
    outlier_factor: float = 3.0  # reject views whose RMS exceeds factor x median ...
    outlier_min_px: float = 0.5  # ... and this absolute floor
    max_rms_px: float = 1.0  # refuse a result whose RMS reprojection error is larger

    def validate(self) -> None:
        if self.min_views < 3:
            raise ConfigError(f"min_views must be >= 3, got {self.min_views}")
        if self.num_views < self.min_views:
            raise ConfigError(f"num_views ({self.num_views}) must be >= min_views ({self.min_views})")
        if self.min_corners < 6:
            raise ConfigError(f"min_corners must be >= 6 (homography + margin), got {self.min_corners}")


@dataclass
class PoseSamplerConfig:
    """Where and how far the hand may go while calibrating (base frame, metres and degrees)."""

    num_poses: int = 15
    workspace_min: tuple[float, float, float] = (0.25, -0.40, 0.12)
    workspace_max: tuple[float, float, float] = (0.80, 0.40, 0.75)
    min_rotation_deg: float = 10.0  # each pose turns at least this much from the start orientation ...
    max_rotation_deg: float = 30.0  # ... and at most this much (tilt limit)
    translation_jitter_m: float = 0.04  # extra random offset per axis, so positions vary beyond the orbit
    pivot_distance_m: float = 0.0  # along the hand's z axis; 0 = measured board distance / 0.1 m (eye-to-hand)
    candidates_per_pose: int = 40
    seed: int = 0

    def validate(self) -> None:
        if any(lo >= hi for lo, hi in zip(self.workspace_min, self.workspace_max, strict=True)):
            raise ConfigError(f"poses.workspace_min {self.workspace_min} must be below workspace_max "
                              f"{self.workspace_max}")
        if not 0 <= self.min_rotation_deg < self.max_rotation_deg <= 90:
            raise ConfigError("poses: need 0 <= min_rotation_deg < max_rotation_deg <= 90, got "
                              f"{self.min_rotation_deg}, {self.max_rotation_deg}")
        if self.num_poses < 1:
            raise ConfigError(f"poses.num_poses must be >= 1, got {self.num_poses}")


@dataclass
class MotionConfig:
    """How the arm is driven to each calibration pose."""

    rate_hz: float | None = None  # command rate; None = the arm's control_hz, 0 = unpaced (simulated arms)
    position_tolerance_m: float = 0.003
    rotation_tolerance_deg: float = 0.5
    max_steps: int = 600  # per pose
    settle_s: float = 0.5  # wait after arriving before capturing (vibration, camera latency)
    frames_to_skip: int = 2  # frames discarded after settling (camera buffers)
    max_motion_during_capture_m: float = 0.0005  # the hand must be still while the frame is taken


@dataclass
class HandEyeConfig:
    """Pose generation, refusal thresholds and solver of a hand-eye calibration."""

    board: BoardConfig = field(default_factory=BoardConfig)
    setup: Setup = "eye_in_hand"
    poses: PoseSamplerConfig = field(default_factory=PoseSamplerConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    min_poses: int = 8  # fewer usable poses -> refuse
    min_corners: int = 8  # board corners a view needs for a reliable pose
    min_rotation_deg: float = 15.0  # the largest relative rotation between poses must exceed this
    min_axis_spread_deg: float = 20.0  # relative rotation axes must not all be parallel
    min_translation_m: float = 0.05  # the hand must move at least this far across the set
    method: Literal["tsai", "park", "horaud", "andreff", "daniilidis", "shah", "li"] = "park"
    refine: bool = True  # joint reprojection-error refinement after the closed-form solve
    outlier_factor: float = 3.0  # reject views whose reprojection RMS exceeds factor x median ...
    outlier_min_px: float = 1.0  # ... and this floor
    max_reprojection_px: float = 2.0  # refuse a result whose RMS reprojection error is larger

    def validate(self) -> None:
        if self.min_poses < 3:
            raise ConfigError(f"min_poses must be >= 3 (two independent motions), got {self.min_poses}")
        if self.poses.num_poses < self.min_poses:
            raise ConfigError(f"poses.num_poses ({self.poses.num_poses}) must be >= min_poses ({self.min_poses})")
