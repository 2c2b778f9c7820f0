"""What a dataset holds: ``meta/info.json`` (:class:`DatasetInfo`), per-episode metadata (:class:`EpisodeMeta`)
and the columns of the per-frame parquet tables."""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from wovr_core.errors import DataError
from wovr_core.types import ACTION_DIM, EpisodeSource, FeatureSpec, SuccessLabelSource

from . import layout
from ._fsio import atomic_write_json
from .layout import FileId
from .video import VideoConfig

EPISODE_SOURCES: tuple[str, ...] = typing.get_args(EpisodeSource)
SUCCESS_SOURCES: tuple[str, ...] = typing.get_args(SuccessLabelSource)

# Per-frame columns every dataset has.
INDEX = "index"
EPISODE_INDEX = "episode_index"
FRAME_INDEX = "frame_index"
TIMESTAMP = "timestamp"
STATE = "observation.state"
ACTION = "action"
IS_KEYFRAME = "is_keyframe"
IS_INTERVENTION = "is_intervention"
TASK_INDEX = "task_index"
# Optional extra feature: the success predicate at each frame (1.0 where the task is accomplished).
SUCCESS_COLUMN = "success"

ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
STATE_NAMES_8 = ("eef_x", "eef_y", "eef_z", "eef_ax", "eef_ay", "eef_az", "gripper_q0", "gripper_q1")


def camera_timestamp_key(camera: str) -> str:
    """Column with the capture time of ``camera``'s image, in seconds since the episode's ``t0``."""
    return f"{TIMESTAMP}.{camera}"


def image_key(camera: str) -> str:
    """Feature name of a camera stream (LeRobot's convention); its frames live in ``videos/<camera>/``."""
    return f"observation.images.{camera}"


def standard_features(cameras: dict[str, tuple[int, int]], state_dim: int) -> dict[str, FeatureSpec]:
    specs = [
        FeatureSpec(INDEX, (), "int64", "index"),
        FeatureSpec(EPISODE_INDEX, (), "int64", "index"),
        FeatureSpec(FRAME_INDEX, (), "int64", "index"),
        FeatureSpec(TIMESTAMP, (), "float64", "timestamp"),
        *[FeatureSpec(camera_timestamp_key(c), (), "float64", "timestamp") for c in cameras],
        FeatureSpec(STATE, (state_dim,), "float32", "state", STATE_NAMES_8 if state_dim == 8 else ()),
        FeatureSpec(ACTION, (ACTION_DIM,), "float32", "action", ACTION_NAMES),
        FeatureSpec(IS_KEYFRAME, (), "bool", "flag"),
        FeatureSpec(IS_INTERVENTION, (), "bool", "flag"),
        FeatureSpec(TASK_INDEX, (), "int64", "index"),
        *[FeatureSpec(image_key(c), (h, w, 3), "uint8", "video", ("height", "width", "channels"))
          for c, (h, w) in cameras.items()],
    ]
    return {s.name: s for s in specs}


