"""Hand-eye calibration: where the camera sits on the hand (eye-in-hand) or in the robot base (eye-to-hand).

Solve: OpenCV's closed-form AX = XB (``calibrateHandEye``) or AX = ZB (``calibrateRobotWorldHandEye``) for
a first estimate, then a joint least-squares refinement of both unknown transforms on the reprojection error
of every detected board corner. Degenerate pose sets are refused before solving. Pure: no devices here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.board import BoardDetection
from calibration.config import HandEyeConfig
from calibration.errors import CalibrationError, DegenerateInputError
from calibration.geometry import invert, make_transform, matrix_to_rotvec, rotation_angle_deg

_HAND_EYE_METHODS = {
    "tsai": cv2.CALIB_HAND_EYE_TSAI, "park": cv2.CALIB_HAND_EYE_PARK, "horaud": cv2.CALIB_HAND_EYE_HORAUD,
    "andreff": cv2.CALIB_HAND_EYE_ANDREFF, "daniilidis": cv2.CALIB_HAND_EYE_DANIILIDIS,
}
_ROBOT_WORLD_METHODS = {"shah": cv2.CALIB_ROBOT_WORLD_HAND_EYE_SHAH, "li": cv2.CALIB_ROBOT_WORLD_HAND_EYE_LI}


@dataclass(frozen=True)
class HandEyeSample:
    """One stationary robot pose, the board corners seen there and the board pose solved from them."""

    T_base_ee: np.ndarray
    detection: BoardDetection
    T_cam_board: np.ndarray


@dataclass(frozen=True)
class PoseDiversity:
    """How much a pose set varies: what decides whether hand-eye calibration is well posed."""

    num_poses: int
    max_rotation_deg: float
    axis_spread_deg: float
    translation_range_m: float


@dataclass
class HandEyeResult:
    """The calibrated transform, the board's transform, and the residuals that justify them."""

    setup: str
    T_camera: np.ndarray  # eye_in_hand: T_ee_cam; eye_to_hand: T_base_cam
    T_board: np.ndarray  # eye_in_hand: T_base_board; eye_to_hand: T_ee_board
    reprojection_rms_px: float
    per_view_rms_px: list[float]
    translation_residual_mm: dict[str, float]  # measured vs predicted board position per view
    rotation_residual_deg: dict[str, float]
    views_used: list[int]
    views_rejected: list[int]
    diversity: PoseDiversity
    method: str

    def to_dict(self) -> dict:
        return {
            "setup": self.setup,
            "T_camera": self.T_camera.tolist(),
            "T_board": self.T_board.tolist(),
            "reprojection_rms_px": self.reprojection_rms_px,
            "per_view_rms_px": self.per_view_rms_px,
            "translation_residual_mm": self.translation_residual_mm,
            "rotation_residual_deg": self.rotation_residual_deg,
            "views_used": self.views_used,
            "views_rejected": self.views_rejected,
            "diversity": vars(self.diversity),
            "method": self.method,
        }


def relative_rotation_axes(poses: list[np.ndarray], min_angle_deg: float) -> tuple[np.ndarray, float]:
    """Unit axes of the hand's relative rotations between every pair of poses (hand frame) that turn by at
    least ``min_angle_deg``, and the largest relative angle."""
    axes, largest = [], 0.0
    for i in range(len(poses)):
        for j in range(i + 1, len(poses)):
            R = poses[i][:3, :3].T @ poses[j][:3, :3]
            angle = rotation_angle_deg(R)
            largest = max(largest, angle)
            if angle >= min_angle_deg:
                rotvec = matrix_to_rotvec(R)
                axes.append(rotvec / np.linalg.norm(rotvec))
    return np.asarray(axes).reshape(-1, 3), largest


def axis_spread_deg(axes: np.ndarray) -> float:
    """How far rotation axes are from all being parallel, in [0, 90] degrees (sign-free).

    From the eigenvalues l1 >= l2 of the axes' scatter matrix: two axes at angle a give l2/l1 = tan^2(a/2).
    """
    if len(axes) < 2:
        return 0.0
    eig = np.sort(np.linalg.eigvalsh(axes.T @ axes / len(axes)))[::-1]
    return float(np.degrees(2 * np.arctan(np.sqrt(max(eig[1], 0.0) / max(eig[0], 1e-12)))))


def pose_diversity(poses: list[np.ndarray], config: HandEyeConfig) -> PoseDiversity:
    axes, largest = relative_rotation_axes(poses, min_angle_deg=0.5 * config.min_rotation_deg)
    positions = np.array([T[:3, 3] for T in poses]).reshape(-1, 3)
    span = float(np.linalg.norm(positions[:, None] - positions[None], axis=-1).max()) if len(poses) else 0.0
    return PoseDiversity(len(poses), largest, axis_spread_deg(axes), span)


