"""Synthetic devices for tests and benchmarks: a camera streaming moving test patterns and a
kinematic arm. Registered as type ``synthetic``; no hardware, no simulator, deterministic content.

The camera stamps each frame with its (simulated) device capture time on the host clock and a
receive time ``capture_delay_s`` later, so timestamp alignment can be exercised; it can drop
frames and fail on purpose. The arm integrates delta actions exactly (no dynamics).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wovr_core.config import from_dict
from wovr_core.hardware.arm import Arm, ArmConfig
from wovr_core.hardware.background import BackgroundCamera
from wovr_core.hardware.camera import CameraConfig
from wovr_core.hardware.errors import DeviceError, DeviceNotConnectedError
from wovr_core.hardware.rotations import apply_delta_rotation
from wovr_core.types import ACTION_DIM, Frame, RobotState


@dataclass
class SyntheticCameraOptions:
    capture_delay_s: float = 0.004  # t_receive - t_capture
    phase_s: float = 0.0  # shifts this camera's capture instants against other cameras
    drop_every: int = 0  # drop every n-th frame (0 = never)
    fail_after: int = 0  # raise in the capture thread after n frames (0 = never)


class SyntheticCamera(BackgroundCamera):
    """Frames at ``config.fps``: a gradient with a square moving one column per frame.

    The frame's sequence number is written into pixel row 0 (bytes of ``seq``, little endian), so
    a test can check which frame it received. Depth (when enabled) is a ramp offset by ``seq`` mm.
    """

    def __init__(self, config: CameraConfig, clock: Callable[[], float] = time.time):
        super().__init__(config)
        self.options = from_dict(SyntheticCameraOptions, config.options or {})
        self._clock = clock
        self._seq = 0
        self._next_t = 0.0
        h, w = config.height, config.width
        yy, xx = np.mgrid[0:h, 0:w]
        self._base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)),
                               np.full_like(xx, 64)], axis=-1).astype(np.uint8)
        self._depth_base = (500 + 2 * yy + xx).astype(np.uint16)

    def _open(self) -> None:
        period = 1.0 / self.config.fps
        now = self._clock()
        # Capture instants on a fixed grid (like a free-running sensor), offset by the phase.
        self._next_t = (np.floor(now / period) + 1) * period + self.options.phase_s
        self._seq = 0

    def _capture(self, timeout_s: float) -> Frame | None:
        period = 1.0 / self.config.fps
        while True:
            t_capture = self._next_t
            t_receive = t_capture + self.options.capture_delay_s
            wait = t_receive - self._clock()
            if wait > timeout_s:
                time.sleep(timeout_s)
                return None
            if wait > 0:
                time.sleep(wait)
            seq = self._seq
            self._seq += 1
            self._next_t += period
            if self.options.fail_after and seq >= self.options.fail_after:
                raise DeviceError(f"synthetic camera {self.name!r} failed on purpose after {seq} frames")
            if self.options.drop_every and (seq + 1) % self.options.drop_every == 0:
                continue
            return self.render(seq, t_capture, self._clock())

    def _close(self) -> None:
        pass

    def render(self, seq: int, t_capture: float, t_receive: float) -> Frame:
        rgb = self._base.copy()
        h, w = rgb.shape[:2]
        side = max(2, min(h, w) // 6)
        x0 = seq % max(w - side, 1)
        y0 = (h - side) // 2
        rgb[y0:y0 + side, x0:x0 + side] = 255
        rgb[0, :8, 0] = np.frombuffer(int(seq).to_bytes(8, "little"), dtype=np.uint8)[: min(8, w)]
        depth = (self._depth_base + seq).astype(np.uint16) if self.config.depth else None
        return Frame(rgb=rgb, t_capture=t_capture, t_receive=t_receive, seq=seq, camera=self.name, depth=depth)

    @staticmethod
    def decode_seq(frame: Frame) -> int:
        """The sequence number stamped into the pixels by :meth:`render`."""
        return int.from_bytes(frame.rgb[0, :8, 0].tobytes(), "little")


@dataclass
class SyntheticArmOptions:
    start_pos: tuple[float, float, float] = (0.5, 0.0, 0.3)
    start_quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # gripper pointing down
    max_gripper_width: float = 0.08
    gripper_speed: float = 0.2  # m/s
    fail_after_steps: int = 0  # raise DeviceError on the n-th send_action (0 = never); recover() clears


class SyntheticArm(Arm):
    """A kinematic arm: each action moves the end effector by exactly ``action * scale``."""

    def __init__(self, config: ArmConfig, clock: Callable[[], float] = time.time):
        super().__init__(config)
        self.options = from_dict(SyntheticArmOptions, config.options or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._connected = False
        self._faulted = False
        self.steps = 0
        self.sent: list[np.ndarray] = []
        self._reset_pose()

    def _reset_pose(self) -> None:
        self._pos = np.asarray(self.options.start_pos, dtype=np.float64)
        self._quat = np.asarray(self.options.start_quat, dtype=np.float64)
        self._width = self.options.max_gripper_width
        self._width_target = self._width
        self._t_last = None

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        self._connected = True
        self._t_last = self._clock()

    def disconnect(self) -> None:
        self._connected = False

    def state(self) -> RobotState:
        self._require()
        with self._lock:
            now = self._clock()
            self._advance_gripper(now)
            return RobotState(t=now, joint_pos=np.zeros(7), ee_pos=self._pos.copy(), ee_quat=self._quat.copy(),
                              gripper_width=float(self._width))

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self._require()
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (ACTION_DIM,) or not np.all(np.isfinite(a)):
            raise DeviceError(f"synthetic arm: refusing action {a!r}: expected {ACTION_DIM} finite numbers")
        if self._faulted:
            raise DeviceError("synthetic arm is in an error state; call recover()")
        self.steps += 1
        if self.options.fail_after_steps and self.steps == self.options.fail_after_steps:
            self._faulted = True
            raise DeviceError(f"synthetic arm failed on purpose at step {self.steps}")
        with self._lock:
            self._advance_gripper(self._clock())
            self._pos = self._pos + a[:3] * self.config.translation_scale
            self._quat = apply_delta_rotation(self._quat, a[3:6] * self.config.rotation_scale)
            g = float(np.clip(a[6], -1.0, 1.0))
            self._width_target = (1.0 - g) / 2.0 * self.options.max_gripper_width
        sent = a.astype(np.float32)
        self.sent.append(sent)
        return sent

    def recover(self) -> None:
        self._require()
        self._faulted = False

    def _advance_gripper(self, now: float) -> None:
        if self._t_last is not None:
            max_move = self.options.gripper_speed * max(0.0, now - self._t_last)
            self._width += float(np.clip(self._width_target - self._width, -max_move, max_move))
        self._t_last = now

    def _require(self) -> None:
        if not self._connected:
            raise DeviceNotConnectedError("synthetic arm: call connect() first")
