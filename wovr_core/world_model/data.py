"""Training data of the world model: episode splits, clip windows (with the reference augmentations), and
episodes held in memory as pixels or as latents.

A window is ``[o_0] + memory + chunk`` frames of one episode (13 by default: the episode's first frame and
12 consecutive frames), described by a :class:`ClipSpec` of frame indices and actions so the same sampler
serves pixels (decoded episodes) and stored latents.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wovr_core.data import EpisodeDataset
from wovr_core.data.reader import open_datasets as _open_datasets
from wovr_core.errors import DataError
from wovr_core.transforms import resize_images
from wovr_core.types import DUMMY_ACTION

log = logging.getLogger(__name__)

EpisodeKey = tuple[int, int]  # (dataset number, episode_index)


# ------------------------------------------------------------------------------------------------ datasets
def open_datasets(roots: Sequence[str | Path], cameras: Sequence[str]) -> list[EpisodeDataset]:
    """Datasets with the world model's cameras; unreadable episodes are left out with a warning."""
    return _open_datasets(roots, cameras, reader="the world model")


def dataset_fingerprint(root: Path) -> str:
    """sha256 of a dataset's metadata (info, episode index, stats): changes when episodes are added."""
    h = hashlib.sha256()
    meta = Path(root) / "meta"
    for path in sorted([meta / "info.json", meta / "stats.json", *sorted((meta / "episodes").rglob("*.parquet"))]):
        if path.exists():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def split_episodes(datasets: Sequence[EpisodeDataset], val_fraction: float, seed: int,
                   min_length: int = 1) -> tuple[list[EpisodeKey], list[EpisodeKey]]:
    """Hold out ``val_fraction`` of each dataset's episodes, stratified by outcome (successes and failures
    both reach validation), at least one per dataset of two or more episodes. Deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    train: list[EpisodeKey] = []
    val: list[EpisodeKey] = []
    for d, ds in enumerate(datasets):
        groups: dict[object, list[int]] = {}
        for ep in ds.episodes:
            if ep.length >= min_length:
                groups.setdefault(ep.success, []).append(ep.episode_index)
        held: set[int] = set()
        for outcome in sorted(groups, key=str):
            shuffled = [int(i) for i in rng.permutation(groups[outcome])]
            held.update(shuffled[:round(val_fraction * len(shuffled))])
        total = sum(len(g) for g in groups.values())
        if val_fraction > 0 and not held and total >= 2:
            largest = max(groups.values(), key=len)
            held.add(int(rng.choice(largest)))
        if total and len(held) == total:  # keep at least one episode to train on
            held.discard(min(held))
        for outcome_episodes in groups.values():
            for i in outcome_episodes:
                (val if i in held else train).append((d, i))
    if not train:
        raise DataError(f"no training episodes with at least {min_length} frames")
    return sorted(train), sorted(val)


# ------------------------------------------------------------------------------------------------ windows
@dataclass(frozen=True)
class ClipSpec:
    """One training window: frame indices into an episode and the actions that led to those frames."""

    key: EpisodeKey
    frames: np.ndarray  # (window,) int
    actions: np.ndarray  # (window, 7) float32; actions[0] = DUMMY_ACTION (nothing led to o_0)
    kind: str = "clip"  # clip | static | reset


class ClipSampler:
    """Samples windows ``[o_0] + memory + chunk`` uniformly over valid positions of the given episodes,
    plus the reference augmentations: static windows (one frame repeated, zero arm motion) and reset windows
    (memory = o_0 repeated with dummy actions, chunk = the episode's first frames)."""

    def __init__(self, memory_frames: int, chunk_frames: int, static_prob: float = 0.05, reset_prob: float = 0.05):
        self.memory = memory_frames
        self.chunk = chunk_frames
        self.static_prob = static_prob
        self.reset_prob = reset_prob

    @property
    def window(self) -> int:
        return 1 + self.memory + self.chunk

    @property
    def min_length(self) -> int:
        """Shortest usable episode: o_0 plus ``memory + chunk`` frames after it."""
        return 1 + self.memory + self.chunk

    def sample(self, rng: np.random.Generator, key: EpisodeKey, actions: np.ndarray) -> ClipSpec:
        """A window of the episode whose per-frame actions are ``actions`` (T, 7)."""
        u = rng.random()
        if u < self.static_prob:
            return self.static(key, actions, int(rng.integers(0, len(actions))))
        if u < self.static_prob + self.reset_prob:
            return self.reset(key, actions)
        span = self.memory + self.chunk
        start = int(rng.integers(1, len(actions) - span + 1))
        return self.clip(key, actions, start)

    def clip(self, key: EpisodeKey, actions: np.ndarray, start: int) -> ClipSpec:
        span = self.memory + self.chunk
        frames = np.concatenate([[0], np.arange(start, start + span)])
        acts = actions[frames].astype(np.float32)
        acts[0] = DUMMY_ACTION
        return ClipSpec(key, frames, acts, "clip")

    def static(self, key: EpisodeKey, actions: np.ndarray, t: int) -> ClipSpec:
        frames = np.concatenate([[0], np.full(self.memory + self.chunk, t)])
        still = np.zeros((len(frames), actions.shape[1]), np.float32)
        still[:, -1] = actions[t, -1]  # the gripper holds its command; the arm does not move
        still[0] = DUMMY_ACTION
        return ClipSpec(key, frames, still, "static")

    def reset(self, key: EpisodeKey, actions: np.ndarray) -> ClipSpec:
        frames = np.concatenate([np.zeros(1 + self.memory, int), np.arange(1, 1 + self.chunk)])
        acts = actions[frames].astype(np.float32)
        acts[:1 + self.memory] = DUMMY_ACTION
        return ClipSpec(key, frames, acts, "reset")


# ------------------------------------------------------------------------------------------- in memory
@dataclass
class LoadedEpisode:
    key: EpisodeKey
    frames: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8
    actions: np.ndarray  # (T, 7)
    states: np.ndarray  # (T, STATE_DIM)
    task: str
    success: bool | None

    def __len__(self) -> int:
        return len(self.actions)


def load_episode(datasets: Sequence[EpisodeDataset], key: EpisodeKey, cameras: Sequence[str],
                 image_size: int | None = None) -> LoadedEpisode:
    ds = datasets[key[0]]
    ep = ds.episode(key[1])
    frames = {}
    for cam in cameras:
        f = ep.frames(cam)
        frames[cam] = f if image_size is None else resize_images(f, image_size, image_size)
    return LoadedEpisode(key, frames, np.asarray(ep.actions, np.float32), np.asarray(ep.states, np.float32),
                         ep.task, ep.meta.success)


class EpisodePool:
    """Up to ``capacity`` decoded episodes kept in memory, a window over a fixed shuffled order of the keys.

    :meth:`advance` slides the window by one episode (one decoded in, one dropped), so long runs see every
    episode while memory stays bounded. The window's position alone decides what is loaded, so a resumed run
    rebuilds exactly the pool it had (``position`` = number of advances so far).
    """

    def __init__(self, datasets: Sequence[EpisodeDataset], keys: Sequence[EpisodeKey], cameras: Sequence[str],
                 capacity: int, image_size: int, seed: int = 0, position: int = 0):
        if not keys:
            raise DataError("no episodes to load")
        self.datasets = datasets
        self.cameras = list(cameras)
        self.image_size = image_size
        order = np.random.default_rng(seed).permutation(len(keys))
        self.order = [tuple(keys[i]) for i in order]
        self.capacity = min(capacity, len(self.order))
        self.loaded: dict[EpisodeKey, LoadedEpisode] = {}
        self._failed: set[EpisodeKey] = set()
        self.position = 0
        self.move_to(position)

    def _window(self, position: int) -> list[EpisodeKey]:
        n = len(self.order)
        return [self.order[(position + i) % n] for i in range(self.capacity)]

    def move_to(self, position: int) -> None:
        wanted = self._window(position)
        for key in [k for k in self.loaded if k not in wanted]:
            del self.loaded[key]
        for key in wanted:
            if key not in self.loaded and key not in self._failed:
                try:
                    self.loaded[key] = load_episode(self.datasets, key, self.cameras, self.image_size)
                except DataError as e:  # a corrupt episode costs itself, not the run
                    self._failed.add(key)
                    log.warning("leaving out episode %s of %s: %s", key[1], self.datasets[key[0]].root, e)
        self.position = position

    def advance(self) -> None:
        """Swap the oldest episode of the window for the next one (nothing to do when all fit)."""
        if self.capacity < len(self.order):
            self.move_to(self.position + 1)

    def episodes(self, min_length: int = 1) -> list[LoadedEpisode]:
        """The loaded episodes with at least ``min_length`` frames, in window order (deterministic)."""
        eps = [self.loaded[k] for k in self._window(self.position)
               if k in self.loaded and len(self.loaded[k]) >= min_length]
        if not eps:
            raise DataError(f"no loaded episode has at least {min_length} frames")
        return eps


def window_frames(episode: LoadedEpisode, spec: ClipSpec, cameras: Sequence[str]) -> dict[str, np.ndarray]:
    return {cam: episode.frames[cam][spec.frames] for cam in cameras}


def pick_episode(rng: np.random.Generator, lengths: np.ndarray) -> int:
    """An episode index with probability proportional to its number of windows (its length)."""
    p = lengths / lengths.sum()
    return int(rng.choice(len(lengths), p=p))
