"""Check every episode of a dataset; the nightly pipeline quarantines the episodes this reports as bad."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wovr_core.errors import DataError
from wovr_core.types import DUMMY_ACTION

from . import layout, schema
from .reader import EpisodeDataset
from .schema import EpisodeMeta
from .video import frame_indices


@dataclass
class ValidationReport:
    """``errors``: the dataset as a whole is unusable (its metadata is unreadable). ``bad_episodes``:
    episode index -> reasons. ``warnings``: harmless oddities (stale totals, leftovers of a crash...)."""

    root: Path
    num_episodes: int = 0
    num_frames: int = 0
    decoded_all_frames: bool = False
    errors: list[str] = field(default_factory=list)
    bad_episodes: dict[int, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.bad_episodes

    @property
    def good_episodes(self) -> list[int]:
        return [i for i in range(self.num_episodes) if i not in self.bad_episodes] if not self.errors else []

    def to_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "ok": self.ok, "num_episodes": self.num_episodes,
                "num_frames": self.num_frames, "decoded_all_frames": self.decoded_all_frames,
                "errors": self.errors, "bad_episodes": {str(k): v for k, v in sorted(self.bad_episodes.items())},
                "warnings": self.warnings}

    def summary(self) -> str:
        if self.errors:
            return "FAILED: " + "; ".join(self.errors)
        checked = f"{self.num_episodes} episodes, {self.num_frames} frames" + (
            ", every frame decoded" if self.decoded_all_frames else "")
        if not self.bad_episodes:
            return f"OK ({checked})"
        lines = [f"{len(self.bad_episodes)} bad episode(s) of {self.num_episodes} ({checked}):"]
        lines += [f"  episode {i}: {'; '.join(r)}" for i, r in sorted(self.bad_episodes.items())]
        return "\n".join(lines)


def validate_dataset(root: str | Path, *, decode_all: bool = False) -> ValidationReport:
    """Check metadata, every data file and every video file against the episode index.

    Per episode: its parquet rows exist, belong to it and are frames 0..T-1; no NaN/inf in actions or states;
    its task is in the task table; each camera's video holds exactly its frames (packet count, no decoding)
    and its first frame decodes. ``decode_all`` decodes every frame (slower, finds mid-stream corruption).
    """
    report = ValidationReport(Path(root))
    try:
        dataset = EpisodeDataset(root)
    except DataError as e:
        report.errors.append(str(e))
        return report
    with dataset:
        episodes = dataset.episodes
        report.num_episodes = len(episodes)
        report.num_frames = dataset.num_frames
        report.decoded_all_frames = decode_all
        bad: dict[int, list[str]] = defaultdict(list)
        _check_metadata(dataset, report, bad)
        for meta in episodes:
            _check_rows(dataset, meta, bad, report.warnings)
        _check_videos(dataset, episodes, bad, report.warnings, decode_all)
        _check_orphans(dataset, episodes, report.warnings)
    report.bad_episodes = dict(sorted(bad.items()))
    return report


def _check_metadata(dataset: EpisodeDataset, report: ValidationReport, bad: dict[int, list[str]]) -> None:
    info, tasks = dataset.info, dataset.tasks
    totals = (info.total_episodes, info.total_frames, info.total_tasks)
    if totals != (report.num_episodes, report.num_frames, len(tasks)):
        report.warnings.append(f"{dataset.root / layout.INFO_PATH}: totals {totals} are stale (index says "
                               f"{(report.num_episodes, report.num_frames, len(tasks))}); the next writer repairs them")
    expected_from = 0
    for meta in dataset.episodes:
        i = meta.episode_index
        if meta.dataset_from_index != expected_from:
            bad[i].append(f"dataset_from_index is {meta.dataset_from_index}, expected {expected_from}")
        expected_from = meta.dataset_to_index
        if meta.length < 1:
            bad[i].append(f"length is {meta.length}")
        if not (0 <= meta.task_index < len(tasks)) or tasks[meta.task_index] != meta.task:
            bad[i].append(f"task_index {meta.task_index} does not match task {meta.task!r} in {layout.TASKS_PATH}")
        if meta.source not in schema.EPISODE_SOURCES:
            bad[i].append(f"unknown source {meta.source!r}")
        if meta.success_source not in schema.SUCCESS_SOURCES:
            bad[i].append(f"unknown success_source {meta.success_source!r}")
        if meta.data.end - meta.data.start != meta.length:
            bad[i].append(f"data rows {meta.data.start}..{meta.data.end} do not span length {meta.length}")
        for cam, span in meta.videos.items():
            if span.end - span.start != meta.length:
                bad[i].append(f"camera {cam}: video frames {span.start}..{span.end} do not span length {meta.length}")


def _check_rows(dataset: EpisodeDataset, meta: EpisodeMeta, bad: dict[int, list[str]], warnings: list[str]) -> None:
    i = meta.episode_index
    path = layout.data_path(dataset.root, meta.data.file)
    try:
        episode = dataset.episode(i)
    except DataError as e:
        bad[i].append(str(e))
        return
    index = episode.column(schema.INDEX)
    if not np.array_equal(index, meta.dataset_from_index + np.arange(meta.length)):
        bad[i].append(f"{path}: column 'index' is not {meta.dataset_from_index}..{meta.dataset_to_index - 1}")
    if np.any(episode.column(schema.TASK_INDEX) != meta.task_index):
        bad[i].append(f"{path}: column 'task_index' differs from the episode's task_index {meta.task_index}")
    for name, values in ((schema.ACTION, episode.actions), (schema.STATE, episode.states)):
        rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if len(rows):
            bad[i].append(f"{path}: NaN/inf in {name!r} at frames {rows[:10].tolist()}"
                          + (" ..." if len(rows) > 10 else ""))
    if not np.array_equal(episode.actions[0], DUMMY_ACTION):
        warnings.append(f"episode {i}: action[0] is {episode.actions[0].tolist()}, not DUMMY_ACTION "
                        "(action[t] must be the action that led to observation t)")
    if np.any(np.diff(episode.timestamps) < 0):
        warnings.append(f"episode {i}: step timestamps go backwards")


def _check_videos(dataset: EpisodeDataset, episodes: list[EpisodeMeta], bad: dict[int, list[str]],
                  warnings: list[str], decode_all: bool) -> None:
    by_file: dict[Path, list[tuple[EpisodeMeta, str]]] = defaultdict(list)
    for meta in episodes:
        for cam, span in meta.videos.items():
            by_file[layout.video_path(dataset.root, cam, span.file)].append((meta, cam))
    for path, users in by_file.items():
        try:
            present = frame_indices(path, dataset.fps)
        except DataError as e:
            for meta, _ in users:
                bad[meta.episode_index].append(str(e))
            continue
        last_end = 0
        for meta, cam in users:
            span = meta.videos[cam]
            last_end = max(last_end, span.end)
            inside = present[(present >= span.start) & (present < span.end)]
            if not np.array_equal(np.sort(inside), np.arange(span.start, span.end)):
                bad[meta.episode_index].append(f"{path}: holds {len(inside)} of the episode's {meta.length} frames "
                                               f"({span.start}..{span.end - 1})")
                continue
            try:
                if decode_all:
                    dataset.episode(meta.episode_index).frames(cam)
                else:
                    dataset.frame(meta.episode_index, 0, cam)
            except DataError as e:
                bad[meta.episode_index].append(str(e))
        extra = int((present >= last_end).sum())
        if extra:
            warnings.append(f"{path}: {extra} frames after the last indexed episode (left by an interrupted "
                            "commit; harmless, overwritten by the next append)")


def _check_orphans(dataset: EpisodeDataset, episodes: list[EpisodeMeta], warnings: list[str]) -> None:
    used = {layout.data_path(dataset.root, m.data.file) for m in episodes}
    used |= {layout.video_path(dataset.root, c, s.file) for m in episodes for c, s in m.videos.items()}
    on_disk = set((dataset.root / "data").glob("chunk-*/file-*.parquet"))
    on_disk |= set((dataset.root / "videos").glob("*/chunk-*/file-*.mp4"))
    for path in sorted(on_disk - used):
        warnings.append(f"{path}: not referenced by any episode (left by an interrupted commit)")
