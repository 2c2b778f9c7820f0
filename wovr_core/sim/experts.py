"""Scripted pick-and-place experts that read privileged simulator state.

One expert covers every task whose BDDL goal is ``(In obj container_region)`` or ``(On obj target)``:
all of libero_object and libero_spatial. It is a phase machine (approach, descend, grasp, lift, carry,
lower, release, retreat) driving the OSC delta controller with a rate-limited PI law. It grasps across
the object's narrow side, or pinches the wall of an object too wide for the fingers (a bowl), at the yaw
that keeps the open fingers and the hand clear of every other collision geom (and within easy reach);
it carries above everything on the way and places by where the object really is in the hand.
Noise makes demonstrations diverse and makes failures happen: action noise, grasp-point offsets and
deliberate mistakes. Excursions make them informative about actions: now and then the expert holds one random
translation for a few steps and then recovers closed-loop (data for world models, see ``excursion_prob``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from wovr_core.config import ConfigError
from wovr_core.types import ACTION_DIM, GRIPPER_CLOSED, GRIPPER_OPEN

ROT_SCALE = 0.5  # radians per unit action


@dataclass
class ExpertConfig:
    """Expert gains and noise. Noise off (the defaults) is the clean expert."""

    PRESETS: ClassVar[dict] = {
        "tiny": {},
        "paper": {},
        "clean": {},
        "noisy": {"action_noise": 0.1, "grasp_offset": 0.008, "failure_prob": 0.1},
        "exploring": {"action_noise": 0.1, "grasp_offset": 0.008, "failure_prob": 0.1, "excursion_prob": 0.02},
    }

    max_speed: float = 1.0  # |action| cap for translation, in controller units
    # Down onto the object: the arm lags its commands, and an overshoot pushes the fingers into the object
    # or the table.
    descend_speed: float = 0.5
    max_accel: float = 0.15  # largest per-step increase of a translation action (per axis)
    gain: float = 12.0  # action units per metre of position error (before the cap)
    # Action units per metre-step of error summed near a goal: the arm's controller leaves a steady offset
    # (centimetres near the edge of its workspace) that the proportional term alone never closes.
    integral_gain: float = 1.5
    rot_gain: float = 1.5
    reach_tol: float = 0.01  # metres
    hover: float = 0.08  # approach height above the grasp point
    carry_clearance: float = 0.05  # the carried object's bottom this far above everything under its path
    grasp_steps: int = 12
    release_steps: int = 10
    phase_timeout: int = 90  # steps; a phase that never converges moves on (and usually fails)
    action_noise: float = 0.0  # std of gaussian noise on translation/rotation actions
    grasp_offset: float = 0.0  # std (metres) of a horizontal offset of the grasp point
    failure_prob: float = 0.0  # chance per episode of a deliberate mistake
    # Excursions: white action noise averages out within a few frames and leaves the arm on the demonstration's
    # path, so a world model trained on such data can predict the motion from the frames before and ignore
    # the actions. An excursion moves the arm centimetres in a direction its history does not predict.
    excursion_prob: float = 0.0  # chance per step of starting one
    excursion_steps: tuple[int, int] = (6, 16)  # its length, drawn uniformly (inclusive)
    excursion_speed: tuple[float, float] = (0.4, 1.0)  # |translation action|, drawn uniformly
    seed: int = 0

    def validate(self) -> None:
        for name in ("max_speed", "descend_speed", "max_accel"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"expert.{name} must be in (0, 1] (action units)")
        for name in ("integral_gain", "carry_clearance", "action_noise", "grasp_offset", "failure_prob",
                     "excursion_prob"):
            if getattr(self, name) < 0:
                raise ConfigError(f"expert.{name} must be >= 0")
        for name in ("failure_prob", "excursion_prob"):
            if getattr(self, name) > 1:
                raise ConfigError(f"expert.{name} must be <= 1")
        low, high = self.excursion_steps
        if not 1 <= low <= high:
            raise ConfigError(f"expert.excursion_steps must be (min, max) with 1 <= min <= max, got {self.excursion_steps}")
        low, high = self.excursion_speed
        if not 0 < low <= high <= 1:
            raise ConfigError(f"expert.excursion_speed must be (min, max) in (0, 1], got {self.excursion_speed}")


# The expert's noise settings: what ``wovr collect --noise PRESET`` copies from a preset.
NOISE_FIELDS = ("action_noise", "grasp_offset", "failure_prob", "excursion_prob", "excursion_steps",
                "excursion_speed")


class Phase(enum.Enum):
    APPROACH = "approach"
    DESCEND = "descend"
    GRASP = "grasp"
    LIFT = "lift"
    CARRY = "carry"
    LOWER = "lower"
    RELEASE = "release"
    RETREAT = "retreat"
    DONE = "done"


class Mistake(enum.Enum):
    NONE = "none"
    MISS_GRASP = "miss_grasp"  # grasp well beside the object
    EARLY_RELEASE = "early_release"  # drop the object while carrying it
    WRONG_TARGET = "wrong_target"  # put it down short of the target


@dataclass
class _Plan:
    grasp_point: np.ndarray
    grasp_yaw: float
    carry_z: float  # grip site height while carrying
    mistake: Mistake = Mistake.NONE


class PickPlaceExpert:
    """``act(privileged) -> (7,) action``; call ``reset(twin)`` at the start of each episode."""

    def __init__(self, config: ExpertConfig | None = None):
        self.config = config or ExpertConfig()
        self.config.validate()
        self._rng = np.random.default_rng(self.config.seed)
        self.phase = Phase.DONE
        self._phase_steps = 0
        self._plan: _Plan | None = None
        self._lower_xy: np.ndarray | None = None  # where LOWER goes down, fixed when it starts
        self._last_translation = np.zeros(3)  # the previous translation action, to limit its change
        self._error_sum = np.zeros(3)  # position error summed over this phase (integral term)
        self._stall_ref_z, self._stalled_steps = np.inf, 0  # LOWER's progress, to notice a touch-down
        self._object = self._target = ""
        self._geometry = None
        self._excursion = np.zeros(3)  # the held translation action of the excursion under way
        self._excursion_left = 0  # its remaining steps
        self.on_excursion = False  # did the last action come from an excursion rather than the plan?
        self._gripper = GRIPPER_OPEN  # the last gripper command of the plan, which an excursion keeps

    # -- episode ------------------------------------------------------------------------------------
    def reset(self, twin) -> None:
        """Plan a grasp for the task loaded in ``twin`` (a LiberoTwin)."""
        goal = [g for g in twin.task.goal if g.relation in ("In", "On")]
        if len(goal) != 1:
            raise ConfigError(f"the pick-and-place expert handles one In/On goal; {twin.task.name} has {twin.task.goal}")
        self._object = goal[0].args[0]
        self._target = goal[0].args[1].removesuffix("_contain_region")
        self._geometry = ObjectGeometry(twin)
        cfg = self.config
        lo, hi = self._geometry.extent(self._object)
        center = (lo + hi) / 2
        # Too wide for the open fingers at every yaw (a bowl): pinch its wall instead of grasping across it.
        rim_grasp = self._geometry.min_width(self._object) > _MAX_GRASP_WIDTH
        # Across an object: fingers 3 cm down its side, their tips clear of whatever it stands on.
        grasp_z = hi[2] - _RIM_GRASP_DEPTH if rim_grasp else max(hi[2] - 0.03, lo[2] + _FINGER_REACH + 0.005)
        yaw, grasp_xy = self._choose_grasp(center, grasp_z, rim_grasp)
        grasp = np.array([grasp_xy[0], grasp_xy[1], grasp_z])
        mistake = Mistake.NONE
        if self._rng.random() < cfg.failure_prob:
            mistake = self._rng.choice([Mistake.MISS_GRASP, Mistake.EARLY_RELEASE, Mistake.WRONG_TARGET])
        if cfg.grasp_offset > 0:
            grasp[:2] += self._rng.normal(0.0, cfg.grasp_offset, size=2)
        if mistake is Mistake.MISS_GRASP:
            direction = self._rng.normal(size=2)
            grasp[:2] += 0.06 * direction / np.linalg.norm(direction)
        carry_z = self._carry_bottom(center[:2]) + grasp[2] - lo[2]
        self._plan = _Plan(grasp, yaw, float(carry_z), mistake)
        self._last_translation = np.zeros(3)
        self._excursion_left, self._gripper = 0, GRIPPER_OPEN
        self._set_phase(Phase.APPROACH)

    def _choose_grasp(self, center: np.ndarray, grasp_z: float, rim_grasp: bool) -> tuple[float, np.ndarray]:
        """The hand's yaw and grip point (for a rim grasp: where on the rim) that fit the object between the
        fingers and keep the open fingers and the hand clear of every other collision geom in the scene."""
        corners = self._geometry.corners(self._object)[:, :2]
        obstacles = self._geometry.boxes_except(self._object)
        best, best_score = (0.0, center[:2]), -np.inf
        for yaw in _GRASP_YAWS:
            closing = np.array([-np.sin(yaw), np.cos(yaw)])
            for side in ((-1.0, 1.0) if rim_grasp else (0.0,)):
                if rim_grasp:
                    radius = (corners @ closing).max() - center[:2] @ closing
                    grip_xy = center[:2] + side * (radius - _RIM_INSET) * closing
                elif np.ptp(corners @ closing) > _MAX_GRASP_WIDTH:
                    continue
                else:
                    grip_xy = center[:2]
                clearance = _hand_clearance(grip_xy, closing, grasp_z, obstacles)
                # Near the edge of the arm's workspace the controller barely moves the hand.
                reach = np.linalg.norm([*grip_xy, grasp_z + _WRIST_ABOVE_GRIP] - self._geometry.shoulder)
                # A collision rules a grasp out (if all collide: the least). Past that, enough clearance is
                # enough; prefer an easy reach and small yaws (less wrist turn).
                if clearance < 0:
                    score = clearance - 1.0
                else:
                    score = (min(clearance, _WANTED_CLEARANCE) - _REACH_COST * max(reach - _COMFORT_REACH, 0.0)
                             - 0.004 * abs(yaw))
                if score > best_score:
                    best, best_score = (float(yaw), grip_xy), score
        return best

    def _carry_bottom(self, start_xy: np.ndarray) -> float:
        """Height for the carried object's bottom: clear of everything the hand passes over on its way to the
        target (and of the target)."""
        target_lo, target_hi = self._geometry.extent(self._target)
        end_xy = (target_lo[:2] + target_hi[:2]) / 2
        path = end_xy - start_xy
        length = float(np.linalg.norm(path))
        direction = path / length if length > 1e-6 else np.array([1.0, 0.0])
        boxes = self._geometry.boxes_except(self._object)
        # The hand's footprint can point any way: a corridor one hand-length wide on each side of the path.
        margin = _HAND_HALF_LENGTH
        gaps = _rect_box_gaps((start_xy + end_xy) / 2, direction, length / 2 + margin, margin, boxes[..., :2])
        highest = boxes[gaps < 0][..., 2].max(initial=target_hi[2])
        return float(highest + self.config.carry_clearance)

    @property
    def mistake(self) -> Mistake:
        return self._plan.mistake if self._plan else Mistake.NONE

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    # -- control ------------------------------------------------------------------------------------
    def act(self, privileged: dict) -> np.ndarray:
        if self._plan is None:
            raise RuntimeError("call reset(twin) before act()")
        excursion = self._excursion_action(privileged)
        if excursion is not None:
            return excursion
        plan, cfg = self._plan, self.config
        eef = privileged["eef_pos"]
        gripper = GRIPPER_OPEN
        goal = eef
        target_lo, target_hi = self._geometry.extent(self._target)
        object_lo = self._geometry.extent(self._object)[0]
        # Place by where the object really is in the hand (it shifts while the fingers close and can
        # slip or tilt): its origin (what LIBERO's On/In predicates test) over the target's centre, its
        # bottom just above the target's top (a basket's rim), from where it drops in.
        held_offset = privileged["objects"][self._object]["pos"] - eef
        release_z = target_hi[2] + _RELEASE_GAP
        place_xy = (target_lo[:2] + target_hi[:2]) / 2 - held_offset[:2]
        if plan.mistake is Mistake.WRONG_TARGET:
            place_xy = place_xy + np.array([0.0, -0.12])
        carry_z = plan.carry_z

        p = self.phase
        if p is Phase.APPROACH:
            goal = plan.grasp_point + [0, 0, cfg.hover]
            self._advance_when(np.linalg.norm(goal - eef) < cfg.reach_tol * 1.5, Phase.DESCEND)
        elif p is Phase.DESCEND:
            goal = plan.grasp_point
            self._advance_when(np.linalg.norm(goal - eef) < cfg.reach_tol * 0.6, Phase.GRASP)
        elif p is Phase.GRASP:
            goal, gripper = plan.grasp_point, GRIPPER_CLOSED
            self._advance_when(self._phase_steps >= cfg.grasp_steps, Phase.LIFT)
        elif p is Phase.LIFT:
            goal, gripper = np.array([eef[0], eef[1], carry_z]), GRIPPER_CLOSED
            self._advance_when(abs(carry_z - eef[2]) < cfg.reach_tol * 2, Phase.CARRY)
        elif p is Phase.CARRY:
            goal, gripper = np.array([place_xy[0], place_xy[1], carry_z]), GRIPPER_CLOSED
            halfway = np.linalg.norm(goal[:2] - eef[:2]) < 0.5 * np.linalg.norm(goal[:2] - plan.grasp_point[:2])
            if plan.mistake is Mistake.EARLY_RELEASE and halfway:
                self._set_phase(Phase.RELEASE)
            else:
                self._advance_when(np.linalg.norm(goal - eef) < cfg.reach_tol * 2, Phase.LOWER)
        elif p is Phase.LOWER:
            # Straight down from where the carry ended: the held offset changes when the object touches down.
            if self._lower_xy is None:
                self._lower_xy = place_xy
            goal, gripper = np.array([*self._lower_xy, eef[2] + release_z - object_lo[2]]), GRIPPER_CLOSED
            if eef[2] < self._stall_ref_z - _STALL_PROGRESS:
                self._stall_ref_z, self._stalled_steps = eef[2], 0
            else:
                self._stalled_steps += 1
            # Release at the release height, or as soon as something holds the object up (it is touching
            # down tilted, or on the target's rim): pushing on would only shove it.
            down = object_lo[2] < release_z + cfg.reach_tol * 0.5 or self._stalled_steps >= _STALL_STEPS
            self._advance_when(down, Phase.RELEASE)
        elif p is Phase.RELEASE:
            goal, gripper = eef, GRIPPER_OPEN
            self._advance_when(self._phase_steps >= cfg.release_steps, Phase.RETREAT)
        elif p is Phase.RETREAT:
            goal = np.array([eef[0], eef[1], carry_z + 0.05])
            self._advance_when(abs(goal[2] - eef[2]) < cfg.reach_tol * 2, Phase.DONE)
        else:
            goal = eef

        action = np.zeros(ACTION_DIM)
        speed = cfg.descend_speed if p is Phase.DESCEND else cfg.max_speed
        action[:3] = self._translation(goal - eef, speed)
        action[3:6] = self._rotation(privileged["eef_quat"], plan.grasp_yaw)
        if cfg.action_noise > 0:
            action[:6] += self._rng.normal(0.0, cfg.action_noise, size=6)
        action[:6] = np.clip(action[:6], -1.0, 1.0)
        action[6] = self._gripper = gripper
        self._phase_steps += 1
        if self._phase_steps > cfg.phase_timeout and self.phase is not Phase.DONE:
            self._set_phase(_NEXT[self.phase])
        return action.astype(np.float32)

    def _excursion_action(self, privileged: dict) -> np.ndarray | None:
        """The next step of an excursion (starting one with ``excursion_prob``), or None to follow the plan.
        The plan's phase and its step count stand still meanwhile; the hand keeps its orientation and the
        gripper its last command, and the expert recovers from wherever the excursion left the arm."""
        cfg = self.config
        self.on_excursion = False
        if self._excursion_left == 0:
            if cfg.excursion_prob <= 0 or self.phase is Phase.DONE or self._rng.random() >= cfg.excursion_prob:
                return None
            direction = self._rng.normal(size=3)
            speed = self._rng.uniform(*cfg.excursion_speed)
            self._excursion = speed * direction / max(np.linalg.norm(direction), 1e-9)
            self._excursion_left = int(self._rng.integers(cfg.excursion_steps[0], cfg.excursion_steps[1] + 1))
        self._excursion_left -= 1
        if self._excursion_left == 0:
            # Back on the plan next step: its speed ramps from here and its integral term starts afresh.
            self._last_translation = self._excursion.copy()
            self._error_sum = np.zeros(3)
        action = np.zeros(ACTION_DIM)
        action[:3] = self._excursion
        action[3:6] = self._rotation(privileged["eef_quat"], self._plan.grasp_yaw)
        action[6] = self._gripper
        self.on_excursion = True
        return action.astype(np.float32)

    def _translation(self, error: np.ndarray, max_speed: float) -> np.ndarray:
        cfg = self.config
        if cfg.integral_gain > 0 and np.linalg.norm(cfg.gain * error) < max_speed:  # no windup in transit
            self._error_sum = _clip_norm(self._error_sum + error, _MAX_INTEGRAL / cfg.integral_gain)
        cmd = _clip_norm(cfg.gain * error + cfg.integral_gain * self._error_sum, max_speed)
        # Speed up gradually (a jerk swings a held object), slow down as the proportional law asks: holding
        # speed on the way in would overshoot the goal.
        last = self._last_translation
        cmd = np.clip(cmd, np.minimum(last, 0.0) - cfg.max_accel, np.maximum(last, 0.0) + cfg.max_accel)
        self._last_translation = cmd
        return cmd

    def _rotation(self, quat_xyzw: np.ndarray, yaw: float) -> np.ndarray:
        current = _quat_to_mat(quat_xyzw)
        # Gripper pointing down (z axis = -world z), rotated by yaw about the world z axis.
        c, s = np.cos(yaw), np.sin(yaw)
        down = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
        target = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ down
        error = _mat_to_axis_angle(target @ current.T)  # world-frame rotation taking current to target
        return np.clip(self.config.rot_gain * error / ROT_SCALE, -1.0, 1.0)

    def _advance_when(self, condition: bool, nxt: Phase) -> None:
        if condition:
            self._set_phase(nxt)

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self._phase_steps = 0
        self._lower_xy = None
        self._stall_ref_z, self._stalled_steps = np.inf, 0
        self._error_sum = np.zeros(3)


_NEXT = {
    Phase.APPROACH: Phase.DESCEND,
    Phase.DESCEND: Phase.GRASP,
    Phase.GRASP: Phase.LIFT,
    Phase.LIFT: Phase.CARRY,
    Phase.CARRY: Phase.LOWER,
    Phase.LOWER: Phase.RELEASE,
    Phase.RELEASE: Phase.RETREAT,
    Phase.RETREAT: Phase.DONE,
    Phase.DONE: Phase.DONE,
}


class ObjectGeometry:
    """World-frame boxes of a LIBERO scene's objects' collision geoms (each geom's local bounding box, posed),
    and where the arm's shoulder is."""

    def __init__(self, twin):
        self._sim = twin._env.sim
        model = self._sim.model._model
        parents = model.body_parentid
        collide = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
        self._geoms: dict[str, np.ndarray] = {}
        for name, root in twin._env.env.obj_body_id.items():
            in_subtree = np.zeros(model.nbody, dtype=bool)
            for b in range(model.nbody):
                a = b
                while a > 0 and a != root:
                    a = parents[a]
                in_subtree[b] = a == root
            self._geoms[name] = np.flatnonzero(in_subtree[model.geom_bodyid] & collide)
        robot = twin._env.robots[0].robot_model
        self.shoulder = np.array(self._sim.data.get_body_xpos(robot.naming_prefix + "link1"))  # the arm's first joint

    def boxes(self, name: str) -> np.ndarray:
        """World-frame corners of ``name``'s collision geom boxes, (n_geoms, 8, 3)."""
        if name not in self._geoms:
            raise ConfigError(f"no object {name!r} in this scene; objects: {sorted(self._geoms)}")
        return self._posed(self._geoms[name])

    def corners(self, name: str) -> np.ndarray:
        return self.boxes(name).reshape(-1, 3)

    def extent(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        points = self.corners(name)
        return points.min(axis=0), points.max(axis=0)

    def min_width(self, name: str) -> float:
        """``name``'s narrowest horizontal width over all yaws: what the fingers would have to span."""
        points = self.corners(name)[:, :2]
        directions = np.stack([np.cos(_YAWS_180), np.sin(_YAWS_180)], axis=1)
        return float(np.ptp(points @ directions.T, axis=0).min())

    def boxes_except(self, exclude: str) -> np.ndarray:
        """Corners of the collision boxes of every object but ``exclude``, (n, 8, 3)."""
        return self._posed(np.concatenate([g for name, g in self._geoms.items() if name != exclude]))

    def _posed(self, geoms: np.ndarray) -> np.ndarray:
        model, data = self._sim.model._model, self._sim.data._data
        local = model.geom_aabb[geoms, None, :3] + _UNIT_CORNERS[None] * model.geom_aabb[geoms, None, 3:]
        rot = data.geom_xmat[geoms].reshape(-1, 3, 3)
        return data.geom_xpos[geoms][:, None, :] + np.einsum("gij,gpj->gpi", rot, local)


_UNIT_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
_YAWS_180 = np.deg2rad(np.arange(0, 180, 5))
_GRASP_YAWS = np.deg2rad(np.arange(-90, 90, 7.5))  # the gripper is symmetric: half a turn covers all
_MAX_GRASP_WIDTH = 0.072  # the Panda's fingers open to 8 cm; keep a margin
_RIM_GRASP_DEPTH = 0.018  # rim grasps: the grip site this far below the rim, pads on the wall
_RIM_INSET = 0.012  # rim grasps: the grip site this far inside the object's outline (wall thickness and flare)
_RELEASE_GAP = 0.012  # the object's bottom this far above the target's top when the fingers open
_STALL_STEPS = 5  # LOWER: this many steps without _STALL_PROGRESS downwards means the object touched down
_STALL_PROGRESS = 0.002
_MAX_INTEGRAL = 0.5  # action units the integral term may add
_WANTED_CLEARANCE = 0.02  # grasp planning: clearance beyond this buys nothing
# Grasp planning: the wrist (link 7) is ~0.2 m above the grip site; farther than ~0.8 m from the shoulder
# the arm is nearly straight and the hand creeps.
_WRIST_ABOVE_GRIP = 0.2
_COMFORT_REACH = 0.75
_REACH_COST = 0.3  # score per metre beyond the comfortable reach

# The Panda hand in the grip-site frame (t: along the closing axis, n: across it), fingers open. MuJoCo
# collides with the convex hulls of its meshes: the hand's hull comes down to 3 cm above the grip site
# over its whole length, the fingers reach 13 mm below it.
_HAND_UNDERSIDE = 0.03
_HAND_HALF_LENGTH = 0.105
_HAND_HALF_WIDTH = 0.037
_FINGER_REACH = 0.013
_FINGER_T = (0.038, 0.065)  # |t| of an open finger's inner (pad) and outer faces
_FINGER_HALF_WIDTH = 0.013


def _hand_clearance(grip_xy: np.ndarray, closing: np.ndarray, grip_z: float, boxes: np.ndarray) -> float:
    """Smallest gap in the table plane between the open hand at the grip site and the boxes that reach up to
    it: boxes above the finger tips against the fingers, boxes above the hand's underside against the whole
    hand. Negative: they overlap (a collision on the way down)."""
    tops = boxes[..., 2].max(axis=1) - grip_z
    finger_mid, finger_half = sum(_FINGER_T) / 2, (_FINGER_T[1] - _FINGER_T[0]) / 2
    parts = [
        (tops > -_FINGER_REACH, grip_xy + finger_mid * closing, finger_half, _FINGER_HALF_WIDTH),
        (tops > -_FINGER_REACH, grip_xy - finger_mid * closing, finger_half, _FINGER_HALF_WIDTH),
        (tops > _HAND_UNDERSIDE, grip_xy, _HAND_HALF_LENGTH, _HAND_HALF_WIDTH),
    ]
    gaps = [_rect_box_gaps(c, closing, ht, hn, boxes[high, :, :2]).min() for high, c, ht, hn in parts if high.any()]
    return float(min(gaps, default=np.inf))


def _rect_box_gaps(center: np.ndarray, axis: np.ndarray, half_t: float, half_n: float, boxes: np.ndarray) -> np.ndarray:
    """Separating-axis gap in the plane between a rectangle (half sizes along ``axis`` and across it) and the
    top-down shadows of posed boxes, (G, 8, 2) corners; negative where they overlap."""
    normal = np.array([-axis[1], axis[0]])
    # A box's shadow is bounded by shadows of its edges: the normals of its three edge directions (with the
    # rectangle's two axes) are the candidate separating axes.
    edges = boxes[:, [4, 2, 1]] - boxes[:, [0, 0, 0]]  # _UNIT_CORNERS order: its x, y and z edges at corner 0
    edge_normals = np.stack([-edges[..., 1], edges[..., 0]], axis=-1)
    length = np.linalg.norm(edge_normals, axis=-1, keepdims=True)
    edge_normals = np.where(length > 1e-9, edge_normals / np.maximum(length, 1e-9), axis)  # vertical edges
    axes = np.concatenate([np.broadcast_to(np.stack([axis, normal]), (len(boxes), 2, 2)), edge_normals], axis=1)
    shadow = np.einsum("gkd,gpd->gkp", axes, boxes)
    mid = axes @ center
    reach = half_t * np.abs(axes @ axis) + half_n * np.abs(axes @ normal)
    separation = np.maximum(shadow.min(axis=-1) - (mid + reach), (mid - reach) - shadow.max(axis=-1))
    return separation.max(axis=-1)


def _clip_norm(v: np.ndarray, limit: float) -> np.ndarray:
    norm = np.linalg.norm(v)
    return v * (limit / norm) if norm > limit else v


def _quat_to_mat(q_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64) / np.linalg.norm(q_xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _mat_to_axis_angle(r: np.ndarray) -> np.ndarray:
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    norm = np.linalg.norm(axis)
    if norm < 1e-9:  # angle ~ pi: take the axis from the symmetric part
        axis = np.sqrt(np.maximum((np.diag(r) + 1.0) / 2.0, 0.0))
        norm = np.linalg.norm(axis)
    return axis / norm * angle
