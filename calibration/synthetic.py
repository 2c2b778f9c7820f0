"""A synthetic calibration camera with exact ground truth: it renders a ChArUco board (type ``synthetic_board``,
registered in ``calibration/__init__.py``).

On its own it shows the board as if waved in front of it (intrinsics). After ``follow(arm, setup)`` it is
either mounted on the arm's hand looking at a board on the table below (eye-in-hand) or fixed in front of
the robot looking at a board held by the hand (eye-to-hand), laid out around the hand pose at that moment.
Every image then agrees exactly with the pose the arm reports, so any exact arm (``synthetic``, the
MuJoCo twin) gives hand-eye ground truth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from calibration.config import BoardConfig
from calibration.geometry import invert, make_transform, pose_to_transform, rotvec_to_matrix
from calibration.render import BoardRenderer, ImageNoise
from wovr_core.hardware.arm import Arm
from wovr_core.hardware.camera import Camera, CameraConfig
from wovr_core.hardware.errors import DeviceNotConnectedError
from wovr_core.types import Frame

SETUPS = ("eye_in_hand", "eye_to_hand")

# Wrist camera mount: looking along the hand's z axis, turned 90 deg about it, a few degrees of mounting error.
T_EE_CAM = make_transform(rotvec_to_matrix([0.0, 0.0, np.pi / 2]) @ rotvec_to_matrix([0.03, -0.02, 0.015]),
                          [0.055, -0.012, 0.035])
WRIST_BOARD_DISTANCE_M = 0.37  # eye-in-hand: board this far along the camera axis at the start pose
HELD_BOARD_OFFSET_M = 0.10  # eye-to-hand: board centre this far along the hand's z axis
STATIC_CAMERA_OFFSET_M = (0.55, 0.08, -0.15)  # eye-to-hand: camera position relative to the held board (base axes)


def look_at(eye: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """T_base_cam of a camera at ``eye`` looking at ``target`` (optical frame: z forward, y down)."""
    z = np.asarray(target, float) - np.asarray(eye, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    return make_transform(np.column_stack([x, np.cross(z, x), z]), eye)


@dataclass(frozen=True)
class HandEyeTruth:
    """The exact transforms of one hand-eye set-up (those the set-up does not use are None)."""

    setup: str
    T_ee_cam: np.ndarray | None = None  # eye-in-hand: camera on the hand
    T_base_board: np.ndarray | None = None  # eye-in-hand: board fixed in the world
    T_base_cam: np.ndarray | None = None  # eye-to-hand: static camera
    T_ee_board: np.ndarray | None = None  # eye-to-hand: board held by the hand

    @property
    def T_camera(self) -> np.ndarray:
        """What hand-eye calibration estimates: T_ee_cam (eye-in-hand) or T_base_cam (eye-to-hand)."""
        return self.T_ee_cam if self.setup == "eye_in_hand" else self.T_base_cam


def hand_eye_layout(setup: str, T_base_ee: np.ndarray, board: BoardConfig) -> HandEyeTruth:
    """Place the board (and the static camera) so the board faces the camera from the hand pose ``T_base_ee``."""
    sx, sy = board.size_m
    half = np.array([sx / 2, sy / 2, 0.0])
    if setup == "eye_in_hand":
        T_base_cam = T_base_ee @ T_EE_CAM
        # facing the camera, slightly rotated and tilted, centred on its optical axis
        R_board = T_base_cam[:3, :3] @ rotvec_to_matrix([0.06, -0.04, 0.2])
        centre = T_base_cam[:3, 3] + WRIST_BOARD_DISTANCE_M * T_base_cam[:3, 2]
        return HandEyeTruth(setup, T_ee_cam=T_EE_CAM, T_base_board=make_transform(R_board, centre - R_board @ half))
    if setup == "eye_to_hand":
        centre = T_base_ee[:3, 3] + HELD_BOARD_OFFSET_M * T_base_ee[:3, 2]
        T_base_cam = look_at(centre + np.asarray(STATIC_CAMERA_OFFSET_M), centre)
        R_board = T_base_cam[:3, :3] @ rotvec_to_matrix([0.05, -0.04, 0.1])
        T_base_board = make_transform(R_board, centre - R_board @ half)
        return HandEyeTruth(setup, T_base_cam=T_base_cam, T_ee_board=invert(T_base_ee) @ T_base_board)
    raise ValueError(f"setup must be one of {SETUPS}, got {setup!r}")


def handheld_board_pose(K: np.ndarray, width: int, height: int, board: BoardConfig,
                        rng: np.random.Generator) -> np.ndarray:
    """A random T_cam_board as if the board were waved in front of the camera: 0.3-0.65 m away,
    tilted 5-45 degrees in any direction, its centre anywhere in the middle 70% of the image."""
    azimuth = rng.uniform(0, 2 * np.pi)
    tilt = np.radians(rng.uniform(5, 45))
    R = (rotvec_to_matrix(tilt * np.array([np.cos(azimuth), np.sin(azimuth), 0.0]))
         @ rotvec_to_matrix([0.0, 0.0, np.radians(rng.uniform(-30, 30))]))
    ray = np.linalg.solve(K, [rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height, 1.0])
    centre = ray * rng.uniform(0.3, 0.65)
    sx, sy = board.size_m
    return make_transform(R, centre - R @ [sx / 2, sy / 2, 0])


class SyntheticBoardCamera(Camera):
    """Renders a ChArUco board with known intrinsics, distortion, blur and pixel noise.

    ``options``: ``fx fy cx cy dist`` (the truth; RealSense-like defaults), ``board`` (BoardConfig fields),
    ``seed``, ``noise_std`` (grey levels), ``blur_sigma_px``, ``board_visible`` (False: an empty scene).
    ``intrinsics()`` reports the truth, like a device with perfect factory calibration.
    """

    def __init__(self, config: CameraConfig):
        super().__init__(config)
        options = dict(config.options or {})
        w, h = config.width, config.height
        self.K = np.array([[float(options.get("fx", 0.95 * w)), 0.0, float(options.get("cx", 0.5 * w - 2.3))],
                           [0.0, float(options.get("fy", 0.945 * w)), float(options.get("cy", 0.5 * h + 1.7))],
                           [0.0, 0.0, 1.0]])
        self.dist = np.asarray(options.get("dist", [-0.06, 0.08, 0.0008, -0.0005, 0.0]), dtype=np.float64)
        self.board = BoardConfig(**options.get("board", {}))
        self.board.validate()
        self.noise = ImageNoise(blur_sigma_px=float(options.get("blur_sigma_px", 0.7)),
                                noise_std=float(options.get("noise_std", 2.0)))
        self.board_visible = bool(options.get("board_visible", True))
        self._rng = np.random.default_rng(int(options.get("seed", 0)))
        self._renderer: BoardRenderer | None = None
        self._arm: Arm | None = None
        self.truth: HandEyeTruth | None = None
        self._seq = 0
        self._last: Frame | None = None

    def follow(self, arm: Arm, setup: str) -> HandEyeTruth:
        """Attach to ``arm`` in a hand-eye set-up laid out around its current hand pose; returns the truth."""
        state = arm.state()
        self.truth = hand_eye_layout(setup, pose_to_transform(state.ee_pos, state.ee_quat), self.board)
        self._arm = arm
        return self.truth

    @property
    def is_connected(self) -> bool:
        return self._renderer is not None

    def connect(self) -> None:
        self._renderer = BoardRenderer(self.board, self.K, self.dist, (self.config.width, self.config.height))

    def disconnect(self) -> None:
        self._renderer = None

    def intrinsics(self) -> dict:
        return {"K": self.K.tolist(), "dist": self.dist.tolist(), "width": self.config.width,
                "height": self.config.height}

    def board_pose(self) -> np.ndarray:
        """T_cam_board for the next image."""
        if self._arm is None:
            return handheld_board_pose(self.K, self.config.width, self.config.height, self.board, self._rng)
        state = self._arm.state()
        T_base_ee = pose_to_transform(state.ee_pos, state.ee_quat)
        t = self.truth
        if t.setup == "eye_in_hand":
            return invert(T_base_ee @ t.T_ee_cam) @ t.T_base_board
        return invert(t.T_base_cam) @ T_base_ee @ t.T_ee_board

    def read(self) -> Frame:
        if self._renderer is None:
            raise DeviceNotConnectedError(f"synthetic camera {self.name!r}: call connect() first")
        T = self.board_pose()
        if self.board_visible and T[2, 3] > 0:
            gray = self._renderer.render(T, self.noise, self._rng)
        else:
            gray = np.full((self.config.height, self.config.width), int(self.noise.background), np.uint8)
        now = time.time()
        self._seq += 1
        self._last = Frame(rgb=np.repeat(gray[:, :, None], 3, axis=2), t_capture=now, t_receive=now,
                           seq=self._seq, camera=self.name)
        return self._last

    def async_read(self, timeout_s: float = 0.2) -> Frame:
        return self.read()

    def read_latest(self) -> Frame:
        return self._last if self._last is not None else self.read()
