"""Frames labelled by the success predicate, held-out episode splits, and the training frame bank.

Frame labels (a frame is positive when the task is accomplished *in that frame*, not merely in an episode
that ends well):

1. a per-frame predicate column (default ``success``, e.g. LIBERO's predicate recorded at every step) wins;
2. otherwise, in an episode labelled successful, only its last ``tail_frames`` frames are positive: the
   twin's collector (``wovr collect``) stops ``5`` steps after LIBERO's predicate first holds, so its last
   6 frames are exactly the predicate-true frames. Episodes recorded differently should record the column;
3. every frame of a failed episode is negative; unlabelled episodes are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wovr_core.data import Episode, EpisodeDataset
from wovr_core.data.reader import open_datasets as _open_datasets
from wovr_core.errors import DataError
from wovr_core.types import EpisodeView

log = logging.getLogger(__name__)

EpisodeKey = tuple[int, int]  # (dataset number, episode_index)


def open_datasets(roots: Sequence[str | Path], cameras: Sequence[str]) -> list[EpisodeDataset]:
    """Datasets with the reward model's cameras; unreadable episodes are left out with a warning."""
    return _open_datasets(roots, cameras, reader="the reward model")


def frame_labels(episode: Episode, success_column: str, tail_frames: int) -> np.ndarray | None:
    """Per-frame success labels of an episode (see the module docstring), or None when it has no label."""
    n = len(episode)
    if success_column in episode.extras:
        return np.asarray(episode.column(success_column)) > 0.5
    if episode.meta.success is None:
        return None
    labels = np.zeros(n, bool)
    if episode.meta.success:
        labels[max(0, n - tail_frames):] = True
    return labels


def labelled_episodes(datasets: Sequence[EpisodeDataset]) -> list[EpisodeKey]:
    """Every episode with an outcome label (unlabelled ones cannot be trained or scored on)."""
    return [(d, ep.episode_index) for d, ds in enumerate(datasets) for ep in ds.episodes if ep.success is not None]


def split_episodes(datasets: Sequence[EpisodeDataset], fraction: float, seed: int,
                   keys: Sequence[EpisodeKey] | None = None) -> tuple[list[EpisodeKey], list[EpisodeKey]]:
    """(kept, held out): ``fraction`` of the labelled episodes (of ``keys``, default all) held out, stratified
    by outcome: each outcome with two or more episodes gives that share of them (at least one), spread over
    tasks, so held-out accuracy covers failed episodes (false positives) as well as successes."""
    rng = np.random.default_rng(seed)
    by_outcome: dict[bool, dict[str, list[EpisodeKey]]] = {}
    for d, i in labelled_episodes(datasets) if keys is None else keys:
        meta = datasets[d].meta(i)
        if meta.success is not None:
            by_outcome.setdefault(bool(meta.success), {}).setdefault(meta.task, []).append((d, i))
    kept, held = [], []
    for _, by_task in sorted(by_outcome.items()):
        # Round-robin over tasks (each shuffled) so the held-out share is spread across tasks.
        queues = [[keys_[i] for i in rng.permutation(len(keys_))] for _, keys_ in sorted(by_task.items())]
        order = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
        n_held = max(1, int(round(fraction * len(order)))) if len(order) >= 2 else 0
        held += order[:n_held]
        kept += order[n_held:]
    if not kept or not held:
        raise DataError(f"need labelled episodes both to train on and to hold out; got {len(kept)} and {len(held)} "
                        f"held-out (collect more episodes or change the fractions)")
    return sorted(kept), sorted(held)


@dataclass
class FrameBank:
    """Training frames in memory: every positive frame and a bounded set of negatives per episode, and the same
    frames through an episode view when one is given."""

    frames: dict[str, np.ndarray]  # camera -> (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) bool
    task_index: np.ndarray  # (N,) int
    episode: np.ndarray  # (N,) int, position in the key list
    viewed: dict[str, np.ndarray] | None = None  # camera -> (N, H, W, 3) uint8

    @property
    def positives(self) -> np.ndarray:
        return np.flatnonzero(self.labels)

    @property
    def negatives(self) -> np.ndarray:
        return np.flatnonzero(~self.labels)


def build_frame_bank(datasets: Sequence[EpisodeDataset], keys: Sequence[EpisodeKey], cameras: Sequence[str],
                     tasks: Sequence[str], success_column: str, tail_frames: int,
                     negatives_per_episode: int | None, hard_negative_frames: int,
                     view: EpisodeView | None = None) -> FrameBank:
    """Frames of the episodes ``keys`` with their labels: all of them when ``negatives_per_episode`` is None,
    else see :func:`frames_to_keep`; with ``view``, also the same frames through it."""
    task_of = {t: i for i, t in enumerate(tasks)}
    frames: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    viewed: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    labels, task_index, episode = [], [], []
    for k, (d, i) in enumerate(keys):
        try:
            ep = datasets[d].episode(i)
            y = frame_labels(ep, success_column, tail_frames)
            if y is None:
                continue
            keep = np.arange(len(y)) if negatives_per_episode is None else frames_to_keep(
                y, negatives_per_episode, hard_negative_frames)
            episode_frames = {cam: ep.frames(cam) for cam in cameras}
            seen = view(episode_frames, np.asarray(ep.actions, np.float32)) if view else {}
            for cam in cameras:
                frames[cam].append(episode_frames[cam][keep])
                if view:
                    viewed[cam].append(seen[cam][keep])
        except DataError as e:  # one corrupt episode costs itself, not the run
            log.warning("leaving out episode %d of %s: %s", i, datasets[d].root, e)
            continue
        labels.append(y[keep])
        task_index.append(np.full(len(keep), task_of[ep.task]))
        episode.append(np.full(len(keep), k))
    if not labels:
        raise DataError("no labelled training frames")
    return FrameBank({c: np.concatenate(v) for c, v in frames.items()}, np.concatenate(labels),
                     np.concatenate(task_index), np.concatenate(episode),
                     {c: np.concatenate(v) for c, v in viewed.items()} if view else None)


def frames_to_keep(labels: np.ndarray, n_negatives: int, hard: int) -> np.ndarray:
    """Training frames of one episode: every positive; in a successful episode the ``hard`` frames just before
    success (they look most like it) and ``n_negatives`` evenly spaced earlier ones; in a failed episode every
    frame, since its near misses (an empty gripper over the basket, an object dropped beside it) can come at
    any time and are the false positives a reward model must not make."""
    positives = np.flatnonzero(labels)
    negatives = np.flatnonzero(~labels)
    if not positives.size:
        return negatives.astype(int)
    first = positives[0]
    hard_set = negatives[(negatives >= first - hard) & (negatives < first)]
    rest = np.setdiff1d(negatives, hard_set)
    spread = rest[np.linspace(0, len(rest) - 1, min(n_negatives, len(rest))).astype(int)] if rest.size else rest
    return np.unique(np.concatenate([positives, hard_set, spread])).astype(int)


def positive_rate(datasets: Sequence[EpisodeDataset], keys: Sequence[EpisodeKey], success_column: str,
                  tail_frames: int) -> float:
    """Share of positive frames over every frame of the episodes (the prior the classifier is corrected to)."""
    total = positives = 0
    for d, i in keys:
        y = frame_labels(datasets[d].episode(i), success_column, tail_frames)
        if y is not None:
            total += len(y)
            positives += int(y.sum())
    return positives / max(1, total)
