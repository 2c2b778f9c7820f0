"""Value types shared by every layer: frames, robot state, action chunks, feature specs.

Plain numpy dataclasses: no torch, no ROS, so the robot side and the trainer agree on one contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

ACTION_DIM = 7
"""Delta end-effector action: [dx, dy, dz, droll, dpitch, dyaw, gripper]."""

STATE_DIM = 8
"""Proprio vector: ee position (3) + ee orientation as axis-angle (3) + gripper finger positions (2)."""

GRIPPER_OPEN = -1.0
GRIPPER_CLOSED = 1.0

# action[t] is the action that LED TO observation o[t]; o[0] has no cause, so it gets this placeholder.
DUMMY_ACTION = np.array([0, 0, 0, 0, 0, 0, GRIPPER_OPEN], dtype=np.float32)

EpisodeSource = Literal["teleop", "policy", "scripted", "imagined"]
SuccessLabelSource = Literal["operator", "sim_predicate", "reward_model", "none"]

# How a reward model for imagination meets an episode's frames (wovr_core.world_model.replay): as recorded, each
# through the world model's codec, or the world model's imagined replay of the recorded actions.
RewardViewKind = Literal["camera", "codec", "imagined"]
# (camera -> (T, H, W, 3) uint8, actions (T, 7)) of one episode -> its frames as that view shows them; each frame
# keeps the label of the recorded frame it stands for.
EpisodeView = Callable[[dict[str, np.ndarray], np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Frame:
    """One camera image with the timing needed to align it with robot state."""

    rgb: np.ndarray  # (H, W, 3) uint8
    t_capture: float  # seconds, device clock mapped to the host's global time base
    t_receive: float  # seconds, host monotonic-wall time when the frame reached us
    seq: int
    camera: str = ""
    depth: np.ndarray | None = None  # (H, W) uint16 millimetres, when enabled

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


@dataclass(frozen=True)
class RobotState:
    """Arm + gripper state at time `t` (seconds)."""

    t: float
    joint_pos: np.ndarray  # (7,)
    ee_pos: np.ndarray  # (3,) metres, robot base frame
    ee_quat: np.ndarray  # (4,) xyzw
    gripper_width: float  # metres between fingers
    joint_vel: np.ndarray | None = None
    gripper_qpos: np.ndarray | None = None  # (2,) finger joint positions, when the device reports them

    def proprio(self) -> np.ndarray:
        """The STATE_DIM vector the models see (LIBERO's eef pos + axis-angle + gripper qpos)."""
        fingers = self.gripper_qpos
        if fingers is None:
            fingers = np.array([self.gripper_width / 2, -self.gripper_width / 2])
        return np.concatenate([self.ee_pos, quat_to_axis_angle(self.ee_quat), fingers]).astype(np.float32)


@dataclass(frozen=True)
class ActionChunk:
    """A chunk of consecutive actions produced by one policy call."""

    actions: np.ndarray  # (H, ACTION_DIM) float32
    t_obs: float  # timestamp of the observation the chunk was computed from
    checkpoint_id: str = ""
    seq: int = 0

    def __post_init__(self) -> None:
        if self.actions.ndim != 2 or self.actions.shape[1] != ACTION_DIM:
            raise ValueError(f"ActionChunk.actions must be (H, {ACTION_DIM}), got {self.actions.shape}")

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[0])


@dataclass(frozen=True)
class FeatureSpec:
    """Name, shape and dtype of one per-frame feature of an episode dataset."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: Literal["video", "state", "action", "flag", "timestamp", "index", "text"] = "state"
    names: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "kind": self.kind,
                "names": list(self.names)}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(name=d["name"], shape=tuple(d["shape"]), dtype=d["dtype"], kind=d.get("kind", "state"),
                   names=tuple(d.get("names", ())))


def quat_to_axis_angle(quat_xyzw: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> axis-angle 3-vector (robosuite's convention, w kept >= 0)."""
    q = np.asarray(quat_xyzw, dtype=np.float64)
    q = q / max(np.linalg.norm(q), 1e-12)
    if q[3] < 0:
        q = -q
    w = min(q[3], 1.0)
    den = np.sqrt(max(1.0 - w * w, 0.0))
    if den < 1e-8:
        return np.zeros(3)
    return q[:3] * (2.0 * np.arccos(w)) / den
