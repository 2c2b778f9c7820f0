"""Append-only, crash-safe episode writer.

Life of an episode: ``start_episode`` opens a staging folder ``<root>/.staging/<id>/`` and one streaming
H.264 encoder per camera; ``add_frame`` validates everything first (a bad frame is refused with ValueError
and the episode goes on), then encodes the images and keeps the small per-frame values in memory;
``end_episode`` commits:

1. the episode's rows are appended to the current data file and its staged videos to the current video
   files (rewritten to a temp file + fsync + rename: the previous version stays valid until the rename);
2. a new task goes into ``meta/tasks.parquet`` (same way);
3. its row is appended to the episode index (same way). THIS is the commit point: readers only look at
   indexed ranges, so anything a crash leaves behind earlier is invisible and overwritten by the next commit;
4. ``meta/info.json`` totals are refreshed and the staging folder is removed.

A writer killed mid-episode leaves its staging folder behind. The next writer to open the dataset discards
it with a warning: the staged mp4 has no index until its encoder is closed, so the partial episode is not
recoverable. Every committed episode stays readable.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from wovr_core.config import did_you_mean
from wovr_core.errors import DataError
from wovr_core.types import ACTION_DIM, DUMMY_ACTION, STATE_DIM, FeatureSpec

from . import layout, schema
from ._fsio import (
    commit_file,
    is_tmp_path,
    parquet_num_rows,
    read_parquet,
    tmp_path_for,
    write_parquet_atomic,
)
from .index import load_episodes, load_tasks, write_episodes_file, write_tasks
from .layout import FileId
from .lock import DatasetLock
from .schema import DatasetInfo, EpisodeMeta, FileSpan
from .video import VideoConfig, VideoEncoder, codec_signature, concat_videos

log = logging.getLogger(__name__)


@dataclass
class WriterConfig:
    """How a new dataset packs episodes into files. Stored in ``meta/info.json`` at creation; a writer that
    reopens the dataset keeps the stored packing and video settings (so files stay concatenable)."""

    episodes_per_file: int = 20
    # Appending re-writes the current file, so this also bounds the I/O of one ``end_episode``.
    max_file_mb: float = 64.0
    files_per_chunk: int = 1000
    episodes_per_index_file: int = 1000
    video: VideoConfig = field(default_factory=VideoConfig)
    durable: bool = True  # fsync every commit; turn off only for scratch data
    update_stats_on_close: bool = True  # recompute meta/stats.json when a session added episodes


@dataclass
class _OpenEpisode:
    id: str
    task: str
    source: str
    calibration_id: str | None
    extra: dict
    success: bool | None
    success_source: str
    staging: Path
    encoders: dict[str, VideoEncoder]
    columns: dict[str, list] = field(default_factory=dict)
    t0: float | None = None
    uses_t: bool | None = None
    last_t: float | None = None
    pending_keyframe: bool = False
    videos_closed: bool = False
    broken: str = ""  # set when an encoder failed mid-frame: the cameras' frame counts may disagree

    @property
    def num_frames(self) -> int:
        return len(self.columns.get(schema.FRAME_INDEX, ()))


class EpisodeWriter:
    """Records episodes into a dataset folder (created on first use), one writer at a time.

    ::

        with EpisodeWriter(root, fps=10, cameras={"agentview": (128, 128)}) as writer:
            writer.start_episode("put the bowl on the plate", source="teleop")
            writer.add_frame({"agentview": rgb}, state, action=None)   # action[0] is the dummy action
            writer.add_frame({"agentview": rgb}, state, action)       # action that LED TO this frame
            writer.set_success(True, "operator")
            index = writer.end_episode()

    ``fps`` and ``cameras`` (name -> (height, width)) are required to create a dataset and must match when
    reopening one. ``extra_features`` declares optional numeric per-frame features (name -> shape or
    FeatureSpec); when omitted, the extras passed with the first frame of a new dataset define them.
    Closing with an episode still open discards it (as a crash would).
    """

    def __init__(self, root: str | Path, *, fps: float | None = None,
                 cameras: Mapping[str, tuple[int, int]] | None = None, state_dim: int = STATE_DIM,
                 extra_features: Mapping[str, Any] | None = None, robot_type: str | None = None,
                 config: WriterConfig | None = None):
        self.root = Path(root)
        _refuse_foreign_folder(self.root)
        self._lock = DatasetLock(self.root)
        self._lock.acquire()
        try:
            self._open(fps, cameras, state_dim, extra_features, robot_type, config)
        except BaseException:
            self._lock.release()
            raise
        self._episode: _OpenEpisode | None = None
        self._added_this_session = 0

    # ---- opening -----------------------------------------------------------------------------------------

    def _open(self, fps, cameras, state_dim, extra_features, robot_type, config) -> None:
        info_path = self.root / layout.INFO_PATH
        user_config = config
        config = config or WriterConfig()
        if info_path.exists():
            info = DatasetInfo.load(self.root)
            if fps is not None and float(fps) != float(info.fps):
                raise DataError(f"{info_path}: dataset records at {info.fps} fps, writer asked for {fps}")
            if cameras is not None and {k: tuple(v) for k, v in cameras.items()} != info.cameras:
                raise DataError(f"{info_path}: dataset cameras are {info.cameras}, writer asked for {dict(cameras)}")
            if info.state_dim != state_dim:
                raise DataError(f"{info_path}: dataset state_dim is {info.state_dim}, writer asked for {state_dim}")
            if extra_features:
                wanted = _extra_specs(extra_features)
                if any(info.extra_features.get(k) != v for k, v in wanted.items()):
                    raise DataError(f"{info_path}: dataset extra features are "
                                    f"{[s.to_dict() for s in info.extra_features.values()]}, writer asked for "
                                    f"{[s.to_dict() for s in wanted.values()]}")
            stored = (info.episodes_per_file, info.max_file_mb, info.files_per_chunk, info.video)
            if user_config is not None and stored != (config.episodes_per_file, config.max_file_mb,
                                                      config.files_per_chunk, config.video):
                log.warning("%s: keeping the dataset's stored packing/video settings, not the writer config's",
                            info_path)
        else:
            if fps is None or not cameras:
                raise ValueError(f"{self.root} is not a dataset yet: pass fps= and cameras= to create it")
            cams = {str(k): (int(v[0]), int(v[1])) for k, v in cameras.items()}
            for name, (h, w) in cams.items():
                if h % 2 or w % 2 or h <= 0 or w <= 0:
                    raise ValueError(f"camera {name!r}: H.264/yuv420p needs positive even sizes, got {h}x{w}")
            features = schema.standard_features(cams, state_dim)
            features.update(_extra_specs(extra_features or {}))
            info = DatasetInfo(fps=float(fps), cameras=cams, features=features, video=config.video,
                               robot_type=robot_type, episodes_per_file=config.episodes_per_file,
                               max_file_mb=config.max_file_mb, files_per_chunk=config.files_per_chunk,
                               episodes_per_index_file=config.episodes_per_index_file)
            info.save(self.root, config.durable)
        self.info = info
        self._durable = config.durable
        self._update_stats = config.update_stats_on_close
        self._extras_declared = bool(info.extra_features) or extra_features is not None
        self._recover()

    def _recover(self) -> None:
        """Clean what a crashed writer left behind; fix info.json totals from the index."""
        staging = self.root / layout.STAGING_DIR
        if staging.exists():
            for leftover in sorted(staging.iterdir()):
                described = ""
                try:
                    meta = json.loads((leftover / "episode.json").read_text())
                    described = (f" (task {meta.get('task')!r}, source {meta.get('source')}, started by pid "
                                 f"{meta.get('pid')} at {meta.get('started_at')})")
                except (OSError, ValueError):
                    pass
                log.warning("%s: discarding a partial episode left by a writer that did not finish it%s",
                            leftover, described)
                shutil.rmtree(leftover, ignore_errors=True)
        for sub in ("data", "videos", "meta"):
            for path in (self.root / sub).rglob(".*"):
                if is_tmp_path(path):
                    path.unlink(missing_ok=True)
        self._episodes = load_episodes(self.root, list(self.info.cameras))
        self._tasks = load_tasks(self.root)
        for ep in self._episodes:
            if ep.task_index >= len(self._tasks) or self._tasks[ep.task_index] != ep.task:
                raise DataError(f"{self.root / layout.TASKS_PATH}: task {ep.task_index} does not match "
                                f"episode {ep.episode_index}'s task {ep.task!r}")
        self._total_frames = self._episodes[-1].dataset_to_index if self._episodes else 0
        totals = (len(self._episodes), self._total_frames, len(self._tasks))
        if totals != (self.info.total_episodes, self.info.total_frames, self.info.total_tasks):
            if self.info.total_episodes:
                log.warning("%s: totals were stale (a writer crashed mid-commit); repaired from the episode index",
                            self.root / layout.INFO_PATH)
            self._save_info()

    # ---- recording ---------------------------------------------------------------------------------------

    @property
    def num_episodes(self) -> int:
        """Committed episodes (the next episode gets this index)."""
        return len(self._episodes)

    @property
    def recording(self) -> bool:
        return self._episode is not None

    @property
    def num_frames(self) -> int:
        """Frames added to the open episode so far."""
        return self._episode.num_frames if self._episode else 0

    def start_episode(self, task: str, source: str = "teleop", *, calibration_id: str | None = None,
                      success: bool | None = None, success_source: str = "none",
                      extra: Mapping[str, Any] | None = None) -> None:
        """Open a new episode. ``source``: teleop | policy | scripted | imagined. ``extra``: JSON-able metadata."""
        self._check_open()
        if self._episode is not None:
            raise RuntimeError("an episode is already open: call end_episode() or discard_episode() first")
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task must be a non-empty language instruction, got {task!r}")
        _check_choice("source", source, schema.EPISODE_SOURCES)
        _check_choice("success_source", success_source, schema.SUCCESS_SOURCES)
        if (success is None) != (success_source == "none"):
            raise ValueError("give success together with its success_source (operator | sim_predicate | "
                             f"reward_model), got success={success!r}, success_source={success_source!r}")
        extra = dict(extra or {})
        try:
            json.dumps(extra)
        except TypeError as e:
            raise ValueError(f"episode extra must be JSON-serialisable: {e}") from e
        ep_id = uuid.uuid4().hex[:12]
        staging = self.root / layout.STAGING_DIR / ep_id
        staging.mkdir(parents=True)
        (staging / "episode.json").write_text(json.dumps({
            "task": task, "source": source, "pid": os.getpid(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        encoders: dict[str, VideoEncoder] = {}
        try:
            for cam, (h, w) in self.info.cameras.items():
                encoders[cam] = VideoEncoder(staging / f"{cam}.mp4", h, w, self.info.fps, self.info.video)
        except Exception:
            for enc in encoders.values():
                enc.abort()
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._episode = _OpenEpisode(ep_id, task, source, calibration_id, extra, success, success_source,
                                     staging, encoders)

    def add_frame(self, images: Mapping[str, np.ndarray], state: np.ndarray, action: np.ndarray | None = None,
                  timestamps: Mapping[str, float] | None = None, is_keyframe: bool = False,
                  is_intervention: bool = False, *, t: float | None = None,
                  extras: Mapping[str, Any] | None = None, **extra_values: Any) -> int:
        """Append one control step; returns its ``frame_index``.

        ``images``: camera -> (H, W, 3) uint8 RGB, every camera. ``action``: the action that LED TO this
        observation (None or DUMMY_ACTION on frame 0). ``t``: time of this step and ``timestamps``: capture
        time per camera, both in one clock (seconds); they are stored relative to the episode's first step.
        Without ``t`` the step time is ``frame_index / fps``. Extra features come as keywords or ``extras``.
        """
        ep = self._require_episode()
        frame_index = ep.num_frames
        values = dict(extras or {}, **extra_values)
        if frame_index == 0:  # the episode's time origin
            t0 = float(t) if t is not None else float(min(timestamps.values())) if timestamps else 0.0
        else:
            t0 = ep.t0
        row = self._validated_row(ep, frame_index, images, state, action, timestamps, t, t0, values)
        row[schema.IS_KEYFRAME] = bool(is_keyframe) or ep.pending_keyframe
        row[schema.IS_INTERVENTION] = bool(is_intervention)
        try:
            for cam, enc in ep.encoders.items():
                enc.add(images[cam])
        except Exception as e:
            ep.broken = f"encoding frame {frame_index} failed ({type(e).__name__}: {e})"
            raise DataError(f"{ep.staging}: {ep.broken}; discard_episode() and start again") from e
        ep.pending_keyframe = False
        if frame_index == 0:
            ep.uses_t, ep.t0 = t is not None, t0
        if t is not None:
            ep.last_t = float(t)
        for key, value in row.items():
            ep.columns.setdefault(key, []).append(value)
        return frame_index

    def mark_keyframe(self) -> None:
        """Flag the latest frame as a keyframe (task-critical state, e.g. the operator's button); before the
        first frame, the flag goes to the first frame."""
        ep = self._require_episode()
        if ep.num_frames:
            ep.columns[schema.IS_KEYFRAME][-1] = True
        else:
            ep.pending_keyframe = True

    def set_success(self, success: bool | None, source: str = "operator") -> None:
        """Label the open episode (``None`` = unknown). ``source``: operator | sim_predicate | reward_model."""
        ep = self._require_episode()
        _check_choice("success_source", source, schema.SUCCESS_SOURCES)
        if success is not None and source == "none":
            raise ValueError("a success label needs its source: operator | sim_predicate | reward_model")
        ep.success = None if success is None else bool(success)
        ep.success_source = "none" if success is None else source

    def end_episode(self) -> int:
        """Commit the open episode and return its index. If the commit fails (e.g. disk full) the episode
        stays open and staged, so ``end_episode`` can be retried."""
        ep = self._require_episode()
        if ep.num_frames == 0:
            raise ValueError("the episode has no frames; add frames or call discard_episode()")
        if not ep.videos_closed:
            for enc in ep.encoders.values():
                enc.close()
            ep.videos_closed = True
        index = self._commit(ep)
        shutil.rmtree(ep.staging, ignore_errors=True)
        self._episode = None
        self._added_this_session += 1
        return index

    def discard_episode(self) -> None:
        """Drop the open episode (nothing of it is kept)."""
        ep = self._episode
        if ep is None:
            return
        for enc in ep.encoders.values():
            enc.abort()
        shutil.rmtree(ep.staging, ignore_errors=True)
        self._episode = None
        log.info("discarded an episode of %d frames (task %r)", ep.num_frames, ep.task)

    def close(self) -> None:
        """Discard any open episode (warning), refresh ``meta/stats.json``, release the lock."""
        if not self._lock.held:
            return
        try:
            if self._episode is not None:
                log.warning("closing the writer with an open episode of %d frames: discarded (call end_episode() "
                            "to keep it)", self._episode.num_frames)
                self.discard_episode()
            if self._update_stats and self._added_this_session:
                self.write_stats()
        finally:
            self._lock.release()

    def write_stats(self) -> None:
        """Recompute normalization stats over all readable episodes into ``meta/stats.json``."""
        from .reader import EpisodeDataset
        from .stats import compute_stats

        try:
            dataset = EpisodeDataset(self.root, on_error="skip")
            compute_stats(dataset).to_json(self.root / layout.STATS_PATH)
        except (DataError, ValueError) as e:  # e.g. only one-frame episodes: no actions to describe yet
            log.warning("could not update %s: %s", self.root / layout.STATS_PATH, e)

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    # ---- internals ---------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._lock.held:
            raise RuntimeError("the writer is closed")

    def _require_episode(self) -> _OpenEpisode:
        self._check_open()
        if self._episode is None:
            raise RuntimeError("no open episode: call start_episode() first")
        if self._episode.broken:
            raise DataError(f"{self._episode.staging}: the open episode is unusable ({self._episode.broken}); "
                            "call discard_episode()")
        return self._episode

    def _validated_row(self, ep: _OpenEpisode, frame_index: int, images, state, action, timestamps, t,
                       t0: float, values: dict) -> dict[str, Any]:
        info = self.info
        if set(images) != set(info.cameras):
            raise ValueError(f"images must have exactly the cameras {sorted(info.cameras)}, got {sorted(images)}")
        for cam, (h, w) in info.cameras.items():
            img = images[cam]
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.shape != (h, w, 3):
                raise ValueError(f"camera {cam!r}: expected a ({h}, {w}, 3) uint8 RGB array, got "
                                 f"{getattr(img, 'shape', type(img))} {getattr(img, 'dtype', '')}")
        state = np.asarray(state, dtype=np.float32)
        if state.shape != (info.state_dim,) or not np.isfinite(state).all():
            raise ValueError(f"state must be {info.state_dim} finite floats, got {state.tolist()}")
        if frame_index == 0:
            if action is not None and not np.array_equal(np.asarray(action, np.float32), DUMMY_ACTION):
                raise ValueError("action[0] must be None or DUMMY_ACTION: action[t] is the action that LED TO "
                                 f"observation t, and nothing led to the first one (got {np.asarray(action)})")
            action = DUMMY_ACTION
        if action is None:
            raise ValueError("action is required after the first frame (the action that led to this observation)")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (ACTION_DIM,) or not np.isfinite(action).all():
            raise ValueError(f"action must be {ACTION_DIM} finite floats, got {action.tolist()}")
        if timestamps is not None and set(timestamps) - set(info.cameras):
            raise ValueError(f"timestamps has unknown cameras {sorted(set(timestamps) - set(info.cameras))}")
        if frame_index > 0 and (t is not None) != ep.uses_t:
            raise ValueError("pass t= on every frame of an episode or on none")
        if t is not None and ep.last_t is not None and not float(t) > ep.last_t:
            raise ValueError(f"t must increase within an episode: {t} after {ep.last_t}")

        row: dict[str, Any] = {schema.FRAME_INDEX: frame_index, schema.STATE: state, schema.ACTION: action}
        step_time = float(t) - t0 if t is not None else frame_index / info.fps
        row[schema.TIMESTAMP] = step_time
        for cam in info.cameras:
            given = (timestamps or {}).get(cam)
            row[schema.camera_timestamp_key(cam)] = step_time if given is None else float(given) - t0
        row.update(self._validated_extras(values))
        return row

    def _validated_extras(self, values: dict[str, Any]) -> dict[str, Any]:
        declared = self.info.extra_features
        unknown = set(values) - set(declared)
        if unknown and not self._extras_declared and not self._episodes and self._episode.num_frames == 0:
            # First frame of a new dataset: its extras define the schema.
            self.info.features.update(_extra_specs({k: _infer_spec(k, values[k]) for k in sorted(unknown)}))
            declared = self.info.extra_features
            unknown = set()
        if unknown:
            name = sorted(unknown)[0]
            raise ValueError(f"unknown extra feature {name!r}; this dataset declares {sorted(declared)}."
                             + did_you_mean(name, declared))
        out = {}
        for name, spec in declared.items():
            dtype = np.dtype(spec.dtype)
            if name not in values:
                if dtype.kind != "f":
                    raise ValueError(f"extra feature {name!r} ({spec.dtype}) is missing and cannot be NaN")
                out[name] = np.full(spec.shape, np.nan, dtype)
                continue
            value = np.asarray(values[name])
            if value.shape != spec.shape:
                raise ValueError(f"extra feature {name!r} must have shape {spec.shape}, got {value.shape}")
            try:
                out[name] = value.astype(dtype, casting="same_kind" if dtype.kind == "f" else "safe")
            except TypeError as e:
                raise ValueError(f"extra feature {name!r} must be {spec.dtype}, got {value.dtype}") from e
        return out

    def _commit(self, ep: _OpenEpisode) -> int:
        info, root = self.info, self.root
        index = len(self._episodes)
        length = ep.num_frames
        if not self._episodes:  # extra features inferred from the first frame must be on disk before any data
            self._save_info()
        if ep.task in self._tasks:
            task_index, new_tasks = self._tasks.index(ep.task), self._tasks
        else:
            task_index, new_tasks = len(self._tasks), [*self._tasks, ep.task]
        columns = {k: np.stack(v) if isinstance(v[0], np.ndarray) else np.asarray(v) for k, v in ep.columns.items()}
        columns[schema.INDEX] = self._total_frames + np.arange(length)
        columns[schema.EPISODE_INDEX] = np.full(length, index)
        columns[schema.TASK_INDEX] = np.full(length, task_index)
        table = schema.build_frame_table(info, columns)

        # 1. frames: data file, then one video file per camera (each replaced atomically)
        target, keep_rows, keep_frames = self._target_file(ep)
        try:
            self._write_frames(ep, table, target, keep_rows, keep_frames)
        except DataError as e:
            if not keep_rows:
                raise
            log.warning("could not append to file %s (%s); starting a new file", target, e)
            target, keep_rows, keep_frames = self._next_file(target)
            self._write_frames(ep, table, target, keep_rows, keep_frames)
        videos = {cam: FileSpan(target, keep_frames[cam], keep_frames[cam] + length) for cam in info.cameras}

        # 2. task table
        if new_tasks is not self._tasks:
            write_tasks(root, new_tasks, self._durable)
            self._tasks = new_tasks

        # 3. episode index: the commit point
        meta = EpisodeMeta(
            episode_index=index, length=length, task=ep.task, task_index=task_index, source=ep.source,
            success=ep.success, success_source=ep.success_source, dataset_from_index=self._total_frames,
            data=FileSpan(target, keep_rows, keep_rows + length), videos=videos, calibration_id=ep.calibration_id,
            t0=float(ep.t0 or 0.0), recorded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            num_keyframes=int(columns[schema.IS_KEYFRAME].sum()),
            num_interventions=int(columns[schema.IS_INTERVENTION].sum()), extra=ep.extra)
        self._episodes.append(meta)
        try:
            write_episodes_file(root, self._episodes, list(info.cameras), info.fps, info.episodes_per_index_file,
                                self._durable)
        except BaseException:
            self._episodes.pop()
            raise
        self._total_frames += length

        # 4. summary
        self._save_info()
        return index

    def _write_frames(self, ep: _OpenEpisode, table: pa.Table, target: FileId, keep_rows: int,
                      keep_frames: dict[str, int]) -> None:
        """Replace the target files by their first committed rows/frames + this episode's."""
        dpath = layout.data_path(self.root, target)
        if keep_rows:
            old = read_parquet(dpath)
            if old.num_rows < keep_rows:
                raise DataError(f"{dpath}: has {old.num_rows} rows, the episode index expects {keep_rows}")
            table = pa.concat_tables([old.slice(0, keep_rows).cast(table.schema), table])
        write_parquet_atomic(table, dpath, self._durable)
        for cam in self.info.cameras:
            vpath = layout.video_path(self.root, cam, target)
            vpath.parent.mkdir(parents=True, exist_ok=True)
            staged = ep.staging / f"{cam}.mp4"
            tmp = tmp_path_for(vpath)
            try:
                if keep_frames[cam]:
                    concat_videos([(vpath, keep_frames[cam]), (staged, None)], tmp, self.info.fps)
                else:
                    _link_or_copy(staged, tmp)  # keep the staged file: a failed commit can be retried
                commit_file(tmp, vpath, self._durable)
            finally:
                tmp.unlink(missing_ok=True)

    def _next_file(self, current: FileId) -> tuple[FileId, int, dict[str, int]]:
        number = current.number(self.info.files_per_chunk) + 1
        return FileId.from_number(number, self.info.files_per_chunk), 0, dict.fromkeys(self.info.cameras, 0)

    def _target_file(self, ep: _OpenEpisode) -> tuple[FileId, int, dict[str, int]]:
        """The file set the episode goes to, and how many rows/frames of it are already committed."""
        cams = list(self.info.cameras)
        if not self._episodes:
            return FileId(0, 0), 0, dict.fromkeys(cams, 0)
        last = self._episodes[-1]
        current = last.data.file
        in_file = 0
        for meta in reversed(self._episodes):
            if meta.data.file != current:
                break
            in_file += 1
        paths = [layout.data_path(self.root, current)] + [layout.video_path(self.root, c, current) for c in cams]
        size_mb = max((p.stat().st_size if p.exists() else 0) for p in paths) / 2**20
        reason = None
        if in_file >= self.info.episodes_per_file or size_mb >= self.info.max_file_mb:
            reason = ""
        else:
            try:
                rows = parquet_num_rows(paths[0])
                if rows < last.data.end:
                    reason = f"{paths[0]} has {rows} rows, the index expects {last.data.end}"
                for cam in cams if reason is None else ():
                    if codec_signature(layout.video_path(self.root, cam, current)) != \
                            codec_signature(ep.staging / f"{cam}.mp4"):
                        reason = f"camera {cam}: encoder parameters differ from the file's"
                        break
            except DataError as e:
                reason = str(e)
        if reason is not None:
            if reason:
                log.warning("not appending to file %s (%s); starting a new file", current, reason)
            return self._next_file(current)
        return current, last.data.end, {c: last.videos[c].end for c in cams}

    def _save_info(self) -> None:
        self.info.total_episodes = len(self._episodes)
        self.info.total_frames = self._total_frames
        self.info.total_tasks = len(self._tasks)
        self.info.save(self.root, self._durable)


def _refuse_foreign_folder(root: Path) -> None:
    """Never scatter dataset files (or a lock file) among someone else's."""
    if (root / layout.INFO_PATH).exists() or not root.is_dir():
        return
    strangers = sorted(p.name for p in root.iterdir() if p.name not in (layout.LOCK_PATH, layout.STAGING_DIR))
    if strangers:
        raise DataError(f"{root / layout.INFO_PATH}: missing, and {root} is not empty "
                        f"({', '.join(strangers[:5])}): not creating a dataset there")


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {list(choices)}, got {value!r}." + did_you_mean(str(value), choices))


def _infer_spec(name: str, value: Any) -> FeatureSpec:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"extra feature {name!r} must be numeric or bool, got {arr.dtype}")
    dtype = np.float32 if arr.dtype == np.float16 else arr.dtype
    return FeatureSpec(name, tuple(arr.shape), np.dtype(dtype).name, "state")


def _extra_specs(extra: Mapping[str, Any]) -> dict[str, FeatureSpec]:
    """Normalise ``{name: shape | int | FeatureSpec}`` (float32 unless a FeatureSpec says otherwise)."""
    out = {}
    for name, spec in extra.items():
        if name in schema.standard_features({}, STATE_DIM) or name.startswith(schema.TIMESTAMP + "."):
            raise ValueError(f"extra feature {name!r} clashes with a standard column")
        if not isinstance(spec, FeatureSpec):
            shape = (spec,) if isinstance(spec, int) else tuple(spec)
            spec = FeatureSpec(name, shape, "float32", "state")
        elif spec.name != name:
            spec = FeatureSpec(name, spec.shape, spec.dtype, spec.kind, spec.names)
        out[name] = spec
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
