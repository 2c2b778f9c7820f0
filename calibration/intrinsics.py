"""Camera intrinsics from ChArUco views: degeneracy checks, calibration, per-view outlier rejection.

Pure: takes detections, returns a result; capturing them from a camera is ``calibration.capture``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.board import BoardDetection
from calibration.config import BoardConfig, IntrinsicsConfig
from calibration.coverage import CoverageGrid
from calibration.errors import CalibrationError, DegenerateInputError

DISTORTION_COEFFS = {"plumb_bob": 5, "rational_polynomial": 8}


@dataclass
class IntrinsicsResult:
    """K, distortion and the evidence for them (per-view errors, rejected views, coverage, tilt range)."""

    K: np.ndarray
    dist: np.ndarray
    width: int
    height: int
    distortion_model: str
    rms_px: float
    per_view_rms_px: list[float]
    views_used: list[int]
    views_rejected: list[int]
    intrinsics_std: dict[str, float]
    coverage: float
    max_tilt_deg: float
    board: BoardConfig

    def to_dict(self) -> dict:
        return {
            "K": self.K.tolist(),
            "dist": self.dist.tolist(),
            "distortion_model": self.distortion_model,
            "width": self.width,
            "height": self.height,
            "rms_px": self.rms_px,
            "per_view_rms_px": self.per_view_rms_px,
            "views_used": self.views_used,
            "views_rejected": self.views_rejected,
            "intrinsics_std": self.intrinsics_std,
            "coverage": self.coverage,
            "max_tilt_deg": self.max_tilt_deg,
            "board": self.board.to_dict(),
        }


def guess_camera_matrix(width: int, height: int, factory: dict | None = None) -> np.ndarray:
    """Factory intrinsics when the device has them, else a 65-degree horizontal field of view.
    Only used to judge how tilted the views are, never as a result."""
    if factory is not None and (factory.get("width"), factory.get("height")) == (width, height):
        return np.asarray(factory["K"], dtype=np.float64)
    f = 0.5 * width / np.tan(np.radians(65.0) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])


def board_normals(views: list[BoardDetection], K: np.ndarray) -> np.ndarray:
    """(N, 3) board normals in the camera frame (pointing at the camera)."""
    normals = []
    for view in views:
        ok, rvec, _ = cv2.solvePnP(view.object_points.astype(np.float64), view.image_points.astype(np.float64),
                                   K, None, flags=cv2.SOLVEPNP_IPPE)
        if not ok:
            normals.append([np.nan, np.nan, np.nan])
            continue
        n = cv2.Rodrigues(rvec)[0][:, 2]
        normals.append(-n if n[2] > 0 else n)
    return np.asarray(normals, dtype=np.float64)


def tilt_statistics(normals: np.ndarray) -> tuple[float, float]:
    """(largest tilt from fronto-parallel, tilt spread about the weakest image axis), both in degrees.

    The spread is the RMS tilt along the least-tilted direction: views tilted only about one image axis leave
    the focal length along the other axis unobservable (Sturm & Maybank), so that direction needs tilt too.
    """
    normals = normals[np.all(np.isfinite(normals), axis=1)]
    if len(normals) == 0:
        return 0.0, 0.0
    tilt_vectors = normals[:, :2]  # sin(tilt) along image x and y
    max_tilt = float(np.degrees(np.arcsin(np.clip(np.linalg.norm(tilt_vectors, axis=1).max(), 0, 1))))
    second_moment = tilt_vectors.T @ tilt_vectors / len(tilt_vectors)
    weakest = float(np.sqrt(max(np.linalg.eigvalsh(second_moment)[0], 0.0)))
    return max_tilt, float(np.degrees(np.arcsin(min(weakest, 1.0))))


def check_views(views: list[BoardDetection], width: int, height: int, config: IntrinsicsConfig,
                factory: dict | None = None, frames_read: int | None = None) -> list[int]:
    """Indices of usable views; raise DegenerateInputError when they cannot determine K."""
    usable = [i for i, v in enumerate(views) if v.num_corners >= config.min_corners]
    seen = frames_read if frames_read is not None else len(views)
    if len(usable) < config.min_views:
        raise DegenerateInputError(
            f"intrinsics: the board ({config.board.squares_x}x{config.board.squares_y} ChArUco, "
            f"{config.board.dictionary}) was found with >= {config.min_corners} corners in only {len(usable)} of "
            f"{seen} frames; need {config.min_views}. Check the board settings match the printed board, the "
            f"lighting and focus, and show the board from more positions.")
    normals = board_normals([views[i] for i in usable], guess_camera_matrix(width, height, factory))
    max_tilt, spread = tilt_statistics(normals)
    if max_tilt < config.min_tilt_deg:
        raise DegenerateInputError(
            f"intrinsics: all {len(usable)} views are nearly parallel to the image plane (largest tilt "
            f"{max_tilt:.1f} deg < {config.min_tilt_deg} deg); the focal length cannot be separated from the "
            f"distance. Tilt the board 20-45 degrees in several directions.")
    if spread < config.min_tilt_spread_deg:
        raise DegenerateInputError(
            f"intrinsics: the views are tilted about one axis only (tilt spread {spread:.1f} deg < "
            f"{config.min_tilt_spread_deg} deg about the weakest axis); one focal length is unobservable. "
            f"Tilt the board left/right as well as up/down.")
    return usable


def calibrate_intrinsics(views: list[BoardDetection], width: int, height: int, config: IntrinsicsConfig,
                         factory: dict | None = None, frames_read: int | None = None) -> IntrinsicsResult:
    """Calibrate from detections; views inconsistent with the rest are rejected and reported."""
    used = check_views(views, width, height, config, factory, frames_read)
    flags = 0
    if config.distortion_model == "rational_polynomial":
        flags |= cv2.CALIB_RATIONAL_MODEL
    if config.fix_k3:
        flags |= cv2.CALIB_FIX_K3
    rejected: list[int] = []
    while True:
        obj = [views[i].object_points.reshape(-1, 1, 3).astype(np.float32) for i in used]
        img = [views[i].image_points.reshape(-1, 1, 2).astype(np.float32) for i in used]
        rms, K, dist, _, _, std_intr, _, per_view = cv2.calibrateCameraExtended(
            obj, img, (width, height), None, None, flags=flags)
        per_view = per_view.reshape(-1)
        threshold = max(config.outlier_factor * float(np.median(per_view)), config.outlier_min_px)
        bad = [i for i, e in zip(used, per_view, strict=True) if e > threshold]
        if not bad:
            break
        if len(used) - len(bad) < config.min_views:
            raise DegenerateInputError(
                f"intrinsics: {len(bad)} of {len(used)} views disagree with the rest (per-view RMS above "
                f"{threshold:.2f} px), leaving fewer than {config.min_views}; the board may be bent or moving "
                f"(motion blur). Capture again with a flat, still board.")
        rejected += bad
        used = [i for i in used if i not in bad]
    if not np.all(np.isfinite(K)) or not np.all(np.isfinite(dist)):
        raise CalibrationError("intrinsics: the solver returned non-finite values; capture more varied views.")
    if rms > config.max_rms_px:
        raise CalibrationError(
            f"intrinsics: RMS reprojection error {rms:.2f} px exceeds {config.max_rms_px} px; check the board "
            f"is flat, in focus and that its settings ({config.board.square_length_m} m squares) are right.")
    n_coeffs = DISTORTION_COEFFS[config.distortion_model]
    coverage = CoverageGrid(width, height)
    for i in used:
        coverage.add(views[i].image_points)
    std = std_intr.reshape(-1)
    max_tilt, _ = tilt_statistics(board_normals([views[i] for i in used], K))
    return IntrinsicsResult(
        K=K, dist=dist.reshape(-1)[:n_coeffs], width=width, height=height,
        distortion_model=config.distortion_model, rms_px=float(rms),
        per_view_rms_px=[float(e) for e in per_view], views_used=used, views_rejected=sorted(rejected),
        intrinsics_std={"fx": float(std[0]), "fy": float(std[1]), "cx": float(std[2]), "cy": float(std[3])},
        coverage=coverage.fraction, max_tilt_deg=max_tilt, board=config.board,
    )


def compare_with_factory(result: IntrinsicsResult, factory: dict | None) -> dict | None:
    """Percent differences of fx, fy, cx, cy from the device's factory intrinsics (same resolution only)."""
    if factory is None:
        return None
    if (factory.get("width"), factory.get("height")) != (result.width, result.height):
        return {"compared": False,
                "reason": f"factory intrinsics are for {factory.get('width')}x{factory.get('height')}, "
                          f"calibrated at {result.width}x{result.height}"}
    Kf = np.asarray(factory["K"], dtype=np.float64)
    K = result.K
    pct = {name: float(100 * (K[r, c] - Kf[r, c]) / Kf[r, c])
           for name, (r, c) in {"fx": (0, 0), "fy": (1, 1), "cx": (0, 2), "cy": (1, 2)}.items()}
    return {"compared": True, "factory_K": Kf.tolist(), "factory_dist": list(factory.get("dist", [])),
            "difference_pct": pct}