@dataclass
class DatasetInfo:
    """Contents of ``meta/info.json``. ``total_*`` are a summary for humans and tools; the episode index
    (``meta/episodes/``) is the source of truth and the writer repairs the totals after a crash."""

    fps: float
    cameras: dict[str, tuple[int, int]]  # name -> (height, width)
    features: dict[str, FeatureSpec]
    video: VideoConfig = field(default_factory=VideoConfig)
    robot_type: str | None = None
    episodes_per_file: int = 20
    max_file_mb: float = 64.0
    files_per_chunk: int = 1000
    episodes_per_index_file: int = 1000
    total_episodes: int = 0
    total_frames: int = 0
    total_tasks: int = 0
    codebase_version: str = layout.CODEBASE_VERSION
    format_version: int = layout.FORMAT_VERSION

    @property
    def state_dim(self) -> int:
        return int(self.features[STATE].shape[0])

    @property
    def extra_features(self) -> dict[str, FeatureSpec]:
        """Optional numeric per-frame features (telemetry, joint positions...)."""
        standard = standard_features(self.cameras, self.state_dim)
        return {k: v for k, v in self.features.items() if k not in standard}

    def to_dict(self) -> dict[str, Any]:
        return {
            "codebase_version": self.codebase_version,
            "wovr_format_version": self.format_version,
            "robot_type": self.robot_type,
            "fps": self.fps,
            "total_episodes": self.total_episodes,
            "total_frames": self.total_frames,
            "total_tasks": self.total_tasks,
            "chunks_size": self.files_per_chunk,
            "episodes_per_file": self.episodes_per_file,
            "files_size_in_mb": self.max_file_mb,
            "episodes_per_index_file": self.episodes_per_index_file,
            "data_path": layout.DATA_PATH,
            "video_path": layout.VIDEO_PATH,
            "cameras": {name: {"height": h, "width": w} for name, (h, w) in self.cameras.items()},
            "video": {"codec": self.video.codec, "crf": self.video.crf, "preset": self.video.preset,
                      "gop": self.video.gop, "pix_fmt": self.video.pix_fmt},
            "features": {name: spec.to_dict() for name, spec in self.features.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetInfo:
        return cls(
            fps=d["fps"],
            cameras={name: (int(c["height"]), int(c["width"])) for name, c in d["cameras"].items()},
            features={name: FeatureSpec.from_dict(s) for name, s in d["features"].items()},
            video=VideoConfig(**d.get("video", {})),
            robot_type=d.get("robot_type"),
            episodes_per_file=int(d.get("episodes_per_file", 20)),
            max_file_mb=float(d.get("files_size_in_mb", 64.0)),
            files_per_chunk=int(d.get("chunks_size", 1000)),
            episodes_per_index_file=int(d.get("episodes_per_index_file", 1000)),
            total_episodes=int(d.get("total_episodes", 0)),
            total_frames=int(d.get("total_frames", 0)),
            total_tasks=int(d.get("total_tasks", 0)),
            codebase_version=d.get("codebase_version", layout.CODEBASE_VERSION),
            format_version=int(d.get("wovr_format_version", layout.FORMAT_VERSION)),
        )

    @classmethod
    def load(cls, root: Path) -> DatasetInfo:
        path = Path(root) / layout.INFO_PATH
        if not path.exists():
            raise DataError(f"{path}: not an episode dataset (meta/info.json is missing)")
        try:
            info = cls.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: corrupt dataset info ({type(e).__name__}: {e})") from e
        if info.format_version > layout.FORMAT_VERSION:
            raise DataError(f"{path}: written by a newer wovr (format {info.format_version}); upgrade wovr")
        return info

    def save(self, root: Path, durable: bool = True) -> None:
        atomic_write_json(Path(root) / layout.INFO_PATH, self.to_dict(), durable)


@dataclass(frozen=True)
class FileSpan:
    """Rows ``[start, end)`` of a data file, or frames ``[start, end)`` of a video file."""

    file: FileId
    start: int
    end: int


@dataclass(frozen=True)
class EpisodeMeta:
    """One row of the episode index: what the episode is and where its frames are."""

    episode_index: int
    length: int
    task: str
    task_index: int
    source: str
    success: bool | None
    success_source: str
    dataset_from_index: int  # global frame ``index`` of frame 0
    data: FileSpan
    videos: dict[str, FileSpan]
    calibration_id: str | None = None
    t0: float = 0.0  # time of frame 0 in the recorder's clock; per-frame timestamps are relative to it
    recorded_at: str = ""  # ISO-8601 UTC wall time of the commit
    num_keyframes: int = 0
    num_interventions: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def dataset_to_index(self) -> int:
        return self.dataset_from_index + self.length

    def to_row(self, fps: float) -> dict[str, Any]:
        row = {
            "episode_index": self.episode_index, "length": self.length, "task": self.task,
            "task_index": self.task_index, "source": self.source, "success": self.success,
            "success_source": self.success_source, "calibration_id": self.calibration_id,
            "dataset_from_index": self.dataset_from_index, "dataset_to_index": self.dataset_to_index,
            "data/chunk_index": self.data.file.chunk_index, "data/file_index": self.data.file.file_index,
            "data/from_row": self.data.start, "data/to_row": self.data.end,
        }
        for cam, span in self.videos.items():
            row.update({
                f"videos/{cam}/chunk_index": span.file.chunk_index, f"videos/{cam}/file_index": span.file.file_index,
                f"videos/{cam}/from_frame": span.start, f"videos/{cam}/to_frame": span.end,
                # LeRobot readers locate an episode in a video file by time
                f"videos/{cam}/from_timestamp": span.start / fps, f"videos/{cam}/to_timestamp": span.end / fps,
            })
        row.update({"t0": self.t0, "recorded_at": self.recorded_at, "num_keyframes": self.num_keyframes,
                    "num_interventions": self.num_interventions, "extra": json.dumps(self.extra, sort_keys=True)})
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any], cameras: typing.Iterable[str]) -> EpisodeMeta:
        success = row["success"]
        return cls(
            episode_index=int(row["episode_index"]), length=int(row["length"]), task=row["task"],
            task_index=int(row["task_index"]), source=row["source"],
            success=None if success is None else bool(success), success_source=row["success_source"],
            calibration_id=row.get("calibration_id"), dataset_from_index=int(row["dataset_from_index"]),
            data=FileSpan(FileId(int(row["data/chunk_index"]), int(row["data/file_index"])),
                          int(row["data/from_row"]), int(row["data/to_row"])),
            videos={c: FileSpan(FileId(int(row[f"videos/{c}/chunk_index"]), int(row[f"videos/{c}/file_index"])),
                                int(row[f"videos/{c}/from_frame"]), int(row[f"videos/{c}/to_frame"]))
                    for c in cameras},
            t0=float(row.get("t0") or 0.0), recorded_at=row.get("recorded_at") or "",
            num_keyframes=int(row.get("num_keyframes") or 0),
            num_interventions=int(row.get("num_interventions") or 0),
            extra=json.loads(row.get("extra") or "{}"),
        )