def check_pose_diversity(poses: list[np.ndarray], config: HandEyeConfig, what: str = "robot poses") -> PoseDiversity:
    """Refuse pose sets that cannot determine the hand-eye transform; returns the diversity figures."""
    d = pose_diversity(poses, config)
    if d.num_poses < config.min_poses:
        raise DegenerateInputError(
            f"hand-eye: only {d.num_poses} {what}; need at least {config.min_poses}.")
    if d.max_rotation_deg < config.min_rotation_deg:
        raise DegenerateInputError(
            f"hand-eye: the {what} barely rotate (largest relative rotation {d.max_rotation_deg:.1f} deg < "
            f"{config.min_rotation_deg} deg); rotation is what makes the camera offset observable. Allow larger "
            f"tilts (poses.max_rotation_deg).")
    if d.axis_spread_deg < config.min_axis_spread_deg:
        raise DegenerateInputError(
            f"hand-eye: the {what} all rotate about nearly the same axis (axis spread {d.axis_spread_deg:.1f} deg "
            f"< {config.min_axis_spread_deg} deg); the offset along that axis is unobservable. Add poses that "
            f"tilt about other axes (roll and pitch as well as yaw).")
    if d.translation_range_m < config.min_translation_m:
        raise DegenerateInputError(
            f"hand-eye: the {what} span only {1000 * d.translation_range_m:.1f} mm (< "
            f"{1000 * config.min_translation_m:.0f} mm); spread them over a larger part of the workspace.")
    return d


