"""The one safety envelope between every command source (teleop, policy, RL rollout) and the arm.

Pure numpy. Every 7-D normalized delta action goes through :meth:`SafetyEnvelope.filter` (or
:meth:`SafetyEnvelope.filter_chunk`) and comes out either unchanged (``ok``), reduced to the
limits (``clipped``) or replaced by a hold (``held``: zero motion, gripper unchanged).

Limits, in the order they are applied:

* hold when: the e-stop is latched; the action has the wrong shape or a NaN/Inf; the robot state
  is missing or non-finite; the observation the action was computed from is older than
  ``stale_obs_s`` (or from the future); the command source (policy server) has not been heard
  from for ``source_timeout_s``.
* clip: each component to [-1, 1]; the step translation / rotation norms to the per-step and
  speed limits; the next end-effector position to the workspace box (a pose already outside the
  box may move back in but never further out); per axis, the *rise* in speed to the acceleration
  limit and the growth of that rise to the jerk limit; the gripper command to its rate limit.

Slowing down is never limited: stopping is the safe direction, and the arm's own trajectory
generator bounds the real deceleration. For the same reason a hold is exempt from the ramp limits,
and the ramp memory restarts from rest after a hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from wovr_core.config import ConfigError
from wovr_core.types import ACTION_DIM, GRIPPER_OPEN, RobotState

SafetyStatus = Literal["ok", "clipped", "held"]


class Reason:
    """Reason codes carried by :class:`SafetyDecision` (stable strings: they go into episodes)."""

    # holds
    ESTOP = "estop"
    BAD_SHAPE = "bad_shape"
    NON_FINITE_ACTION = "non_finite_action"
    BAD_STATE = "bad_state"
    BAD_CLOCK = "bad_clock"
    STALE_OBSERVATION = "stale_observation"
    FUTURE_OBSERVATION = "future_observation"
    SOURCE_LOST = "source_lost"
    # clips
    ACTION_RANGE = "action_range"
    STEP_TRANSLATION = "step_translation"
    STEP_ROTATION = "step_rotation"
    WORKSPACE = "workspace"
    RAMP_TRANSLATION = "ramp_translation"
    RAMP_ROTATION = "ramp_rotation"
    GRIPPER_RATE = "gripper_rate"

    HOLDS: ClassVar[frozenset[str]] = frozenset({
        ESTOP, BAD_SHAPE, NON_FINITE_ACTION, BAD_STATE, BAD_CLOCK, STALE_OBSERVATION,
        FUTURE_OBSERVATION, SOURCE_LOST,
    })


@dataclass
class SafetyConfig:
    """Limits of the envelope. Lengths in metres, angles in radians, times in seconds, base frame.

    ``translation_scale`` / ``rotation_scale`` must match the arm's (``ArmConfig``): they convert a
    normalized action into metres / radians per control step.
    """

    PRESETS: ClassVar[dict] = {"tiny": {}, "paper": {}}

    control_hz: float = 20.0
    translation_scale: float = 0.05
    rotation_scale: float = 0.5
    workspace_min: tuple[float, float, float] = (0.25, -0.40, 0.02)
    workspace_max: tuple[float, float, float] = (0.80, 0.40, 0.70)
    max_step_translation_m: float = 0.02
    max_step_rotation_rad: float = 0.10
    max_speed_mps: float = 0.25
    max_angular_speed_radps: float = 1.5
    max_accel_mps2: float = 2.5
    max_jerk_mps3: float = 25.0
    max_angular_accel_radps2: float = 15.0
    max_angular_jerk_radps3: float = 150.0
    max_gripper_rate: float = 20.0  # normalized gripper units per second (2.0 = full stroke)
    stale_obs_s: float = 0.25
    future_obs_tolerance_s: float = 0.05
    source_timeout_s: float = 1.0

    def validate(self) -> None:
        positive = [
            "control_hz", "translation_scale", "rotation_scale", "max_step_translation_m",
            "max_step_rotation_rad", "max_speed_mps", "max_angular_speed_radps", "max_accel_mps2",
            "max_jerk_mps3", "max_angular_accel_radps2", "max_angular_jerk_radps3", "max_gripper_rate",
            "stale_obs_s", "source_timeout_s",
        ]
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"SafetyConfig.{name} must be a finite number > 0, got {value!r}")
        if self.future_obs_tolerance_s < 0:
            raise ConfigError("SafetyConfig.future_obs_tolerance_s must be >= 0")
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)):
            raise ConfigError("SafetyConfig.workspace_min/max must be 3 finite numbers each")
        if np.any(lo >= hi):
            raise ConfigError(f"SafetyConfig workspace is empty: min {tuple(lo)} is not below max {tuple(hi)}")

    @property
    def dt(self) -> float:
        return 1.0 / self.control_hz

    @property
    def step_translation_limit(self) -> float:
        """Metres per control step: the tighter of the step and speed limits."""
        return min(self.max_step_translation_m, self.max_speed_mps * self.dt)

    @property
    def step_rotation_limit(self) -> float:
        return min(self.max_step_rotation_rad, self.max_angular_speed_radps * self.dt)

    @property
    def gripper_step_limit(self) -> float:
        return self.max_gripper_rate * self.dt


@dataclass(frozen=True)
class SafetyDecision:
    """What the envelope did with one requested action."""

    action: np.ndarray  # (7,) float32, what may be sent to the arm
    status: SafetyStatus
    reasons: tuple[str, ...] = ()
    requested: np.ndarray | None = field(default=None, repr=False)  # the input, as given

    @property
    def held(self) -> bool:
        return self.status == "held"

    @property
    def clipped(self) -> bool:
        return self.status == "clipped"


@dataclass
class _Motion:
    """Ramp memory: the last sent step (metres/radians per step) and its per-axis speed rise."""

    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rotation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    translation_rise: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rotation_rise: np.ndarray = field(default_factory=lambda: np.zeros(3))
    gripper: float = GRIPPER_OPEN

    def copy(self) -> _Motion:
        return _Motion(self.translation.copy(), self.rotation.copy(), self.translation_rise.copy(),
                       self.rotation_rise.copy(), self.gripper)

    def stop(self) -> None:
        for array in (self.translation, self.rotation, self.translation_rise, self.rotation_rise):
            array[:] = 0.0


class SafetyEnvelope:
    """Filters actions against :class:`SafetyConfig`; holds an e-stop latch and the ramp memory.

    Not thread-safe: one control loop owns one envelope.
    """

    def __init__(self, config: SafetyConfig | None = None):
        self.config = config or SafetyConfig()
        self.config.validate()
        self._lo = np.asarray(self.config.workspace_min, dtype=np.float64)
        self._hi = np.asarray(self.config.workspace_max, dtype=np.float64)
        self._motion = _Motion()
        self._estop_reason: str | None = None

    # ---- e-stop latch -------------------------------------------------------------------------
    def estop(self, reason: str = "operator") -> None:
        """Latch the e-stop: every action is held until :meth:`reset_estop`."""
        if self._estop_reason is None:
            self._estop_reason = reason
        self._motion.stop()

    def reset_estop(self) -> None:
        """The only way to clear the e-stop latch."""
        self._estop_reason = None
        self._motion.stop()

    @property
    def is_estopped(self) -> bool:
        return self._estop_reason is not None

    @property
    def estop_reason(self) -> str | None:
        return self._estop_reason

    # ---- episode lifecycle --------------------------------------------------------------------
    def reset(self, gripper: float = GRIPPER_OPEN) -> None:
        """Start from rest (new episode / after a recovery). Does NOT clear the e-stop latch."""
        self._motion = _Motion(gripper=float(np.clip(gripper, -1.0, 1.0)) if math.isfinite(gripper)
                               else GRIPPER_OPEN)

    @property
    def last_gripper(self) -> float:
        return self._motion.gripper

    def hold_action(self) -> np.ndarray:
        """Zero motion, gripper unchanged."""
        action = np.zeros(ACTION_DIM, dtype=np.float32)
        action[6] = self._motion.gripper
        return action

    def hold(self, reason: str) -> SafetyDecision:
        """A hold the caller decided (nothing to send this cycle): zero motion, gripper unchanged."""
        reasons = [Reason.ESTOP, reason] if self.is_estopped else [reason]
        decision, self._motion = self._hold_decision(None, reasons, self._motion.copy())
        return decision

    # ---- filtering ----------------------------------------------------------------------------
    def filter(self, action, state: RobotState | None, obs_time: float | None, now: float,
               source_time: float | None = None) -> SafetyDecision:
        """Filter one action for the control step at ``now``.

        ``obs_time`` is the capture time of the observation the action was computed from;
        ``source_time`` is when the command source (policy server) last answered, or None when the
        source is local (teleop, scripted).
        """
        ee_pos = None if state is None else state.ee_pos
        decision, self._motion = self._filter_one(action, ee_pos, obs_time, now, source_time,
                                                  self._motion.copy())
        return decision

    def filter_chunk(self, actions, state: RobotState | None, obs_time: float | None, now: float,
                     source_time: float | None = None, commit: bool = False) -> list[SafetyDecision]:
        """Filter a chunk as if step k ran at ``now + k * dt`` from the predicted position.

        With ``commit=False`` (default) the envelope's ramp memory is unchanged, so the chunk can
        be checked ahead of execution; each step is still filtered again when it is executed.
        """
        actions = np.asarray(actions, dtype=np.float64) if _is_numeric(actions) else None
        if actions is None or actions.ndim != 2:
            return [self._hold_decision(actions, [Reason.BAD_SHAPE], self._motion.copy())[0]]
        motion = self._motion.copy()
        ee_pos = None if state is None else np.asarray(state.ee_pos, dtype=np.float64).copy()
        decisions = []
        for k, action in enumerate(actions):
            decision, motion = self._filter_one(action, ee_pos, obs_time, now + k * self.config.dt,
                                                source_time, motion)
            decisions.append(decision)
            if ee_pos is not None and not decision.held:
                ee_pos = ee_pos + decision.action[:3].astype(np.float64) * self.config.translation_scale
        if commit:
            self._motion = motion
        return decisions

    # ---- internals ----------------------------------------------------------------------------
    def _hold_reasons(self, action, ee_pos, obs_time, now, source_time) -> list[str]:
        cfg = self.config
        reasons = []
        if self._estop_reason is not None:
            reasons.append(Reason.ESTOP)
        if action is None or action.shape != (ACTION_DIM,):
            reasons.append(Reason.BAD_SHAPE)
        elif not np.all(np.isfinite(action)):
            reasons.append(Reason.NON_FINITE_ACTION)
        ee = _as_finite_vector(ee_pos, 3)
        if ee is None:
            reasons.append(Reason.BAD_STATE)
        if not _finite_scalar(now):
            reasons.append(Reason.BAD_CLOCK)
            return reasons
        if not _finite_scalar(obs_time):
            reasons.append(Reason.STALE_OBSERVATION)
        elif now - obs_time > cfg.stale_obs_s:
            reasons.append(Reason.STALE_OBSERVATION)
        elif obs_time - now > cfg.future_obs_tolerance_s:
            reasons.append(Reason.FUTURE_OBSERVATION)
        if source_time is not None and (not _finite_scalar(source_time)
                                        or now - source_time > cfg.source_timeout_s):
            reasons.append(Reason.SOURCE_LOST)
        return reasons

    def _hold_decision(self, requested, reasons, motion: _Motion) -> tuple[SafetyDecision, _Motion]:
        motion.stop()
        action = np.zeros(ACTION_DIM, dtype=np.float32)
        action[6] = motion.gripper
        return SafetyDecision(action, "held", tuple(reasons), _copy_or_none(requested)), motion

    def _filter_one(self, action, ee_pos, obs_time, now, source_time,
                    motion: _Motion) -> tuple[SafetyDecision, _Motion]:
        cfg = self.config
        a = np.asarray(action, dtype=np.float64).reshape(-1) if _is_numeric(action) else None
        if a is not None and np.ndim(action) != 1:
            a = None  # a (1, 7) or scalar input is a caller bug, not a 7-vector
        hold = self._hold_reasons(a, ee_pos, obs_time, now, source_time)
        if hold:
            return self._hold_decision(action if a is None else a, hold, motion)

        reasons: list[str] = []
        if np.any(np.abs(a) > 1.0):
            reasons.append(Reason.ACTION_RANGE)
            a = np.clip(a, -1.0, 1.0)

        step = a[:3] * cfg.translation_scale
        turn = a[3:6] * cfg.rotation_scale
        step, clipped = _clip_norm(step, cfg.step_translation_limit)
        if clipped:
            reasons.append(Reason.STEP_TRANSLATION)
        turn, clipped = _clip_norm(turn, cfg.step_rotation_limit)
        if clipped:
            reasons.append(Reason.STEP_ROTATION)

        # A pose outside the box may come back in, never go further out (per axis).
        pos = np.asarray(ee_pos, dtype=np.float64)
        lo, hi = np.minimum(self._lo, pos), np.maximum(self._hi, pos)
        target = np.clip(pos + step, lo, hi)
        if np.any(target != pos + step):
            reasons.append(Reason.WORKSPACE)
            # Recompute per clipped axis only, so unclipped axes keep their exact value.
            step = np.where(target != pos + step, target - pos, step)
            # Float rounding must not carry the target past the wall or flip the direction.
            step = np.where(np.sign(step) * np.sign(a[:3]) < 0, 0.0, step)

        dt = cfg.dt
        step, rise_t, clipped = _ramp(step, motion.translation, motion.translation_rise,
                                      cfg.max_accel_mps2 * dt * dt, cfg.max_jerk_mps3 * dt ** 3)
        if clipped:
            reasons.append(Reason.RAMP_TRANSLATION)
        turn, rise_r, clipped = _ramp(turn, motion.rotation, motion.rotation_rise,
                                      cfg.max_angular_accel_radps2 * dt * dt,
                                      cfg.max_angular_jerk_radps3 * dt ** 3)
        if clipped:
            reasons.append(Reason.RAMP_ROTATION)

        gripper = float(a[6])
        limit = cfg.gripper_step_limit
        if abs(gripper - motion.gripper) > limit:
            gripper = motion.gripper + math.copysign(limit, gripper - motion.gripper)
            reasons.append(Reason.GRIPPER_RATE)

        out = np.empty(ACTION_DIM, dtype=np.float32)
        out[:3] = step / cfg.translation_scale
        out[3:6] = turn / cfg.rotation_scale
        out[6] = gripper
        # What is remembered is what the arm will do with the float32 action it receives.
        motion = _Motion(out[:3].astype(np.float64) * cfg.translation_scale,
                         out[3:6].astype(np.float64) * cfg.rotation_scale, rise_t, rise_r, float(out[6]))
        status: SafetyStatus = "clipped" if reasons else "ok"
        return SafetyDecision(out, status, tuple(reasons), np.asarray(action, dtype=np.float64).copy()), motion


def _ramp(step: np.ndarray, prev: np.ndarray, prev_rise: np.ndarray, max_rise: float,
          max_rise_growth: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per axis: limit how fast the step magnitude grows (acceleration) and how fast that growth
    grows (jerk). Shrinking is free; a reversal first brakes to zero (free), then ramps from rest."""
    out = step.copy()
    rise = np.zeros_like(step)
    clipped = False
    for i in range(step.shape[0]):
        base, base_rise = abs(prev[i]), prev_rise[i]
        if prev[i] * step[i] < 0:
            base, base_rise = 0.0, 0.0
        magnitude = abs(step[i])
        if magnitude <= base:
            continue
        cap = min(max_rise, base_rise + max_rise_growth)
        if magnitude - base > cap:
            magnitude = base + cap
            clipped = True
        out[i] = math.copysign(magnitude, step[i])
        rise[i] = magnitude - base
    return out, rise, clipped