def episodes_schema(cameras: typing.Iterable[str]) -> pa.Schema:
    fields = [
        ("episode_index", pa.int64()), ("length", pa.int64()), ("task", pa.string()), ("task_index", pa.int64()),
        ("source", pa.string()), ("success", pa.bool_()), ("success_source", pa.string()),
        ("calibration_id", pa.string()), ("dataset_from_index", pa.int64()), ("dataset_to_index", pa.int64()),
        ("data/chunk_index", pa.int64()), ("data/file_index", pa.int64()),
        ("data/from_row", pa.int64()), ("data/to_row", pa.int64()),
    ]
    for cam in cameras:
        fields += [(f"videos/{cam}/chunk_index", pa.int64()), (f"videos/{cam}/file_index", pa.int64()),
                   (f"videos/{cam}/from_frame", pa.int64()), (f"videos/{cam}/to_frame", pa.int64()),
                   (f"videos/{cam}/from_timestamp", pa.float64()), (f"videos/{cam}/to_timestamp", pa.float64())]
    fields += [("t0", pa.float64()), ("recorded_at", pa.string()), ("num_keyframes", pa.int64()),
               ("num_interventions", pa.int64()), ("extra", pa.string())]
    return pa.schema(fields)


# ---- per-frame tables -------------------------------------------------------------------------------------

def frame_columns(info: DatasetInfo) -> list[FeatureSpec]:
    """Features stored in the parquet tables (everything except the video streams), in column order."""
    return [s for s in info.features.values() if s.kind != "video"]


def _arrow_type(spec: FeatureSpec) -> pa.DataType:
    scalar = pa.from_numpy_dtype(np.dtype(spec.dtype))
    size = int(np.prod(spec.shape)) if spec.shape else 0
    return pa.list_(scalar, size) if spec.shape else scalar


def frame_schema(info: DatasetInfo) -> pa.Schema:
    return pa.schema([(s.name, _arrow_type(s)) for s in frame_columns(info)])


def build_frame_table(info: DatasetInfo, columns: dict[str, np.ndarray]) -> pa.Table:
    """Arrow table from one numpy array per column ((T,) or (T, *shape)); vectors become fixed-size lists."""
    arrays = []
    for spec in frame_columns(info):
        values = np.asarray(columns[spec.name], dtype=np.dtype(spec.dtype))
        if spec.shape:
            size = int(np.prod(spec.shape))
            flat = pa.array(values.reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, size))
        else:
            arrays.append(pa.array(values))
    return pa.Table.from_arrays(arrays, schema=frame_schema(info))


def read_frame_columns(table: pa.Table, info: DatasetInfo, path: Path) -> dict[str, np.ndarray]:
    """Inverse of :func:`build_frame_table`; missing or mis-shaped columns raise DataError naming ``path``."""
    out: dict[str, np.ndarray] = {}
    n = table.num_rows
    for spec in frame_columns(info):
        if spec.name not in table.column_names:
            raise DataError(f"{path}: column {spec.name!r} is missing")
        column = table.column(spec.name).combine_chunks()
        try:
            if spec.shape:
                values = column.flatten().to_numpy(zero_copy_only=False)
                values = values.astype(np.dtype(spec.dtype), copy=False).reshape((n, *spec.shape))
            else:
                values = column.to_numpy(zero_copy_only=False).astype(np.dtype(spec.dtype), copy=False)
        except (ValueError, pa.ArrowException) as e:
            raise DataError(f"{path}: column {spec.name!r} does not match its feature spec {spec.to_dict()} "
                            f"({e})") from e
        out[spec.name] = values
    return out
