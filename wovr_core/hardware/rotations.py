"""Quaternion helpers (x, y, z, w order, like franky and robosuite) for applying delta rotations."""

from __future__ import annotations

import numpy as np


def axis_angle_to_quat(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, radians) -> unit quaternion (x, y, z, w)."""
    v = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.array([0.0, 0.0, 0.0, 1.0])
    axis = v / angle
    return np.concatenate([axis * np.sin(angle / 2), [np.cos(angle / 2)]])


def quat_multiply(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Hamilton product q1 * q2 (apply q2 first, then q1)."""
    x1, y1, z1, w1 = q1
    x2, y2, z2, w2 = q2
    return np.array([
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
    ])


def apply_delta_rotation(quat_xyzw: np.ndarray, rotvec_base: np.ndarray) -> np.ndarray:
    """Rotate an orientation by a delta given in the BASE frame (robosuite OSC convention)."""
    q = quat_multiply(axis_angle_to_quat(rotvec_base), np.asarray(quat_xyzw, dtype=np.float64))
    return q / np.linalg.norm(q)


def quat_angle(q1: np.ndarray, q2: np.ndarray) -> float:
    """Angle (radians) of the rotation between two orientations."""
    dot = abs(float(np.dot(q1, q2)) / (np.linalg.norm(q1) * np.linalg.norm(q2)))
    return 2.0 * float(np.arccos(min(1.0, dot)))
