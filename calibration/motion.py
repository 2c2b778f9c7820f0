"""Drive an ``Arm`` to a target hand pose with 7-D delta actions, through the safety envelope.

The arm only takes delta actions (the project's action contract). A move streams steps along the way from
where the hand is to the target, each one filtered by the ``SafetyEnvelope`` (speed, acceleration,
workspace; or a hold) and accumulated into the pose the arm was told to reach, so a driver that lags
behind its commanded path (franky's asynchronous motions) is never over-commanded. When the stream
ends, the mover waits for the hand to come to rest, checks the measured pose and, if it is still off
(a measured-base driver, a reaction), plans again from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from calibration.errors import MotionError
from calibration.geometry import (
    make_transform,
    matrix_to_rotvec,
    pose_to_transform,
    rotation_angle_deg,
    rotvec_to_matrix,
)
from wovr_core.hardware.arm import Arm
from wovr_core.hardware.safety import SafetyEnvelope
from wovr_core.types import RobotState


def delta_action(T_current: np.ndarray, T_target: np.ndarray, translation_scale: float, rotation_scale: float,
                 gripper: float) -> np.ndarray:
    """The normalised action going from current to target in one step, scaled down as a whole (direction kept,
    unlike per-axis clipping) when a component would exceed 1.

    Rotation is a base-frame rotation vector applied before the current orientation (robosuite OSC)."""
    dp = (T_target[:3, 3] - T_current[:3, 3]) / translation_scale
    dr = matrix_to_rotvec(T_target[:3, :3] @ T_current[:3, :3].T) / rotation_scale
    motion = np.concatenate([dp, dr])
    largest = np.abs(motion).max()
    if largest > 1.0:
        motion /= largest
    return np.concatenate([motion, [gripper]])


def apply_action(T: np.ndarray, action: np.ndarray, translation_scale: float, rotation_scale: float) -> np.ndarray:
    """The pose an arm reaches from ``T`` by executing ``action`` (the same convention as the drivers)."""
    a = np.asarray(action, dtype=np.float64)
    return make_transform(rotvec_to_matrix(a[3:6] * rotation_scale) @ T[:3, :3], T[:3, 3] + a[:3] * translation_scale)


def pose_error(state: RobotState, T_target: np.ndarray) -> tuple[float, float]:
    """(metres, degrees) between the hand pose in ``state`` and ``T_target``."""
    T = pose_to_transform(state.ee_pos, state.ee_quat)
    return float(np.linalg.norm(T_target[:3, 3] - T[:3, 3])), rotation_angle_deg(T[:3, :3].T @ T_target[:3, :3])


class DeltaMover:
    """``mover(T_base_ee_target)`` moves the arm there and returns the final state, or raises MotionError.

    ``gripper`` is sent with every step. The default 0.0 lies inside the drivers' open/close hysteresis, so the
    gripper stays as it is (in eye-to-hand calibration it holds the board). ``rate_hz`` paces the steps
    (0 = as fast as the arm accepts them, for simulated arms).
    """

    def __init__(self, arm: Arm, safety: SafetyEnvelope | None, rate_hz: float = 0.0,
                 position_tolerance_m: float = 0.003, rotation_tolerance_deg: float = 0.5, max_steps: int = 600,
                 max_rounds: int = 5, gripper: float = 0.0, stall_steps: int = 40, settle_timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.arm = arm
        self.safety = safety
        self.period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self.position_tolerance_m = position_tolerance_m
        self.rotation_tolerance_deg = rotation_tolerance_deg
        self.max_steps = max_steps
        self.max_rounds = max_rounds
        self.gripper = gripper
        self.stall_steps = stall_steps
        self.settle_timeout_s = settle_timeout_s
        self.clock, self.sleep = clock, sleep
        self.steps_sent = 0

    def _reached(self, state: RobotState, T_target: np.ndarray) -> bool:
        pos_err, rot_err = pose_error(state, T_target)
        return pos_err <= self.position_tolerance_m and rot_err <= self.rotation_tolerance_deg

    def _fail(self, T_target: np.ndarray, state: RobotState, why: str) -> MotionError:
        pos_err, rot_err = pose_error(state, T_target)
        return MotionError(
            f"arm did not reach the calibration pose {np.round(T_target[:3, 3], 3).tolist()}: {why}; still "
            f"{1000 * pos_err:.1f} mm / {rot_err:.2f} deg away. Nothing was written.")

    def _stream(self, T_target: np.ndarray) -> None:
        """Send steps until the commanded pose reaches the target (one planning round)."""
        scale_t, scale_r = self.arm.config.translation_scale, self.arm.config.rotation_scale
        state = self.arm.state()
        commanded = pose_to_transform(state.ee_pos, state.ee_quat)
        if self.safety is not None:
            self.safety.reset(gripper=self.gripper)  # the hand is at rest when a round starts
        best, since_best = np.inf, 0
        reasons: tuple[str, ...] = ()
        next_tick = self.clock()
        for _ in range(self.max_steps):
            pos_err = float(np.linalg.norm(T_target[:3, 3] - commanded[:3, 3]))
            rot_err = rotation_angle_deg(commanded[:3, :3].T @ T_target[:3, :3])
            # a tenth of the tolerance: float32 actions cannot resolve much finer steps
            if pos_err <= 0.1 * self.position_tolerance_m and rot_err <= 0.1 * self.rotation_tolerance_deg:
                return
            remaining = pos_err / scale_t + np.radians(rot_err) / scale_r
            best, since_best = (remaining, 0) if remaining < best - 1e-9 else (best, since_best + 1)
            if since_best >= self.stall_steps:
                why = f"safety envelope: {', '.join(reasons)}" if reasons else "the arm refuses to move"
                raise self._fail(T_target, state, f"no progress for {self.stall_steps} steps ({why})")
            action = delta_action(commanded, T_target, scale_t, scale_r, self.gripper)
            if self.safety is not None:
                decision = self.safety.filter(action, state, state.t, time.time())
                if self.safety.is_estopped:
                    raise self._fail(T_target, state, f"safety envelope e-stop latched ({self.safety.estop_reason})")
                action, reasons = decision.action, decision.reasons
            sent = self.arm.send_action(action)
            self.steps_sent += 1
            commanded = apply_action(commanded, sent, scale_t, scale_r)
            if self.period:
                next_tick += self.period
                self.sleep(max(0.0, next_tick - self.clock()))
            state = self.arm.state()
        raise self._fail(T_target, state, f"the target is more than {self.max_steps} steps away")

    def _wait_until_still(self) -> RobotState:
        state = self.arm.state()
        deadline = self.clock() + self.settle_timeout_s
        while self.period and self.clock() < deadline:
            self.sleep(self.period)
            new = self.arm.state()
            moved, turned = pose_error(new, pose_to_transform(state.ee_pos, state.ee_quat))
            state = new
            if moved < 2e-4 and turned < 0.05:
                break
        return state

    def __call__(self, T_target: np.ndarray) -> RobotState:
        state = self.arm.state()
        for _ in range(self.max_rounds):
            if self._reached(state, T_target):
                return state
            self._stream(T_target)
            state = self._wait_until_still()
        if self._reached(state, T_target):
            return state
        raise self._fail(T_target, state, f"not within tolerance after {self.max_rounds} rounds")
