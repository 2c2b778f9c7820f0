"""Versioned calibration files: content-hash ids, atomic latest pointer, and loud failures (missing, stale,
corrupt, edited, inconsistent) instead of defaults; plus the ROS message fields built from them."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from calibration.errors import CalibrationFileError, CalibrationMissingError, CalibrationStaleError
from calibration.geometry import make_transform, quat_to_matrix, rotvec_to_matrix
from calibration.ros_fields import camera_info_fields, static_transform_fields
from calibration.store import (
    calibration_id,
    find_by_id,
    latest_path,
    list_calibrations,
    load_camera_calibration,
    load_latest,
    save_calibration,
)
from wovr_core.errors import WovrError

K = [[600.0, 0.0, 319.5], [0.0, 601.0, 239.5], [0.0, 0.0, 1.0]]
INTRINSICS = {"K": K, "dist": [-0.05, 0.07, 0.0, 0.0, 0.0], "distortion_model": "plumb_bob",
              "width": 640, "height": 480, "rms_px": 0.1}
NOW = dt.datetime(2026, 11, 24, 10, 0, 0, tzinfo=dt.timezone.utc)


def hand_eye_payload(intrinsics_id: str) -> dict:
    T = make_transform(rotvec_to_matrix([0.1, -0.2, 1.5]), [0.05, -0.01, 0.04])
    return {"setup": "eye_in_hand", "T_camera": T.tolist(), "intrinsics_id": intrinsics_id,
            "frames": {"parent": "ee", "child": "wrist_optical_frame"}}


def test_save_then_load_latest_round_trips_with_a_content_hash_id(tmp_path):
    path = save_calibration(tmp_path, "wrist", "intrinsics", INTRINSICS, now=NOW)
    assert path.parent == tmp_path / "wrist" and path.name.startswith("intrinsics-20261124T100000Z-")
    loaded = load_latest(tmp_path, "wrist", now=NOW)
    assert loaded["K"] == K and loaded["camera"] == "wrist" and loaded["kind"] == "intrinsics"
    assert loaded["calibration_id"] == calibration_id(loaded) and loaded["calibration_id"][:8] in path.name
    assert not [p for p in path.parent.iterdir() if "tmp" in p.name]  # atomic writes leave no temp files


def test_new_versions_never_overwrite_old_ones(tmp_path):
    first = save_calibration(tmp_path, "wrist", "intrinsics", INTRINSICS, now=NOW)
    changed = {**INTRINSICS, "K": [[610.0, 0.0, 320.0], [0.0, 611.0, 240.0], [0.0, 0.0, 1.0]]}
    second = save_calibration(tmp_path, "wrist", "intrinsics", changed, now=NOW + dt.timedelta(days=1))
    assert list_calibrations(tmp_path, "wrist") == [first, second]
    assert latest_path(tmp_path, "wrist") == second
    old = json.loads(first.read_text())
    assert old["K"] == K and find_by_id(tmp_path, old["calibration_id"]) == old  # an episode's id still resolves
    assert load_latest(tmp_path, "wrist", now=NOW + dt.timedelta(days=1))["K"] == changed["K"]


def test_missing_calibration_names_the_path_and_the_command(tmp_path):
    with pytest.raises(CalibrationMissingError) as info:
        load_latest(tmp_path, "wrist")
    message = str(info.value)
    assert str(tmp_path / "wrist" / "intrinsics.latest") in message and "wovr calibrate intrinsics" in message
    assert isinstance(info.value, WovrError)
    with pytest.raises(CalibrationMissingError, match="no calibration with id"):
        find_by_id(tmp_path, "0123456789abcdef")


def test_stale_calibration_is_refused_with_its_age(tmp_path):
    path = save_calibration(tmp_path, "wrist", "intrinsics", INTRINSICS, now=NOW - dt.timedelta(days=40))
    with pytest.raises(CalibrationStaleError, match=r"40.0 days old \(limit 30\)") as info:
        load_latest(tmp_path, "wrist", max_age_days=30, now=NOW)
    assert str(path) in str(info.value)
    assert load_latest(tmp_path, "wrist", max_age_days=60, now=NOW)["K"] == K


def test_corrupt_or_edited_files_are_refused_and_named(tmp_path):
    path = save_calibration(tmp_path, "wrist", "intrinsics", INTRINSICS, now=NOW)
    text = path.read_text()
    path.write_text(text.replace("600.0", "650.0"))  # hand-edited focal length
    with pytest.raises(CalibrationFileError, match="does not match its calibration_id") as info:
        load_latest(tmp_path, "wrist")
    assert str(path) in str(info.value)
    path.write_text(text[: len(text) // 2])  # truncated by a crash or a bad copy
    with pytest.raises(CalibrationFileError, match="not a readable calibration file"):
        load_latest(tmp_path, "wrist")
    (tmp_path / "wrist" / "intrinsics.latest").write_text("intrinsics-gone.json\n")
    with pytest.raises(CalibrationMissingError, match="points to 'intrinsics-gone.json'"):
        load_latest(tmp_path, "wrist")


def test_non_finite_results_are_not_written(tmp_path):
    bad = {**INTRINSICS, "K": [[float("nan"), 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]}
    with pytest.raises(CalibrationFileError, match="NaN or infinite"):
        save_calibration(tmp_path, "wrist", "intrinsics", bad)
    assert not (tmp_path / "wrist").exists() or not any((tmp_path / "wrist").iterdir())


def test_hand_eye_made_with_older_intrinsics_is_stale(tmp_path):
    old = json.loads(save_calibration(tmp_path, "wrist", "intrinsics", INTRINSICS, now=NOW).read_text())
    save_calibration(tmp_path, "wrist", "hand_eye", hand_eye_payload(old["calibration_id"]), now=NOW)
    calibration = load_camera_calibration(tmp_path, "wrist", need_hand_eye=True)
    assert calibration.ids == {"intrinsics": old["calibration_id"],
                               "hand_eye": calibration.hand_eye["calibration_id"]}
    save_calibration(tmp_path, "wrist", "intrinsics", {**INTRINSICS, "rms_px": 0.2}, now=NOW)
    with pytest.raises(CalibrationStaleError, match="computed with intrinsics"):
        load_camera_calibration(tmp_path, "wrist", need_hand_eye=True)
    assert load_camera_calibration(tmp_path, "wrist").hand_eye is None  # intrinsics alone are still fine


def test_camera_info_fields_follow_the_ros_message_layout(tmp_path):
    save_calibration(tmp_path, "wrist", "intrinsics", INTRINSICS)
    info = camera_info_fields(load_latest(tmp_path, "wrist"), image_size=(640, 480))
    assert info["header"]["frame_id"] == "wrist_optical_frame"
    assert (info["width"], info["height"], info["distortion_model"]) == (640, 480, "plumb_bob")
    assert info["k"] == [v for row in K for v in row] and len(info["d"]) == 5
    assert info["r"] == np.eye(3).reshape(-1).tolist()
    P = np.array(info["p"]).reshape(3, 4)
    np.testing.assert_allclose(P[:, :3], K)
    np.testing.assert_allclose(P[:, 3], 0)
    with pytest.raises(CalibrationFileError, match="are for 640x480, the camera streams 1280x720"):
        camera_info_fields(load_latest(tmp_path, "wrist"), image_size=(1280, 720))


def test_static_transform_fields_reproduce_the_calibrated_transform(tmp_path):
    payload = hand_eye_payload("x")
    save_calibration(tmp_path, "wrist", "hand_eye", payload)
    tf = static_transform_fields(load_latest(tmp_path, "wrist", "hand_eye"))
    assert tf["header"]["frame_id"] == "ee" and tf["child_frame_id"] == "wrist_optical_frame"
    t, q = tf["transform"]["translation"], tf["transform"]["rotation"]
    T = np.array(payload["T_camera"])
    np.testing.assert_allclose([t["x"], t["y"], t["z"]], T[:3, 3])
    np.testing.assert_allclose(quat_to_matrix(np.array([q["x"], q["y"], q["z"], q["w"]])), T[:3, :3], atol=1e-12)
    assert static_transform_fields(load_latest(tmp_path, "wrist", "hand_eye"), parent_frame="fr3_hand")[
        "header"]["frame_id"] == "fr3_hand"
