"""Calibration results as plain dicts shaped like ROS messages, so ROS nodes fill messages without math.

``camera_info_fields`` -> the fields of ``sensor_msgs/msg/CameraInfo``; ``static_transform_fields`` -> those of
``geometry_msgs/msg/TransformStamped`` for ``/tf_static``. Both take payloads from ``calibration.store``.
"""

from __future__ import annotations

import numpy as np

from calibration.errors import CalibrationFileError
from calibration.geometry import matrix_to_quat

# the image_pipeline names for OpenCV's 5- and 8-coefficient models
_ROS_DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8}


def optical_frame(camera: str) -> str:
    """REP 103 optical frame name (z forward, x right, y down: OpenCV's camera frame)."""
    return f"{camera}_optical_frame"


def camera_info_fields(intrinsics: dict, frame_id: str | None = None,
                       image_size: tuple[int, int] | None = None) -> dict:
    """CameraInfo fields for an unrectified monocular camera: R = I, P = [K | 0].

    ``image_size`` (width, height) is what the camera streams now; a different size than calibrated is an
    error, because K does not transfer between resolutions or crops.
    """
    width, height = int(intrinsics["width"]), int(intrinsics["height"])
    if image_size is not None and tuple(image_size) != (width, height):
        raise CalibrationFileError(
            f"intrinsics {intrinsics.get('calibration_id')} of camera {intrinsics.get('camera')!r} are for "
            f"{width}x{height}, the camera streams {image_size[0]}x{image_size[1]}; calibrate at this resolution")
    K = np.asarray(intrinsics["K"], dtype=np.float64)
    dist = [float(d) for d in intrinsics["dist"]]
    model = intrinsics.get("distortion_model", "plumb_bob")
    if model not in _ROS_DISTORTION_MODELS or len(dist) != _ROS_DISTORTION_MODELS[model]:
        raise CalibrationFileError(f"intrinsics {intrinsics.get('calibration_id')}: distortion model {model!r} "
                                   f"with {len(dist)} coefficients is not a ROS model")
    P = np.zeros((3, 4))
    P[:, :3] = K
    return {
        "header": {"frame_id": frame_id or optical_frame(intrinsics["camera"])},
        "width": width,
        "height": height,
        "distortion_model": model,
        "d": dist,
        "k": K.reshape(-1).tolist(),
        "r": np.eye(3).reshape(-1).tolist(),
        "p": P.reshape(-1).tolist(),
        "binning_x": 0,
        "binning_y": 0,
        "calibration_id": intrinsics["calibration_id"],
    }


def static_transform_fields(hand_eye: dict, parent_frame: str | None = None, child_frame: str | None = None) -> dict:
    """TransformStamped fields placing the camera's optical frame in its parent: the hand frame
    (eye-in-hand) or the robot base frame (eye-to-hand), as recorded by ``wovr calibrate hand-eye``."""
    T = np.asarray(hand_eye["T_camera"], dtype=np.float64)
    frames = hand_eye.get("frames") or {}
    if (parent_frame or frames.get("parent")) is None or (child_frame or frames.get("child")) is None:
        raise CalibrationFileError(f"hand-eye calibration {hand_eye.get('calibration_id')} names no frames; pass "
                                   f"parent_frame and child_frame")
    q = matrix_to_quat(T[:3, :3])
    return {
        "header": {"frame_id": parent_frame or frames["parent"]},
        "child_frame_id": child_frame or frames["child"],
        "transform": {
            "translation": {"x": float(T[0, 3]), "y": float(T[1, 3]), "z": float(T[2, 3])},
            "rotation": {"x": float(q[0]), "y": float(q[1]), "z": float(q[2]), "w": float(q[3])},
        },
        "calibration_id": hand_eye["calibration_id"],
    }
