"""Read an episode dataset: metadata, per-frame arrays, and frames decoded on demand.

Every accessor takes an ``episode_index`` as stored in the dataset (stable across filtered views). Frames
are decoded lazily with cached, seek-capable decoders; per-frame arrays come from cached parquet files and
are read-only views (copy before modifying).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wovr_core.errors import DataError

from . import layout, schema
from ._fsio import parquet_num_rows, read_parquet
from .index import load_episodes, load_tasks
from .schema import DatasetInfo, EpisodeMeta
from .video import DecoderCache, open_video

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")


@dataclass(frozen=True)
class Clip:
    """Consecutive frames of one episode plus what a world model trains on.

    ``frames[cam][k]`` is observation ``o[start + k]`` and ``actions[k]`` is the action that LED TO it, so
    ``actions[1:]`` drive the transitions ``frames[k-1] -> frames[k]``. ``first_frame[cam]`` is the episode's
    ``o_0`` (the world model's anchor frame), or None when not requested.
    """

    episode_index: int
    start: int
    frames: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8
    actions: np.ndarray  # (T, ACTION_DIM) float32
    states: np.ndarray  # (T, STATE_DIM) float32
    first_frame: dict[str, np.ndarray] | None  # camera -> (H, W, 3) uint8
    task: str

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])

    def anchored(self, camera: str) -> np.ndarray:
        """``[o_0] + frames`` for one camera: (1 + T, H, W, 3)."""
        if self.first_frame is None:
            raise ValueError("this clip was read with with_first_frame=False")
        return np.concatenate([self.first_frame[camera][None], self.frames[camera]])


@dataclass(frozen=True)
class FrameSample:
    """One control step, as yielded by :meth:`EpisodeDataset.iter_frames`."""

    episode_index: int
    frame_index: int
    images: dict[str, np.ndarray]
    state: np.ndarray
    action: np.ndarray
    is_keyframe: bool
    is_intervention: bool
    task: str


class Episode:
    """One episode's per-frame arrays (read-only) and lazily decoded frames."""

    def __init__(self, dataset: EpisodeDataset, meta: EpisodeMeta, columns: dict[str, np.ndarray]):
        self.meta = meta
        self._dataset = dataset
        self._columns = columns
        self._frames: dict[str, np.ndarray] = {}

    @property
    def index(self) -> int:
        return self.meta.episode_index

    @property
    def task(self) -> str:
        return self.meta.task

    def __len__(self) -> int:
        return self.meta.length

    @property
    def states(self) -> np.ndarray:
        return self._columns[schema.STATE]

    @property
    def actions(self) -> np.ndarray:
        """``actions[t]`` led to observation ``t``; ``actions[0]`` is DUMMY_ACTION."""
        return self._columns[schema.ACTION]

    @property
    def timestamps(self) -> np.ndarray:
        """Step times in seconds since the episode's first step."""
        return self._columns[schema.TIMESTAMP]

    @property
    def camera_timestamps(self) -> dict[str, np.ndarray]:
        """Capture time per camera, seconds since the episode's first step (negative = captured earlier)."""
        return {c: self._columns[schema.camera_timestamp_key(c)] for c in self._dataset.cameras}

    @property
    def is_keyframe(self) -> np.ndarray:
        return self._columns[schema.IS_KEYFRAME]

    @property
    def is_intervention(self) -> np.ndarray:
        return self._columns[schema.IS_INTERVENTION]

    @property
    def keyframes(self) -> np.ndarray:
        """Frame indices flagged as keyframes."""
        return np.flatnonzero(self.is_keyframe)

    @property
    def extras(self) -> dict[str, np.ndarray]:
        return {name: self._columns[name] for name in self._dataset.info.extra_features}

    def column(self, name: str) -> np.ndarray:
        """Any per-frame column by its feature name (e.g. ``"latency.policy_ms"``)."""
        if name not in self._columns:
            raise KeyError(f"no per-frame column {name!r}; columns: {sorted(self._columns)}")
        return self._columns[name]

    def frames(self, camera: str) -> np.ndarray:
        """All frames of one camera, (T, H, W, 3) uint8 (decoded once, then kept by this object)."""
        if camera not in self._frames:
            self._frames[camera] = self._dataset._read_frames(self.meta, camera, 0, self.meta.length)
        return self._frames[camera]

    def frame(self, t: int, camera: str) -> np.ndarray:
        if camera in self._frames:
            return self._frames[camera][t]
        return self._dataset.frame(self.index, t, camera)


class _Store:
    """State shared by a dataset and its filtered views: caches of parquet files and decoders."""

    def __init__(self, root: Path, max_open_videos: int, max_cached_files: int):
        self.root = root
        self.info = DatasetInfo.load(root)
        # Index before tasks: a writer adds a task before the episode that uses it, so this order never
        # sees an episode whose task is missing, even mid-commit.
        self.episodes = load_episodes(root, list(self.info.cameras))
        self.tasks = load_tasks(root)
        self.decoders = DecoderCache(max_open_videos)
        self.tables: OrderedDict[Path, dict[str, np.ndarray]] = OrderedDict()
        self.max_cached_files = max_cached_files
        self.first_frames: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self.bad_episodes: dict[int, str] = {}

    def file_columns(self, path: Path) -> dict[str, np.ndarray]:
        columns = self.tables.get(path)
        if columns is None:
            columns = schema.read_frame_columns(read_parquet(path), self.info, path)
            for array in columns.values():
                array.setflags(write=False)
            self.tables[path] = columns
            while len(self.tables) > self.max_cached_files:
                self.tables.popitem(last=False)
        else:
            self.tables.move_to_end(path)
        return columns


class EpisodeDataset:
    """An episode dataset folder, or a filtered view of one.

    ``on_error="raise"`` (default): opening only reads metadata; a missing or corrupt file raises DataError
    (naming it) when an episode stored in it is accessed, and every other episode still loads.
    ``on_error="skip"``: opening also checks that each data/video file opens and is long enough; episodes
    in bad files are left out of the view and listed in ``bad_episodes`` (index -> reason), and episodes that
    fail later while iterating are skipped with a warning.
    The episode list is a snapshot taken at opening: episodes a writer commits later need a new object.
    Not thread-safe: use one object per thread; forked workers reopen their decoders automatically.
    """

    def __init__(self, root: str | Path, on_error: str = "raise", *, max_open_videos: int = 16,
                 max_cached_files: int = 8):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        store = _Store(Path(root), max_open_videos, max_cached_files)
        self._set_view(store, on_error, store.episodes)
        if on_error == "skip":
            self._set_view(store, on_error, self._drop_bad(store.episodes))

    def _set_view(self, store: _Store, on_error: str, episodes: Sequence[EpisodeMeta]) -> None:
        self.on_error = on_error
        self._store = store
        self._episodes = list(episodes)
        self._by_index = {ep.episode_index: ep for ep in self._episodes}

    # ---- metadata ----------------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self._store.root

    @property
    def info(self) -> DatasetInfo:
        return self._store.info

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def cameras(self) -> list[str]:
        return list(self.info.cameras)

    @property
    def tasks(self) -> list[str]:
        """All tasks of the dataset, by ``task_index``."""
        return list(self._store.tasks)

    @property
    def episodes(self) -> list[EpisodeMeta]:
        return list(self._episodes)

    @property
    def episode_indices(self) -> list[int]:
        return [ep.episode_index for ep in self._episodes]

    @property
    def bad_episodes(self) -> dict[int, str]:
        """Episodes found unreadable so far (all of them after opening with ``on_error="skip"``)."""
        return dict(self._store.bad_episodes)

    @property
    def num_frames(self) -> int:
        return sum(ep.length for ep in self._episodes)

    def __len__(self) -> int:
        return len(self._episodes)

    def __repr__(self) -> str:
        return f"EpisodeDataset({str(self.root)!r}, episodes={len(self)}, frames={self.num_frames})"

    def meta(self, episode_index: int) -> EpisodeMeta:
        try:
            return self._by_index[episode_index]
        except KeyError:
            why = self._store.bad_episodes.get(episode_index)
            if why:
                raise DataError(f"episode {episode_index} is unreadable: {why}") from None
            raise KeyError(f"episode {episode_index} is not in this dataset view "
                           f"({len(self)} episodes)") from None

    # ---- views -------------------------------------------------------------------------------------------

    def filter(self, *, source: str | Collection[str] | None = None, success: bool | None | str = "any",
               task: str | Collection[str] | None = None) -> EpisodeDataset:
        """A view of the episodes that match every given criterion.

        ``success``: True, False, None (unlabeled) or "any". ``source``/``task``: one value or a collection.
        """
        sources = {source} if isinstance(source, str) else set(source) if source is not None else None
        tasks = {task} if isinstance(task, str) else set(task) if task is not None else None
        if sources and sources - set(schema.EPISODE_SOURCES):
            raise ValueError(f"unknown source(s) {sorted(sources - set(schema.EPISODE_SOURCES))}; "
                             f"sources are {list(schema.EPISODE_SOURCES)}")
        if success != "any" and success not in (True, False, None):
            raise ValueError(f"success must be True, False, None (unlabeled) or 'any', got {success!r}")
        kept = [ep for ep in self._episodes
                if (sources is None or ep.source in sources)
                and (tasks is None or ep.task in tasks)
                and (success == "any" or ep.success is success)]
        return self.select(ep.episode_index for ep in kept)

    def select(self, episode_indices) -> EpisodeDataset:
        """A view of the given episodes (in the given order)."""
        metas = [self.meta(int(i)) for i in episode_indices]
        view = object.__new__(EpisodeDataset)
        view._set_view(self._store, self.on_error, metas)
        return view

    # ---- per-episode data ----------------------------------------------------------------------------------

    def episode(self, episode_index: int) -> Episode:
        meta = self.meta(episode_index)
        return Episode(self, meta, self._columns(meta))

    def iter_episodes(self) -> Iterator[Episode]:
        for meta in self._episodes:
            try:
                yield Episode(self, meta, self._columns(meta))
            except DataError as e:
                self._skip_or_raise(meta, e)

    def frame(self, episode_index: int, t: int, camera: str) -> np.ndarray:
        """Frame ``t`` of one camera, (H, W, 3) uint8."""
        meta = self.meta(episode_index)
        _check_range(meta, t, 1)
        return self._read_frames(meta, camera, t, 1)[0]

    def clip(self, episode_index: int, start: int, length: int, cameras: Sequence[str] | None = None,
             with_first_frame: bool = True) -> Clip:
        """Frames ``[start, start + length)`` with their actions and states (see :class:`Clip`)."""
        meta = self.meta(episode_index)
        _check_range(meta, start, length)
        cameras = self.cameras if cameras is None else list(cameras)
        columns = self._columns(meta)
        frames = {cam: self._read_frames(meta, cam, start, length) for cam in cameras}
        first = None
        if with_first_frame:
            first = {cam: frames[cam][0] if start == 0 else self._first_frame(meta, cam) for cam in cameras}
        sl = slice(start, start + length)
        return Clip(episode_index, start, frames, columns[schema.ACTION][sl], columns[schema.STATE][sl], first,
                    meta.task)

    def clip_starts(self, length: int, stride: int = 1) -> np.ndarray:
        """Every valid ``(episode_index, start)`` for clips of ``length`` frames, as an (N, 2) int64 array."""
        rows = [np.stack([np.full(n, ep.episode_index), np.arange(0, n * stride, stride)], 1)
                for ep in self._episodes if (n := (ep.length - length) // stride + 1) > 0]
        return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), np.int64)

    def iter_frames(self, cameras: Sequence[str] | None = None, block: int = 32) -> Iterator[FrameSample]:
        """Every frame of the view in order, decoding each video sequentially ``block`` frames at a time."""
        cameras = self.cameras if cameras is None else list(cameras)
        for meta in self._episodes:
            try:
                columns = self._columns(meta)
                for start in range(0, meta.length, block):
                    n = min(block, meta.length - start)
                    images = {cam: self._read_frames(meta, cam, start, n) for cam in cameras}
                    for k in range(n):
                        t = start + k
                        yield FrameSample(meta.episode_index, t, {cam: images[cam][k] for cam in cameras},
                                          columns[schema.STATE][t], columns[schema.ACTION][t],
                                          bool(columns[schema.IS_KEYFRAME][t]),
                                          bool(columns[schema.IS_INTERVENTION][t]), meta.task)
            except DataError as e:
                self._skip_or_raise(meta, e)

    # ---- stats -------------------------------------------------------------------------------------------

    def norm_stats(self, recompute: bool = False):
        """:class:`~wovr_core.data.stats.NormStats` of this view: ``meta/stats.json`` when it covers exactly
        these frames, otherwise computed now."""
        from .stats import NormStats, compute_stats

        path = self.root / layout.STATS_PATH
        if not recompute and path.exists() and len(self) == len(self._store.episodes):
            stats = NormStats.from_json(path)
            if schema.STATE in stats and stats[schema.STATE].count == self.num_frames:
                return stats
        return compute_stats(self)

    def close(self) -> None:
        self._store.decoders.clear()

    def __enter__(self) -> EpisodeDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals ---------------------------------------------------------------------------------------

    def _columns(self, meta: EpisodeMeta) -> dict[str, np.ndarray]:
        path = layout.data_path(self.root, meta.data.file)
        file_columns = self._store.file_columns(path)
        n_rows = len(file_columns[schema.INDEX])
        if meta.data.end > n_rows:
            raise DataError(f"{path}: has {n_rows} rows, episode {meta.episode_index} needs rows "
                            f"{meta.data.start}..{meta.data.end - 1}")
        sl = slice(meta.data.start, meta.data.end)
        columns = {k: v[sl] for k, v in file_columns.items()}
        if not (np.all(columns[schema.EPISODE_INDEX] == meta.episode_index)
                and np.array_equal(columns[schema.FRAME_INDEX], np.arange(meta.length))):
            raise DataError(f"{path}: rows {meta.data.start}..{meta.data.end - 1} are not frames 0..{meta.length - 1} "
                            f"of episode {meta.episode_index}")
        return columns

    def _read_frames(self, meta: EpisodeMeta, camera: str, start: int, count: int) -> np.ndarray:
        if camera not in self.info.cameras:
            raise KeyError(f"no camera {camera!r}; cameras: {self.cameras}")
        span = meta.videos[camera]
        path = layout.video_path(self.root, camera, span.file)
        try:
            reader = self._store.decoders.get(path, self.fps, self.info.video.gop)
            return reader.read(span.start + start, count)
        except DataError:
            self._store.decoders.drop(path)
            raise

    def _first_frame(self, meta: EpisodeMeta, camera: str) -> np.ndarray:
        key = (meta.episode_index, camera)
        cache = self._store.first_frames
        frame = cache.get(key)
        if frame is None:
            frame = self._read_frames(meta, camera, 0, 1)[0]
            cache[key] = frame
            while len(cache) > 64:
                cache.popitem(last=False)
        return frame

    def _skip_or_raise(self, meta: EpisodeMeta, error: DataError) -> None:
        self._store.bad_episodes[meta.episode_index] = str(error)
        if self.on_error == "raise":
            raise error
        log.warning("skipping episode %d: %s", meta.episode_index, error)

    def _drop_bad(self, episodes: Sequence[EpisodeMeta]) -> list[EpisodeMeta]:
        """Check every file the episodes use (open + length, no decoding) and leave out episodes in bad ones."""
        need: dict[Path, int] = {}
        for ep in episodes:
            for path, end in self._files_of(ep):
                need[path] = max(need.get(path, 0), end)
        problems: dict[Path, str] = {}
        for path, needed in need.items():
            try:
                have = parquet_num_rows(path) if path.suffix == ".parquet" else _video_frames(path)
                if have < needed:
                    problems[path] = f"{path}: holds {have} rows/frames, the episode index needs {needed}"
            except DataError as e:
                problems[path] = str(e)
        kept = []
        for ep in episodes:
            reasons = [problems[path] for path, _ in self._files_of(ep) if path in problems]
            if reasons:
                self._store.bad_episodes[ep.episode_index] = "; ".join(reasons)
                log.warning("episode %d is unreadable and left out: %s", ep.episode_index, reasons[0])
            else:
                kept.append(ep)
        return kept

    def _files_of(self, ep: EpisodeMeta) -> list[tuple[Path, int]]:
        files = [(layout.data_path(self.root, ep.data.file), ep.data.end)]
        files += [(layout.video_path(self.root, cam, span.file), span.end) for cam, span in ep.videos.items()]
        return files


def _check_range(meta: EpisodeMeta, start: int, length: int) -> None:
    if length < 1 or start < 0 or start + length > meta.length:
        raise IndexError(f"frames {start}..{start + length - 1} are outside episode {meta.episode_index} "
                         f"(length {meta.length})")


def _video_frames(path: Path) -> int:
    container = open_video(path)
    try:
        return int(container.streams.video[0].frames)
    finally:
        container.close()


def open_datasets(roots: Sequence[str | Path], cameras: Sequence[str], on_error: str = "skip",
                  reader: str = "the model") -> list[EpisodeDataset]:
    """Open the training datasets and check that each records the ``cameras`` that ``reader`` needs.

    ``on_error="skip"`` leaves unreadable episodes out with a warning (see :class:`EpisodeDataset`)."""
    if not roots:
        raise DataError("no datasets given (pass at least one --data DIR)")
    datasets = []
    for root in roots:
        root = Path(root).expanduser()
        if not (root / "meta" / "info.json").is_file():
            raise DataError(f"{root}: not an episode dataset (no meta/info.json)")
        dataset = EpisodeDataset(root, on_error=on_error)
        if missing := [c for c in cameras if c not in dataset.cameras]:
            raise DataError(f"{root}: {reader} reads cameras {list(cameras)}, the dataset has {dataset.cameras} "
                            f"(missing {missing})")
        datasets.append(dataset)
    return datasets
