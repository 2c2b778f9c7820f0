"""Versioned calibration files: never overwritten, a ``latest`` pointer per kind, a content-hash id.

Layout::

    <dir>/<camera>/intrinsics-20261124T101500Z-3f2a9c1e.json
    <dir>/<camera>/intrinsics.latest           # holds the file name of the current one (replaced atomically)
    <dir>/<camera>/hand_eye-20261124T103000Z-9b1d0e77.json
    <dir>/<camera>/hand_eye.latest

``calibration_id`` is a hash of the file's content, so an episode that records it names exactly the numbers
it was recorded with. Loading never falls back to defaults: missing, stale, corrupt or inconsistent files
raise errors that name the path and say which command fixes them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.errors import CalibrationFileError, CalibrationMissingError, CalibrationStaleError

SCHEMA_VERSION = 1
KINDS = ("intrinsics", "hand_eye")
ENV_DIR = "WOVR_CALIBRATION_DIR"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMMANDS = {"intrinsics": "wovr calibrate intrinsics", "hand_eye": "wovr calibrate hand-eye"}


def default_directory() -> Path:
    """``$WOVR_CALIBRATION_DIR``, else ``~/.config/wovr/calibration``."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path.home() / ".config" / "wovr" / "calibration"


def _check_name(camera: str, kind: str) -> None:
    if not _SAFE_NAME.match(camera):
        raise ValueError(f"camera name {camera!r} must be letters, digits, '_', '.', '-' (it names a folder)")
    if kind not in KINDS:
        raise ValueError(f"calibration kind must be one of {KINDS}, got {kind!r}")


