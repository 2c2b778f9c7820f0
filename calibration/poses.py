"""Generate a safe, diverse, short-travel set of hand poses for hand-eye calibration.

Poses are the start pose rotated about a pivot (the board, for eye-in-hand; the held board's centre, for
eye-to-hand), so the board stays in view, plus a little translation. Candidates outside the workspace box
or beyond the tilt limit are dropped; farthest-point sampling keeps the most different ones (diverse
rotation axes), and a nearest-neighbour + 2-opt tour orders them to keep the arm's travel short.
"""

from __future__ import annotations

import numpy as np

from calibration.config import PoseSamplerConfig
from calibration.geometry import make_transform, rotation_angle_deg, rotvec_to_matrix


def in_workspace(T: np.ndarray, config: PoseSamplerConfig) -> bool:
    p = T[:3, 3]
    return bool(np.all(p >= config.workspace_min) and np.all(p <= config.workspace_max))


def pose_distance(a: np.ndarray, b: np.ndarray, metres_per_degree: float = 0.005) -> float:
    """Travel cost between two poses: translation plus rotation, 1 degree weighing like 5 mm."""
    return float(np.linalg.norm(a[:3, 3] - b[:3, 3]) + metres_per_degree * rotation_angle_deg(a[:3, :3].T @ b[:3, :3]))


def sample_candidates(T_start: np.ndarray, pivot_in_ee: np.ndarray, config: PoseSamplerConfig,
                      rng: np.random.Generator) -> list[np.ndarray]:
    """Random orbit poses about the pivot within the workspace box and the tilt limit."""
    pivot = T_start[:3, :3] @ pivot_in_ee + T_start[:3, 3]
    out = []
    for _ in range(config.num_poses * config.candidates_per_pose):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        angle = np.radians(rng.uniform(config.min_rotation_deg, config.max_rotation_deg))
        R_delta = rotvec_to_matrix(axis * angle)
        jitter = rng.uniform(-config.translation_jitter_m, config.translation_jitter_m, size=3)
        T = make_transform(R_delta @ T_start[:3, :3], pivot + R_delta @ (T_start[:3, 3] - pivot) + jitter)
        if in_workspace(T, config):
            out.append(T)
    return out


def farthest_point_subset(candidates: list[np.ndarray], reference: np.ndarray, count: int) -> list[np.ndarray]:
    """Greedy farthest-point sampling: each pick is the candidate farthest from the start and all earlier picks."""
    chosen: list[np.ndarray] = []
    nearest = np.array([pose_distance(c, reference) for c in candidates])
    for _ in range(min(count, len(candidates))):
        k = int(np.argmax(nearest))
        chosen.append(candidates[k])
        nearest = np.minimum(nearest, [pose_distance(c, candidates[k]) for c in candidates])
        nearest[k] = -np.inf
    return chosen


def order_for_travel(poses: list[np.ndarray], start: np.ndarray) -> list[np.ndarray]:
    """Open tour from ``start`` through all poses: nearest neighbour, then 2-opt until no move shortens it."""
    remaining = list(range(len(poses)))
    tour: list[int] = []
    current = start
    while remaining:
        k = min(remaining, key=lambda i: pose_distance(current, poses[i]))
        tour.append(k)
        remaining.remove(k)
        current = poses[k]
    nodes = [start] + list(poses)
    path = [0] + [i + 1 for i in tour]
    d = np.array([[pose_distance(a, b) for b in nodes] for a in nodes])
    improved = True
    while improved:
        improved = False
        for i in range(1, len(path) - 1):
            for j in range(i + 1, len(path)):
                # reverse path[i..j]; the tour is open, so the last edge may not exist
                before = d[path[i - 1], path[i]] + (d[path[j], path[j + 1]] if j + 1 < len(path) else 0.0)
                after = d[path[i - 1], path[j]] + (d[path[i], path[j + 1]] if j + 1 < len(path) else 0.0)
                if after < before - 1e-12:
                    path[i:j + 1] = path[i:j + 1][::-1]
                    improved = True
    return [nodes[k] for k in path[1:]]


def travel_length(poses: list[np.ndarray], start: np.ndarray) -> float:
    seq = [start] + list(poses)
    return float(sum(pose_distance(a, b) for a, b in zip(seq[:-1], seq[1:], strict=True)))


def generate_poses(T_start: np.ndarray, pivot_in_ee: np.ndarray, config: PoseSamplerConfig) -> list[np.ndarray]:
    """``config.num_poses`` hand poses (4x4, base frame) to visit in order; fewer if the workspace is too small.

    The caller checks the set with ``hand_eye.check_pose_diversity`` before moving the arm.
    """
    rng = np.random.default_rng(config.seed)
    candidates = sample_candidates(T_start, np.asarray(pivot_in_ee, dtype=np.float64), config, rng)
    chosen = farthest_point_subset(candidates, T_start, config.num_poses)
    return order_for_travel(chosen, T_start)