def _clip_norm(vector: np.ndarray, limit: float) -> tuple[np.ndarray, bool]:
    norm = float(np.linalg.norm(vector))
    if norm > limit:
        return vector * (limit / norm), True
    return vector, False


def _is_numeric(value) -> bool:
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything unconvertible is simply not a numeric action
        return False
    return arr.dtype.kind in "biuf"


def _as_finite_vector(value, size: int) -> np.ndarray | None:
    if value is None or not _is_numeric(value):
        return None
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (size,) or not np.all(np.isfinite(arr)):
        return None
    return arr


def _finite_scalar(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


def _copy_or_none(value) -> np.ndarray | None:
    if value is None:
        return None
    try:
        return np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        return None


class LimitAudit:
    """Independent check that a stream of SENT actions respects a :class:`SafetyConfig`.

    Written separately from the envelope (different formulation) so tests and the fuzz benchmark
    can catch envelope bugs. Feed every decision in order with the state it was filtered against.
    """

    def __init__(self, config: SafetyConfig, tolerance: float = 1e-6):
        self.config = config
        self.tol = tolerance
        self.reset()

    def reset(self, gripper: float = GRIPPER_OPEN) -> None:
        self._prev_step = np.zeros(6)
        self._prev_rise = np.zeros(6)
        self._gripper = gripper

    def violations(self, action, ee_pos, held: bool) -> list[str]:
        """Limits that ``action`` (as sent) breaks, given the previous sent actions; then advance."""
        cfg, tol = self.config, self.tol
        a = np.asarray(action, dtype=np.float64)
        found: list[str] = []
        if a.shape != (ACTION_DIM,) or not np.all(np.isfinite(a)):
            return ["not_a_finite_7_vector"]
        if held:
            if np.any(a[:6] != 0.0):
                found.append("hold_moves")
            if a[6] != np.float32(self._gripper):
                found.append("hold_changes_gripper")
            self._prev_step[:] = 0.0
            self._prev_rise[:] = 0.0
            return found
        if np.any(np.abs(a) > 1.0 + tol):
            found.append("range")
        metric = np.concatenate([a[:3] * cfg.translation_scale, a[3:6] * cfg.rotation_scale])
        if np.linalg.norm(metric[:3]) > cfg.max_step_translation_m * (1 + tol) + tol:
            found.append("step_translation")
        if np.linalg.norm(metric[:3]) > cfg.max_speed_mps * cfg.dt * (1 + tol) + tol:
            found.append("speed")
        if np.linalg.norm(metric[3:]) > cfg.max_step_rotation_rad * (1 + tol) + tol:
            found.append("step_rotation")
        if np.linalg.norm(metric[3:]) > cfg.max_angular_speed_radps * cfg.dt * (1 + tol) + tol:
            found.append("angular_speed")
        pos = np.asarray(ee_pos, dtype=np.float64)
        nxt = pos + metric[:3]
        lo, hi = np.asarray(cfg.workspace_min), np.asarray(cfg.workspace_max)
        for i in range(3):
            allowed_lo, allowed_hi = min(lo[i], pos[i]), max(hi[i], pos[i])
            if nxt[i] < allowed_lo - tol or nxt[i] > allowed_hi + tol:
                found.append("workspace")
                break
        dt = cfg.dt
        acc = np.array([cfg.max_accel_mps2] * 3 + [cfg.max_angular_accel_radps2] * 3) * dt * dt
        jerk = np.array([cfg.max_jerk_mps3] * 3 + [cfg.max_angular_jerk_radps3] * 3) * dt ** 3
        rise = np.zeros(6)
        for i in range(6):
            reversed_ = metric[i] * self._prev_step[i] < 0
            base = 0.0 if reversed_ else abs(self._prev_step[i])
            base_rise = 0.0 if reversed_ else self._prev_rise[i]
            r = abs(metric[i]) - base
            if r > tol:
                rise[i] = r
                if r > acc[i] * (1 + tol) + tol:
                    found.append("acceleration")
                if r > base_rise + jerk[i] + tol:
                    found.append("jerk")
        if abs(a[6] - self._gripper) > cfg.gripper_step_limit * (1 + tol) + tol:
            found.append("gripper_rate")
        self._prev_step = metric
        self._prev_rise = rise
        self._gripper = float(a[6])
        return sorted(set(found))