def _canonical(payload: dict) -> bytes:
    body = {k: v for k, v in payload.items() if k != "calibration_id"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def calibration_id(payload: dict) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON content (without the id itself)."""
    return hashlib.sha256(_canonical(payload)).hexdigest()[:16]


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_calibration(directory: str | Path, camera: str, kind: str, result: dict,
                     now: dt.datetime | None = None) -> Path:
    """Write a new version and point ``<kind>.latest`` at it; returns the new file's path."""
    _check_name(camera, kind)
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    payload = _json_ready({"schema_version": SCHEMA_VERSION, "kind": kind, "camera": camera,
                           "created_utc": now.isoformat(timespec="seconds"), **result})
    try:
        payload["calibration_id"] = calibration_id(payload)
    except ValueError as e:  # NaN/inf: refuse before anything is written
        raise CalibrationFileError(f"refusing to write a {kind} calibration of {camera!r} holding NaN or "
                                   f"infinite values ({e})") from None
    folder = Path(directory) / camera
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{now.strftime('%Y%m%dT%H%M%SZ')}-{payload['calibration_id'][:8]}.json"
    _atomic_write(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    _atomic_write(folder / f"{kind}.latest", path.name + "\n")
    return path


def load_calibration(path: str | Path) -> dict:
    """Read and verify one calibration file (JSON, schema, id matches content)."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationMissingError(f"calibration file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CalibrationFileError(f"{path}: not a readable calibration file ({e})") from None
    if not isinstance(payload, dict) or payload.get("kind") not in KINDS or "calibration_id" not in payload:
        raise CalibrationFileError(f"{path}: not a calibration file (missing kind/calibration_id)")
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise CalibrationFileError(f"{path}: schema_version {payload.get('schema_version')!r}, this wovr reads "
                                   f"{SCHEMA_VERSION}")
    if calibration_id(payload) != payload["calibration_id"]:
        raise CalibrationFileError(f"{path}: content does not match its calibration_id "
                                   f"{payload['calibration_id']} (edited or truncated); recalibrate")
    return payload


def age_days(payload: dict, now: dt.datetime | None = None) -> float:
    created = dt.datetime.fromisoformat(payload["created_utc"])
    now = now or dt.datetime.now(dt.timezone.utc)
    return (now - created).total_seconds() / 86400.0


def latest_path(directory: str | Path, camera: str, kind: str = "intrinsics") -> Path:
    """Path of the current calibration file, or CalibrationMissingError naming what is missing."""
    _check_name(camera, kind)
    folder = Path(directory) / camera
    pointer = folder / f"{kind}.latest"
    hint = f"run `{_COMMANDS[kind]} --camera-name {camera} --dir {directory}`"
    if not pointer.exists():
        raise CalibrationMissingError(f"no {kind} calibration for camera {camera!r}: {pointer} does not exist; {hint}")
    name = pointer.read_text().strip()
    path = folder / name
    if not name or "/" in name or not path.exists():
        raise CalibrationMissingError(f"{pointer} points to {name!r}, which does not exist in {folder}; {hint}")
    return path


def load_latest(directory: str | Path, camera: str, kind: str = "intrinsics", max_age_days: float | None = None,
                now: dt.datetime | None = None) -> dict:
    """The current calibration of ``camera``; raises rather than returning anything made up."""
    path = latest_path(directory, camera, kind)
    payload = load_calibration(path)
    if payload.get("camera") != camera or payload.get("kind") != kind:
        raise CalibrationFileError(f"{path}: holds {payload.get('kind')} of camera {payload.get('camera')!r}, "
                                   f"expected {kind} of {camera!r}")
    age = age_days(payload, now)
    if max_age_days is not None and age > max_age_days:
        raise CalibrationStaleError(
            f"{kind} calibration of camera {camera!r} is {age:.1f} days old (limit {max_age_days:g}): {path}; "
            f"run `{_COMMANDS[kind]} --camera-name {camera} --dir {directory}` or raise the limit")
    return payload


def list_calibrations(directory: str | Path, camera: str, kind: str = "intrinsics") -> list[Path]:
    """All versions, oldest first."""
    _check_name(camera, kind)
    return sorted((Path(directory) / camera).glob(f"{kind}-*.json"))


def find_by_id(directory: str | Path, calibration_id_: str) -> dict:
    """The calibration with this id, e.g. the one an episode was recorded with."""
    for path in sorted(Path(directory).glob(f"*/*-{calibration_id_[:8]}.json")):
        payload = load_calibration(path)
        if payload["calibration_id"] == calibration_id_:
            return payload
    raise CalibrationMissingError(f"no calibration with id {calibration_id_} under {directory}")


@dataclass(frozen=True)
class CameraCalibration:
    """What a node needs for one camera: intrinsics and, when required, the hand-eye transform computed
    with exactly those intrinsics."""

    intrinsics: dict
    hand_eye: dict | None

    @property
    def ids(self) -> dict[str, str]:
        """The ids to store with each recorded episode."""
        ids = {"intrinsics": self.intrinsics["calibration_id"]}
        if self.hand_eye is not None:
            ids["hand_eye"] = self.hand_eye["calibration_id"]
        return ids


def load_camera_calibration(directory: str | Path, camera: str, max_age_days: float | None = None,
                            need_hand_eye: bool = False) -> CameraCalibration:
    """Load the current intrinsics (+ hand-eye); a hand-eye result made with older intrinsics counts as stale."""
    intrinsics = load_latest(directory, camera, "intrinsics", max_age_days)
    hand_eye = None
    if need_hand_eye:
        hand_eye = load_latest(directory, camera, "hand_eye", max_age_days)
        if hand_eye.get("intrinsics_id") != intrinsics["calibration_id"]:
            raise CalibrationStaleError(
                f"hand-eye calibration of camera {camera!r} ({latest_path(directory, camera, 'hand_eye')}) was "
                f"computed with intrinsics {hand_eye.get('intrinsics_id')}, but the current intrinsics are "
                f"{intrinsics['calibration_id']}; run `wovr calibrate hand-eye --camera-name {camera} --dir "
                f"{directory}` again")
    return CameraCalibration(intrinsics, hand_eye)
