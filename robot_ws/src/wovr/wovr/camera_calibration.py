"""Where a camera node's CameraInfo comes from, and what it tells everyone about it (ROS-free).

``intrinsics_source``:

* ``calibration`` (default, real cameras): the current file of ``calibration.store`` for this camera name.
  Missing, stale (older than ``max_age_days``), corrupt or made at another resolution: with ``required``
  the node refuses to start with the store's message (which names the file and the command that fixes it);
  without it the node streams images but publishes NO CameraInfo and says why, loudly. Never a default K.
* ``device``: the intrinsics the device itself reports (the twin's exact pinhole model, or RealSense factory
  values); the status says so, and episodes record ``<camera>:device`` instead of a calibration id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from calibration import ros_fields, store
from calibration.errors import CalibrationFileError, CalibrationMissingError, CalibrationStaleError
from wovr_core.config import ConfigError


@dataclass
class CameraCalibrationStatus:
    """Published latched as JSON next to the camera's topics; the recorder stores ``episode_id`` per episode."""

    camera: str
    source: str  # calibration | device | none
    calibrated: bool
    ids: dict = field(default_factory=dict)  # {"intrinsics": id, "hand_eye": id}
    detail: str = ""
    camera_info: dict | None = None  # calibration.ros_fields.camera_info_fields(...)
    extrinsics: dict | None = None  # calibration.ros_fields.static_transform_fields(...)

    @property
    def episode_id(self) -> str:
        if self.source == "calibration" and self.ids:
            return f"{self.camera}:" + "+".join(self.ids[k] for k in ("intrinsics", "hand_eye") if k in self.ids)
        return f"{self.camera}:{self.source}"

    def to_json_dict(self) -> dict:
        return {"camera": self.camera, "source": self.source, "calibrated": self.calibrated, "ids": self.ids,
                "detail": self.detail, "episode_id": self.episode_id}


def resolve_calibration(camera: str, image_size: tuple[int, int], source: str, directory: str = "",
                        max_age_days: float = 0.0, required: bool = True, hand_eye: bool = False,
                        device_intrinsics: dict | None = None, frame_id: str | None = None) -> CameraCalibrationStatus:
    """Load the camera's calibration as configured; raises the store's errors (or ConfigError) when ``required``."""
    if source == "device":
        if device_intrinsics is None:
            raise ConfigError(f"camera {camera!r}: intrinsics_source=device, but the device reports no intrinsics")
        payload = {"camera": camera, "calibration_id": "device", "distortion_model": "plumb_bob",
                   **{k: device_intrinsics[k] for k in ("K", "dist", "width", "height")}}
        if "distortion_model" in device_intrinsics:
            payload["distortion_model"] = device_intrinsics["distortion_model"]
        info = ros_fields.camera_info_fields(payload, frame_id, image_size)
        origin = device_intrinsics.get("source", "the device")
        return CameraCalibrationStatus(camera, "device", True, detail=f"intrinsics reported by {origin}; not a "
                                       "calibration file", camera_info=info)
    if source != "calibration":
        raise ConfigError(f"intrinsics_source must be 'calibration' or 'device', got {source!r}")
    folder = Path(directory).expanduser() if directory else store.default_directory()
    try:
        loaded = store.load_camera_calibration(folder, camera, max_age_days or None, need_hand_eye=hand_eye)
        info = ros_fields.camera_info_fields(loaded.intrinsics, frame_id, image_size)
        extrinsics = ros_fields.static_transform_fields(loaded.hand_eye) if loaded.hand_eye else None
    except (CalibrationMissingError, CalibrationStaleError, CalibrationFileError) as exc:
        if required:
            raise
        return CameraCalibrationStatus(camera, "none", False, detail=f"NOT CALIBRATED, publishing no CameraInfo: "
                                       f"{exc}")
    age = store.age_days(loaded.intrinsics)
    return CameraCalibrationStatus(camera, "calibration", True, ids=loaded.ids,
                                   detail=f"{store.latest_path(folder, camera)} ({age:.1f} days old)",
                                   camera_info=info, extrinsics=extrinsics)

