"""Episode datasets: LeRobot v3-style files, written crash-safe, read with random access. Torch-free.

On-disk layout of a dataset folder::

    meta/info.json                          fps, cameras, per-frame features (FeatureSpec dicts), packing, totals
    meta/tasks.parquet                      task_index -> task (language instruction)
    meta/episodes/chunk-000/file-000.parquet  one row per episode: length, task, source, success,
                                            success_source, calibration_id, t0, extra (JSON), and where its
                                            frames are: data/{chunk,file}_index, data/{from,to}_row,
                                            videos/<cam>/{chunk,file}_index, videos/<cam>/{from,to}_frame
    meta/stats.json                         normalization stats of observation.state and action
    data/chunk-000/file-000.parquet         per-frame rows of up to ``episodes_per_file`` consecutive episodes
    videos/<camera>/chunk-000/file-000.mp4  the same episodes' frames, H.264 yuv420p, one mp4 per camera
    .wovr.lock                              held (flock) by the one writer; .staging/ holds the open episode

Per-frame columns: index (global), episode_index, frame_index, timestamp and timestamp.<camera> (seconds since
the episode's first step), observation.state (STATE_DIM float32), action (7 float32; ``action[t]`` LED TO
observation ``t``, ``action[0]`` = DUMMY_ACTION), is_keyframe, is_intervention, task_index, plus optional
numeric extras (``latency.*`` telemetry, ``joint_pos``...). Video frame ``k`` of an episode is its row ``k``.

The episode index is the commit point: an episode appears only once complete (see :mod:`.writer`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wovr_core.lazy import lazy_exports

# Exports load on first use so that light importers (the `wovr info` command plugin) do not pay for
# pyarrow and FFmpeg up front.
_EXPORTS = {
    "CODEBASE_VERSION": "layout", "DatasetLock": "lock",
    "Clip": "reader", "Episode": "reader", "EpisodeDataset": "reader", "FrameSample": "reader",
    "EPISODE_SOURCES": "schema", "SUCCESS_SOURCES": "schema", "DatasetInfo": "schema", "EpisodeMeta": "schema",
    "FileSpan": "schema", "FeatureStats": "stats", "NormStats": "stats", "compute_stats": "stats",
    "ValidationReport": "validate", "validate_dataset": "validate", "VideoConfig": "video", "psnr": "video",
    "EpisodeWriter": "writer", "WriterConfig": "writer", "atomic_write_json": "_fsio",
}

if TYPE_CHECKING:
    from ._fsio import atomic_write_json
    from .layout import CODEBASE_VERSION
    from .lock import DatasetLock
    from .reader import Clip, Episode, EpisodeDataset, FrameSample
    from .schema import EPISODE_SOURCES, SUCCESS_SOURCES, DatasetInfo, EpisodeMeta, FileSpan
    from .stats import FeatureStats, NormStats, compute_stats
    from .validate import ValidationReport, validate_dataset
    from .video import VideoConfig, psnr
    from .writer import EpisodeWriter, WriterConfig


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "CODEBASE_VERSION",
    "EPISODE_SOURCES",
    "SUCCESS_SOURCES",
    "Clip",
    "DatasetInfo",
    "DatasetLock",
    "Episode",
    "EpisodeDataset",
    "EpisodeMeta",
    "EpisodeWriter",
    "FeatureStats",
    "FileSpan",
    "FrameSample",
    "NormStats",
    "ValidationReport",
    "VideoConfig",
    "WriterConfig",
    "atomic_write_json",
    "compute_stats",
    "psnr",
    "validate_dataset",
]