def board_pose_from_detection(detection: BoardDetection, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """T_cam_board by PnP (IPPE for the planar board, then Levenberg-Marquardt refinement)."""
    obj = detection.object_points.astype(np.float64)
    img = detection.image_points.astype(np.float64)
    ok, rvec, tvec = cv2.solvePnP(obj, img, K, dist, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise CalibrationError("hand-eye: PnP failed on a board view")
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, dist, rvec, tvec)
    return make_transform(cv2.Rodrigues(rvec)[0], tvec.reshape(3))


def _predict_T_cam_board(setup: str, T_base_ee: np.ndarray, T_camera: np.ndarray, T_board: np.ndarray) -> np.ndarray:
    if setup == "eye_in_hand":
        return invert(T_base_ee @ T_camera) @ T_board
    return invert(T_camera) @ T_base_ee @ T_board


def _average_transform(transforms: list[np.ndarray]) -> np.ndarray:
    """Chordal mean of rotations (SVD projection) and mean of translations."""
    M = sum(T[:3, :3] for T in transforms)
    U, _, Vt = np.linalg.svd(M)
    R = U @ np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    return make_transform(R, np.mean([T[:3, 3] for T in transforms], axis=0))


def _closed_form(samples: list[HandEyeSample], setup: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    """First estimate of (T_camera, T_board) with OpenCV."""
    # eye-to-hand is eye-in-hand with the robot poses inverted (the camera is then "on" the base seen from the hand)
    robot = [s.T_base_ee if setup == "eye_in_hand" else invert(s.T_base_ee) for s in samples]
    cam = [s.T_cam_board for s in samples]
    if method in _HAND_EYE_METHODS:
        R, t = cv2.calibrateHandEye([T[:3, :3] for T in robot], [T[:3, 3] for T in robot],
                                    [T[:3, :3] for T in cam], [T[:3, 3] for T in cam],
                                    method=_HAND_EYE_METHODS[method])
        T_camera = make_transform(R, t.reshape(3))
    else:
        # AX = ZB with A = T_cam_board, B = inv(robot): X = T_board_base', Z = T_cam_ee'
        inv_robot = [invert(T) for T in robot]
        _, _, R_z, t_z = cv2.calibrateRobotWorldHandEye(
            [T[:3, :3] for T in cam], [T[:3, 3] for T in cam],
            [T[:3, :3] for T in inv_robot], [T[:3, 3] for T in inv_robot], method=_ROBOT_WORLD_METHODS[method])
        T_camera = invert(make_transform(R_z, t_z.reshape(3)))
    boards = []
    for s in samples:
        if setup == "eye_in_hand":
            boards.append(s.T_base_ee @ T_camera @ s.T_cam_board)
        else:
            boards.append(invert(s.T_base_ee) @ T_camera @ s.T_cam_board)
    return T_camera, _average_transform(boards)


def _reprojection_residuals(params: np.ndarray, T_camera0: np.ndarray, T_board0: np.ndarray,
                            samples: list[HandEyeSample], setup: str, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    T_camera = T_camera0 @ make_transform(params[0:3], params[3:6])
    T_board = T_board0 @ make_transform(params[6:9], params[9:12])
    out = []
    for s in samples:
        T = _predict_T_cam_board(setup, s.T_base_ee, T_camera, T_board)
        projected, _ = cv2.projectPoints(s.detection.object_points.astype(np.float64).reshape(-1, 1, 3),
                                         cv2.Rodrigues(T[:3, :3])[0], T[:3, 3], K, dist)
        out.append((projected.reshape(-1, 2) - s.detection.image_points).reshape(-1))
    return np.concatenate(out)


def _refine(T_camera: np.ndarray, T_board: np.ndarray, samples: list[HandEyeSample], setup: str,
            K: np.ndarray, dist: np.ndarray, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt on all corners' reprojection errors over local 12-D perturbations of both transforms
    (numeric Jacobian: 12 parameters, a few hundred residuals)."""
    params = np.zeros(12)
    r = _reprojection_residuals(params, T_camera, T_board, samples, setup, K, dist)
    cost, damping, eps = float(r @ r), 1e-3, 1e-7
    for _ in range(iterations):
        J = np.empty((len(r), 12))
        for k in range(12):
            step = np.zeros(12)
            step[k] = eps
            J[:, k] = (_reprojection_residuals(params + step, T_camera, T_board, samples, setup, K, dist) - r) / eps
        JtJ, Jtr = J.T @ J, J.T @ r
        while True:
            delta = -np.linalg.solve(JtJ + damping * np.diag(np.diag(JtJ) + 1e-12), Jtr)
            r_new = _reprojection_residuals(params + delta, T_camera, T_board, samples, setup, K, dist)
            cost_new = float(r_new @ r_new)
            if cost_new < cost:
                params, r, damping = params + delta, r_new, max(damping / 10, 1e-9)
                improvement, cost = cost - cost_new, cost_new
                break
            damping *= 10
            if damping > 1e8:
                improvement = 0.0
                break
        if improvement <= 1e-12 * max(cost, 1e-12):
            break
    return (T_camera @ make_transform(params[0:3], params[3:6]),
            T_board @ make_transform(params[6:9], params[9:12]))


def _per_view_rms(T_camera, T_board, samples, setup, K, dist) -> np.ndarray:
    r = _reprojection_residuals(np.zeros(12), T_camera, T_board, samples, setup, K, dist).reshape(-1, 2)
    sizes = np.cumsum([0] + [s.detection.num_corners for s in samples])
    return np.array([np.sqrt(np.mean(np.sum(r[a:b] ** 2, axis=1))) for a, b in zip(sizes[:-1], sizes[1:], strict=True)])


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "max": float(np.max(values))}


def solve_hand_eye(samples: list[HandEyeSample], K: np.ndarray, dist: np.ndarray, config: HandEyeConfig) -> HandEyeResult:
    """Calibrate from stationary samples; refuse degenerate sets, reject inconsistent views, report residuals."""
    setup = config.setup
    K = np.asarray(K, dtype=np.float64)
    dist = np.asarray(dist, dtype=np.float64).reshape(-1)
    used = [i for i, s in enumerate(samples) if s.detection.num_corners >= config.min_corners]
    rejected: list[int] = []
    while True:
        subset = [samples[i] for i in used]
        diversity = check_pose_diversity([s.T_base_ee for s in subset], config)
        T_camera, T_board = _closed_form(subset, setup, config.method)
        if config.refine:
            T_camera, T_board = _refine(T_camera, T_board, subset, setup, K, dist)
        per_view = _per_view_rms(T_camera, T_board, subset, setup, K, dist)
        threshold = max(config.outlier_factor * float(np.median(per_view)), config.outlier_min_px)
        bad = [i for i, e in zip(used, per_view, strict=True) if e > threshold]
        if not bad or len(used) - len(bad) < config.min_poses:
            break
        rejected += bad
        used = [i for i in used if i not in bad]
    if not (np.all(np.isfinite(T_camera)) and np.all(np.isfinite(T_board))):
        raise CalibrationError("hand-eye: the solver returned non-finite values; capture more varied poses.")
    rms = float(np.sqrt(np.mean(per_view ** 2)))
    if rms > config.max_reprojection_px:
        raise CalibrationError(
            f"hand-eye: RMS reprojection error {rms:.2f} px exceeds {config.max_reprojection_px} px; the camera "
            f"or board may be loose, the intrinsics wrong, or the robot pose read while moving (raise "
            f"motion.settle_s).")
    t_res, r_res = [], []
    for s in subset:
        predicted = _predict_T_cam_board(setup, s.T_base_ee, T_camera, T_board)
        t_res.append(1000 * np.linalg.norm(predicted[:3, 3] - s.T_cam_board[:3, 3]))
        r_res.append(rotation_angle_deg(predicted[:3, :3].T @ s.T_cam_board[:3, :3]))
    return HandEyeResult(
        setup=setup, T_camera=T_camera, T_board=T_board, reprojection_rms_px=rms,
        per_view_rms_px=[float(e) for e in per_view], translation_residual_mm=_stats(np.array(t_res)),
        rotation_residual_deg=_stats(np.array(r_res)), views_used=used, views_rejected=sorted(rejected),
        diversity=diversity, method=config.method + ("+refine" if config.refine else ""),
    )
