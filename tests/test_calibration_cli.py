"""``wovr calibrate intrinsics|hand-eye`` through the real command line, on the synthetic board camera and
the synthetic arm: results are written and usable; every refusal exits 2 with a clear line and writes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from calibration.ros_fields import camera_info_fields, static_transform_fields
from calibration.store import load_camera_calibration, load_latest
from calibration.synthetic import T_EE_CAM, SyntheticBoardCamera
from wovr_core.hardware.camera import CameraConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
FAST = ["--set", "motion.rate_hz=0", "--set", "motion.settle_s=0", "--set", "motion.frames_to_skip=0"]


def wovr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wovr_core.cli", "calibrate", *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=300, stdin=subprocess.DEVNULL)


def files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def test_intrinsics_then_hand_eye_write_versioned_results(tmp_path):
    camera = ["--camera", "synthetic_board", "--camera-name", "wrist", "--dir", str(tmp_path)]
    done = wovr("intrinsics", *camera)
    assert done.returncode == 0, done.stderr
    assert "view 30/30" in done.stdout and "vs factory: fx" in done.stdout
    intrinsics = load_latest(tmp_path, "wrist")
    K_true = SyntheticBoardCamera(CameraConfig(width=640, height=480)).K
    assert abs(intrinsics["K"][0][0] / K_true[0, 0] - 1) < 0.005
    assert intrinsics["camera_device"]["type"] == "synthetic_board" and intrinsics["source"] == "charuco"

    done = wovr("hand-eye", *camera, "--arm", "synthetic", "--setup", "eye-in-hand", "--yes", *FAST)
    assert done.returncode == 0, done.stderr
    assert "pose 15/15" in done.stdout and "wrote" in done.stdout
    calibration = load_camera_calibration(tmp_path, "wrist", need_hand_eye=True)
    hand_eye = calibration.hand_eye
    assert hand_eye["intrinsics_id"] == intrinsics["calibration_id"]
    # end to end, with estimated intrinsics: still well inside the acceptance bounds
    assert np.linalg.norm(np.array(hand_eye["T_camera"])[:3, 3] - T_EE_CAM[:3, 3]) < 0.002
    tf = static_transform_fields(hand_eye)
    assert (tf["header"]["frame_id"], tf["child_frame_id"]) == ("ee", "wrist_optical_frame")
    assert camera_info_fields(calibration.intrinsics)["calibration_id"] == intrinsics["calibration_id"]


def test_hand_eye_without_intrinsics_is_refused_before_anything_moves(tmp_path):
    done = wovr("hand-eye", "--camera", "synthetic_board", "--camera-name", "wrist", "--dir", str(tmp_path),
                "--arm", "synthetic", "--yes")
    assert done.returncode == 2
    assert "no intrinsics calibration for camera 'wrist'" in done.stderr
    assert "wovr calibrate intrinsics" in done.stderr and "Traceback" not in done.stderr
    assert files(tmp_path) == []


def test_board_not_found_exits_2_and_writes_nothing(tmp_path):
    done = wovr("intrinsics", "--camera", "synthetic_board", "--dir", str(tmp_path),
                "--camera-options", "{board_visible: false}", "--set", "max_frames=20")
    assert done.returncode == 2
    assert "found with >= 12 corners in only 0 of 20 frames" in done.stderr
    assert files(tmp_path) == []


def test_degenerate_planned_poses_and_unconfirmed_motion_are_refused(tmp_path):
    camera = ["--camera", "synthetic_board", "--dir", str(tmp_path)]
    assert wovr("intrinsics", *camera, "--from-factory").returncode == 0
    assert load_latest(tmp_path, "synthetic_board")["source"] == "factory"
    before = files(tmp_path)

    tiny_tilts = ["--set", "poses.min_rotation_deg=0", "--set", "poses.max_rotation_deg=2"]
    done = wovr("hand-eye", *camera, "--arm", "synthetic", "--yes", *FAST, *tiny_tilts)
    assert done.returncode == 2 and "planned poses" in done.stderr and "barely rotate" in done.stderr

    done = wovr("hand-eye", *camera, "--arm", "synthetic", "--yes", *FAST, "--camera-options", "{board_visible: false}")
    assert done.returncode == 2 and "board is not visible from the start pose" in done.stderr

    done = wovr("hand-eye", *camera, "--arm", "synthetic", *FAST)  # no --yes, no terminal
    assert done.returncode == 2 and "pass --yes" in done.stderr
    assert files(tmp_path) == before
