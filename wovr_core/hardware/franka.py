"""Franka Panda / FR3 arm and gripper over FCI, through franky (libfranka).

Each 7-D delta action becomes one asynchronous franky motion at the control rate:

* ``motion="cartesian"`` (default): a Cartesian pose motion to ``base + delta``; a new step takes
  over the running one seamlessly (franky's trajectory generator keeps velocity continuous).
* ``motion="impedance"``: one long-lived Cartesian impedance tracking controller whose reference
  moves by the delta each step (compliant; good for contact-rich tasks).

``base`` is the previous commanded target (``target_base="commanded"``, so the arm covers the
commanded path even while lagging) or the measured pose (``"measured"``, robosuite-OSC-like); the
commanded target is rebased on the measured pose when it leads it by more than ``max_lead_m``.
Deltas are in the base frame; rotations are base-frame axis-angle applied on the left (robosuite).

Every motion carries reactions: stop when the external force exceeds ``contact_force_n``, and (in
Cartesian mode) stop a step still running ``step_timeout_periods`` after it was sent: a watchdog,
so the arm does not keep going towards an old target when the control loop stops sending. Errors from franky surface as :class:`DeviceError`; after one, the arm
refuses commands until :meth:`FrankaArm.recover` (automatic error recovery, or a reconnect when
the connection was lost). The driver is tested unchanged against ``franky-sim``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from wovr_core.config import ConfigError, from_dict
from wovr_core.errors import DependencyError
from wovr_core.hardware.arm import Arm, ArmConfig, Gripper
from wovr_core.hardware.errors import DeviceError, DeviceNotConnectedError
from wovr_core.hardware.rotations import apply_delta_rotation
from wovr_core.types import ACTION_DIM, GRIPPER_CLOSED, GRIPPER_OPEN, RobotState

FR3_HOME = (0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4)


@dataclass
class FrankaOptions:
    motion: Literal["cartesian", "impedance"] = "cartesian"
    target_base: Literal["commanded", "measured"] = "commanded"
    max_lead_m: float = 0.10  # rebase the commanded target when it leads the robot by more
    relative_dynamics_factor: float = 0.25  # scales franky's velocity/acceleration/jerk limits
    realtime: Literal["ignore", "enforce"] = "ignore"  # "ignore" without a PREEMPT_RT kernel
    collision_torque_nm: float = 20.0  # robot reflex thresholds (libfranka collision behavior)
    collision_force_n: float = 30.0
    contact_force_n: float = 25.0  # reaction: stop when |F_ext| exceeds this (0 = off)
    step_timeout_periods: float = 10.0  # reaction (cartesian): stop a step this old (0 = off)
    translational_stiffness: float = 600.0  # impedance mode
    rotational_stiffness: float = 40.0
    gripper: bool = True
    gripper_speed_mps: float = 0.05
    gripper_force_n: float = 20.0
    gripper_close_above: float = 0.25  # hysteresis on the continuous gripper command
    gripper_open_below: float = -0.25
    home_joints: tuple[float, float, float, float, float, float, float] = FR3_HOME

    def validate(self) -> None:
        if not 0 < self.relative_dynamics_factor <= 1:
            raise ConfigError(f"franka relative_dynamics_factor must be in (0, 1], got {self.relative_dynamics_factor}")
        if self.gripper_open_below >= self.gripper_close_above:
            raise ConfigError("franka gripper_open_below must be below gripper_close_above")
        if self.contact_force_n < 0 or self.step_timeout_periods < 0 or self.max_lead_m <= 0:
            raise ConfigError("franka contact_force_n/step_timeout_periods must be >= 0 and max_lead_m > 0")


@dataclass(frozen=True)
class ReactionEvent:
    kind: str  # contact_force | step_timeout
    t: float  # host time the reaction was reported
    detail: str = ""


def _import_franky():
    try:
        import franky
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise DependencyError("the franka arm needs franky: pip install 'wovr[robot]' (franky-control)") from exc
    return franky


class FrankaGripper(Gripper):
    """Franka Hand: the continuous command in [-1, 1] becomes open / grasp with hysteresis.

    Each gripper command runs the blocking franky call in its own daemon thread instead of
    franky's futures: a future outliving its gripper crashes the process, and a command pending
    on a lost connection blocks for libfranka's TCP timeout (about a minute). A thread simply
    finishes in the background and releases the connection then.
    """

    def __init__(self, franky_gripper: Any, options: FrankaOptions):
        self._gripper = franky_gripper
        self.options = options
        self._state: float | None = None  # GRIPPER_OPEN / GRIPPER_CLOSED once commanded
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        self.max_width = float(franky_gripper.max_width) or 0.08

    def command(self, g: float) -> float:
        """Send open/grasp when ``g`` crosses the hysteresis band; returns the binary command in force."""
        if self._error is not None:
            error, self._error = self._error, None
            raise DeviceError(f"franka gripper: the last command failed: {type(error).__name__}: {error}")
        opts = self.options
        target = self._state
        if g >= opts.gripper_close_above:
            target = GRIPPER_CLOSED
        elif g <= opts.gripper_open_below:
            target = GRIPPER_OPEN
        if target is not None and target != self._state:
            gripper = self._gripper
            if target == GRIPPER_CLOSED:
                # Any width counts as a grasp: the policy decides success, not the gripper.
                call = (gripper.grasp, (0.0, opts.gripper_speed_mps, opts.gripper_force_n, 1.0, 1.0))
            else:
                call = (gripper.move, (self.max_width, opts.gripper_speed_mps))
            self._worker = threading.Thread(target=self._run, args=call, name="franka-gripper", daemon=True)
            self._worker.start()
            self._state = target
        return GRIPPER_OPEN if self._state is None else self._state

    def _run(self, fn, args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - reported on the next command
            self._error = exc

    def width(self) -> float:
        return float(self._gripper.width)

    def wait(self, timeout_s: float = 5.0) -> bool:
        """Block until the last gripper command finished (True) or the timeout passed."""
        if self._worker is not None:
            self._worker.join(timeout_s)
            return not self._worker.is_alive()
        return True

    def close(self, wait_s: float = 0.0) -> None:
        """Drop the connection after letting a running command finish for up to ``wait_s``; one still
        running after that finishes (or times out) in its own thread."""
        if wait_s > 0:
            self.wait(wait_s)
        self._gripper = None
        self._worker = None


class FrankaArm(Arm):
    """Franka arm driven through franky; see the module docstring for the control scheme."""

    def __init__(self, config: ArmConfig):
        super().__init__(config)
        self.options = from_dict(FrankaOptions, config.options or {})
        self._fk = None  # the franky module, imported on connect
        self._robot = None
        self.gripper: FrankaGripper | None = None
        self._lock = threading.RLock()
        self._fault: str | None = None
        self._needs_reconnect = False
        self._target: tuple[np.ndarray, np.ndarray] | None = None  # commanded (pos, quat xyzw)
        self._impedance = None  # the running impedance tracking motion
        self.reactions: deque[ReactionEvent] = deque(maxlen=1000)
        self._reaction_count = 0
        self._seen_reactions = 0  # by drain_reactions
        self._based_on_reactions = 0  # reactions already accounted for by a rebase

    # ---- connection ---------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._robot is not None

    def connect(self) -> None:
        if self._robot is not None:
            raise DeviceError(f"franka at {self.config.host} is already connected")
        self._fk = _import_franky()
        self._open()

    def _open(self) -> None:
        fk, opts, host = self._fk, self.options, self.config.host
        realtime = fk.RealtimeConfig.Ignore if opts.realtime == "ignore" else fk.RealtimeConfig.Enforce
        try:
            robot = fk.Robot(host, relative_dynamics_factor=opts.relative_dynamics_factor,
                             default_torque_threshold=opts.collision_torque_nm,
                             default_force_threshold=opts.collision_force_n, realtime_config=realtime)
            gripper = FrankaGripper(fk.Gripper(host), opts) if opts.gripper else None
        except Exception as exc:  # noqa: BLE001 - franky raises several unrelated types
            raise DeviceError(
                f"cannot connect to the Franka at {host}: {type(exc).__name__}: {exc}. Is the robot on, "
                "FCI activated in Desk, the brakes open, and this host on the robot's network?"
            ) from exc
        self._robot, self.gripper = robot, gripper
        self._fault, self._needs_reconnect = None, False
        self._target, self._impedance = None, None

    def disconnect(self) -> None:
        if self._robot is None:
            raise DeviceNotConnectedError("franka: not connected")
        try:
            self._stop_motion()
        except Exception:  # noqa: BLE001 - disconnecting a broken connection must still succeed
            pass
        self._drop_connection()

    # ---- state --------------------------------------------------------------------------------
    def state(self) -> RobotState:
        robot = self._require()
        try:
            s = robot.state
            width = self.gripper.width() if self.gripper is not None else 0.0
        except Exception as exc:  # noqa: BLE001
            raise self._failure("reading the robot state", exc) from exc
        pose = s.O_T_EE
        return RobotState(t=time.time(), joint_pos=np.asarray(s.q, dtype=np.float64).reshape(7),
                          ee_pos=np.asarray(pose.translation, dtype=np.float64).reshape(3),
                          ee_quat=np.asarray(pose.quaternion, dtype=np.float64).reshape(4),
                          gripper_width=float(width), joint_vel=np.asarray(s.dq, dtype=np.float64).reshape(7))

    @property
    def fault(self) -> str | None:
        """Why the arm refuses commands (None when it is ready)."""
        return self._fault

    def drain_reactions(self) -> list[ReactionEvent]:
        """Reactions fired since the last call (newest last)."""
        with self._lock:
            fresh = self._reaction_count - self._seen_reactions
            self._seen_reactions = self._reaction_count
            return list(self.reactions)[-fresh:] if fresh else []

    # ---- commands -----------------------------------------------------------------------------
    def send_action(self, action: np.ndarray) -> np.ndarray:
        robot = self._require()
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (ACTION_DIM,) or not np.all(np.isfinite(a)):
            raise DeviceError(f"franka: refusing action {np.asarray(action)!r}: expected {ACTION_DIM} finite "
                              "numbers (actions must pass the safety envelope first)")
        if self._fault is not None:
            raise DeviceError(f"franka is in an error state ({self._fault}); call recover()")
        fk = self._fk
        try:
            robot.poll_motion()  # raises what went wrong in the previous asynchronous step
            # A reaction stopped the robot short of its target: continue from where it is.
            reacted = self._based_on_reactions != self._reaction_count
            self._based_on_reactions = self._reaction_count
            pos, quat = self._base(robot, rebase=reacted)
            pos = pos + a[:3] * self.config.translation_scale
            quat = apply_delta_rotation(quat, a[3:6] * self.config.rotation_scale)
            target = fk.Affine(pos, quat)
            if self.options.motion == "impedance":
                self._track(robot, target)
            else:
                motion = fk.CartesianMotion(target, fk.ReferenceType.Absolute)
                self._add_reactions(motion, fk.CartesianStopMotion())
                robot.move(motion, asynchronous=True)
            self._target = (pos, quat)
            gripper = self.gripper.command(float(a[6])) if self.gripper is not None else float(a[6])
        except DeviceError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._failure("executing an action", exc) from exc
        sent = a.astype(np.float32)
        sent[6] = gripper
        return sent

    def move_joints(self, joints, timeout_s: float = 30.0) -> None:
        """Blocking joint-space move (homing / resets between episodes)."""
        robot = self._require()
        if self._fault is not None:
            raise DeviceError(f"franka is in an error state ({self._fault}); call recover()")
        q = np.asarray(joints, dtype=np.float64)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise DeviceError(f"franka: joint target must be 7 finite numbers, got {joints!r}")
        fk = self._fk
        try:
            self._stop_motion()
            robot.move(fk.JointMotion(fk.JointState(q)), asynchronous=True)
            if not robot.join_motion(timeout_s):
                robot.stop()
                raise DeviceError(f"franka: joint move did not finish within {timeout_s} s")
        except DeviceError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._failure("moving to a joint target", exc) from exc
        self._target = None

    def wait_until_idle(self, timeout_s: float = 5.0) -> bool:
        """Block until the last asynchronous step has finished (True) or ``timeout_s`` passed."""
        robot = self._require()
        try:
            return bool(robot.join_motion(timeout_s))
        except Exception as exc:  # noqa: BLE001
            raise self._failure("waiting for the motion to finish", exc) from exc

    def home(self) -> None:
        self.move_joints(self.options.home_joints)

    def recover(self) -> None:
        """Clear the error state: automatic error recovery, or a reconnect after a lost connection."""
        if self._robot is None:
            raise DeviceNotConnectedError("franka: not connected")
        if not self._needs_reconnect:
            try:
                try:
                    self._robot.join_motion(0.5)
                except Exception:  # noqa: BLE001 - the failed motion re-raises its error once
                    pass
                if self._robot.recover_from_errors():
                    self._fault, self._target, self._impedance = None, None, None
                    return
            except Exception as exc:  # noqa: BLE001
                if not _is_network_error(self._fk, exc):
                    raise DeviceError(f"franka: automatic error recovery failed: {exc}") from exc
        self._drop_connection()
        self._open()

    # ---- internals ----------------------------------------------------------------------------
    def _require(self):
        if self._robot is None:
            raise DeviceNotConnectedError("franka: call connect() first")
        return self._robot

    def _base(self, robot, rebase: bool) -> tuple[np.ndarray, np.ndarray]:
        pose = robot.current_pose.end_effector_pose
        measured = (np.asarray(pose.translation, dtype=np.float64).reshape(3),
                    np.asarray(pose.quaternion, dtype=np.float64).reshape(4))
        if self.options.target_base == "measured" or self._target is None or rebase:
            return measured
        if np.linalg.norm(self._target[0] - measured[0]) > self.options.max_lead_m:
            return measured  # the robot is blocked or far behind: do not wind up
        return self._target

    def _track(self, robot, target) -> None:
        fk = self._fk
        if self._impedance is None or not robot.is_in_control:
            motion = fk.CartesianImpedanceTrackingMotion(
                translational_stiffness=self.options.translational_stiffness,
                rotational_stiffness=self.options.rotational_stiffness)
            self._add_reactions(motion, fk.TorqueStopMotion())
            motion.set_reference(fk.CartesianReference(target=robot.current_pose.end_effector_pose))
            robot.move(motion, asynchronous=True)
            self._impedance = motion
        self._impedance.set_reference(fk.CartesianReference(target=target))

    def _add_reactions(self, motion, stop_motion) -> None:
        fk, opts = self._fk, self.options
        if opts.contact_force_n > 0:
            force_sq = fk.Measure.FORCE_X ** 2 + fk.Measure.FORCE_Y ** 2 + fk.Measure.FORCE_Z ** 2
            reaction = fk.Reaction(force_sq > opts.contact_force_n ** 2, stop_motion)
            reaction.register_callback(lambda *_: self._on_reaction("contact_force",
                                                                     f"|F| > {opts.contact_force_n} N"))
            motion.add_reaction(reaction)
        if opts.step_timeout_periods > 0 and opts.motion == "cartesian":
            timeout = opts.step_timeout_periods / self.config.control_hz
            reaction = fk.Reaction(fk.Measure.REL_TIME > timeout, stop_motion)
            reaction.register_callback(lambda *_: self._on_reaction("step_timeout",
                                                                     f"step still running after {timeout:.3f} s"))
            motion.add_reaction(reaction)

    def _on_reaction(self, kind: str, detail: str) -> None:
        # Runs in franky's control thread: record only.
        with self._lock:
            self.reactions.append(ReactionEvent(kind, time.time(), detail))
            self._reaction_count += 1

    def _drop_connection(self) -> None:
        if self.gripper is not None:
            # On a healthy connection let the last open/grasp finish: one left pending when the
            # controller goes away keeps libfranka (and, seen here, librealsense) waiting ~60 s.
            self.gripper.close(wait_s=0.0 if self._needs_reconnect else 5.0)
        self._robot, self.gripper, self._impedance = None, None, None

    def _stop_motion(self) -> None:
        robot = self._robot
        if robot is None:
            return
        if self._impedance is not None and robot.is_in_control:
            robot.move(self._fk.TorqueStopMotion(), asynchronous=True)
        self._impedance = None
        robot.join_motion(5.0)

    def _failure(self, doing: str, exc: BaseException) -> DeviceError:
        network = _is_network_error(self._fk, exc)
        self._needs_reconnect = self._needs_reconnect or network
        self._fault = f"{type(exc).__name__}: {exc}"
        hint = "connection to the robot lost" if network else "robot error"
        return DeviceError(f"franka at {self.config.host}: {hint} while {doing}: {self._fault}; call recover()")


def _is_network_error(fk, exc: BaseException) -> bool:
    return fk is not None and (isinstance(exc, fk.NetworkException) or "Net Exception" in str(exc))
