"""Calibration accuracy on rendered ChArUco boards with known ground truth, end to end.

    python benchmarks/calibration_accuracy.py --seeds 5

Per seed: a synthetic 640x480 camera (RealSense-like K, mild distortion, blur, 2 grey levels of pixel noise)
sees a 7x5 ChArUco board; intrinsics from 30 waved views; then eye-in-hand and eye-to-hand hand-eye
calibration with THOSE estimated intrinsics, the synthetic arm driven to 15 generated poses through the
safety envelope. Reports focal length and principal point error (% of the true value, worst of x/y),
hand-eye translation error (mm) and rotation error (deg), mean and max over seeds, against the acceptance
bounds (0.5 %, 2 mm, 0.2 deg). Saves benchmarks/results/calibration.json.
"""

# ruff: noqa: E402  (the import path is fixed before the project imports)
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from calibration.capture import capture_hand_eye_samples, capture_intrinsics_views
from calibration.config import HandEyeConfig, IntrinsicsConfig, MotionConfig
from calibration.geometry import pose_to_transform, transform_error
from calibration.hand_eye import solve_hand_eye
from calibration.intrinsics import calibrate_intrinsics
from calibration.motion import DeltaMover
from calibration.poses import generate_poses
from calibration.synthetic import SyntheticBoardCamera
from wovr_core.hardware.arm import ArmConfig
from wovr_core.hardware.camera import CameraConfig
from wovr_core.hardware.safety import SafetyConfig, SafetyEnvelope
from wovr_core.hardware.synthetic import SyntheticArm

RESULTS = Path(__file__).resolve().parent / "results"
BOUNDS = {"focal_error_pct": 0.5, "principal_point_error_pct": 0.5, "translation_mm": 2.0, "rotation_deg": 0.2}
PIVOT_M = {"eye_in_hand": 0.40, "eye_to_hand": 0.10}


def make_camera(seed: int) -> SyntheticBoardCamera:
    return SyntheticBoardCamera(CameraConfig(type="synthetic_board", name="bench", width=640, height=480,
                                             options={"seed": seed}))


def intrinsics_run(seed: int) -> dict:
    camera = make_camera(seed)
    with camera:
        capture = capture_intrinsics_views(camera, IntrinsicsConfig())
    t0 = time.perf_counter()
    result = calibrate_intrinsics(capture.views, capture.width, capture.height, IntrinsicsConfig())
    K, K_true = result.K, camera.K
    return {
        "K": K, "dist": result.dist,
        "focal_error_pct": float(100 * max(abs(K[0, 0] / K_true[0, 0] - 1), abs(K[1, 1] / K_true[1, 1] - 1))),
        "principal_point_error_pct": float(100 * max(abs(K[0, 2] / K_true[0, 2] - 1), abs(K[1, 2] / K_true[1, 2] - 1))),
        "rms_px": result.rms_px, "views": len(result.views_used), "solve_s": time.perf_counter() - t0,
    }


def hand_eye_run(setup: str, seed: int, K: np.ndarray, dist: np.ndarray) -> dict:
    config = HandEyeConfig(setup=setup, motion=MotionConfig(rate_hz=0, settle_s=0.0, frames_to_skip=0))
    config.poses.seed = seed
    arm = SyntheticArm(ArmConfig(type="synthetic"))
    camera = make_camera(seed)
    with arm, camera:
        truth = camera.follow(arm, setup)
        state = arm.state()
        poses = generate_poses(pose_to_transform(state.ee_pos, state.ee_quat), np.array([0, 0, PIVOT_M[setup]]),
                               config.poses)
        samples = capture_hand_eye_samples(camera, arm, poses, DeltaMover(arm, SafetyEnvelope(SafetyConfig())),
                                           K, dist, config)
    t0 = time.perf_counter()
    result = solve_hand_eye(samples, K, dist, config)
    t_err, r_err = transform_error(result.T_camera, truth.T_camera)
    return {"translation_mm": 1000 * t_err, "rotation_deg": r_err, "poses": len(result.views_used),
            "reprojection_rms_px": result.reprojection_rms_px, "solve_s": time.perf_counter() - t0}


def summarize(runs: list[dict], keys: tuple[str, ...]) -> dict:
    return {k: {"mean": float(np.mean([r[k] for r in runs])), "max": float(np.max([r[k] for r in runs]))}
            for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "calibration.json"))
    args = parser.parse_args()

    intrinsics, hand_eye = [], {"eye_in_hand": [], "eye_to_hand": []}
    for seed in range(args.seeds):
        run = intrinsics_run(seed)
        intrinsics.append(run)
        line = [f"seed {seed}: focal {run['focal_error_pct']:.3f}%  pp {run['principal_point_error_pct']:.3f}%"]
        for setup in hand_eye:
            he = hand_eye_run(setup, seed, run["K"], run["dist"])
            hand_eye[setup].append(he)
            line.append(f"{setup} {he['translation_mm']:.3f} mm {he['rotation_deg']:.4f} deg")
        print("  ".join(line), flush=True)

    report = {
        "intrinsics": summarize(intrinsics, ("focal_error_pct", "principal_point_error_pct", "rms_px")),
        **{setup: summarize(runs, ("translation_mm", "rotation_deg", "reprojection_rms_px"))
           for setup, runs in hand_eye.items()},
    }
    worst = {"focal_error_pct": report["intrinsics"]["focal_error_pct"]["max"],
             "principal_point_error_pct": report["intrinsics"]["principal_point_error_pct"]["max"],
             "translation_mm": max(report[s]["translation_mm"]["max"] for s in hand_eye),
             "rotation_deg": max(report[s]["rotation_deg"]["max"] for s in hand_eye)}
    report["acceptance"] = {"bounds": BOUNDS, "worst": worst,
                            "pass": all(worst[k] <= BOUNDS[k] for k in BOUNDS)}
    report["setup"] = {
        "seeds": args.seeds, "image": "640x480, blur sigma 0.7 px, noise 2 grey levels, distortion k1=-0.06 k2=0.08",
        "board": "ChArUco 7x5, 40 mm squares, DICT_5X5_100", "intrinsics_views": IntrinsicsConfig().num_views,
        "hand_eye_poses": HandEyeConfig().poses.num_poses, "hand_eye_intrinsics": "estimated (end to end)",
        "opencv": cv2.__version__, "machine": platform.platform(),
    }
    report["runs"] = {"intrinsics": [{k: v for k, v in r.items() if k not in ("K", "dist")} for r in intrinsics],
                      **hand_eye}

    for name in ("intrinsics", *hand_eye):
        print(f"{name:12s} " + "  ".join(f"{k} mean {v['mean']:.4f} max {v['max']:.4f}"
                                         for k, v in report[name].items()))
    print(f"acceptance: {'PASS' if report['acceptance']['pass'] else 'FAIL'} (worst {worst})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
