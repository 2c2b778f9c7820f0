"""Demonstrations -> SFT batches for the VLA.

* :func:`select_episodes` / :func:`split_episodes`: which episodes train and which are held out (whole
  episodes, per task), decided once per run and stored with it so a resumed run sees the same split.
* :class:`DemoFrames`: those episodes' frames decoded once and cached as ``.npy`` memory maps at the policy's
  image size (resized by the policy's own ``resize_images`` transform), with states, actions and tasks.
* :class:`ChunkSampler`: batch ``step`` = observations ``o[t]`` with the chunk of actions that followed them,
  ``action[t+1 : t+1+chunk]`` (``action[t]`` led TO ``o[t]``); past the episode's end the chunk holds still
  (zero motion, last gripper command). Every random choice of a step (frames, image shifts) is seeded by
  ``(seed, rank, step)``, so a resumed run draws exactly the batches the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wovr_core.data import EpisodeDataset
from wovr_core.data.reader import open_datasets as _open_datasets
from wovr_core.errors import DataError
from wovr_core.policy.base import IMAGE_KEY_PREFIX, STATE_KEY, TASK_KEY
from wovr_core.policy.vla_inputs import ACTION_KEY, VLABatch, collate
from wovr_core.policy.vla_policy import VLASampleTransform
from wovr_core.transforms import NormStats, ResizeImages
from wovr_core.types import GRIPPER_OPEN

log = logging.getLogger(__name__)

EpisodeKey = tuple[int, int]
"""(position of the dataset in the run's ``--data`` list, episode_index in that dataset)."""

CACHE_FORMAT = 1


def open_datasets(roots: Sequence[str | Path], cameras: Sequence[str]) -> list[EpisodeDataset]:
    """Every dataset, checked for the cameras the policy reads; a corrupt episode is an error."""
    return _open_datasets(roots, cameras, on_error="raise", reader="the policy")


def dataset_fingerprint(root: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of a dataset's metadata: info, tasks and the episode index, which change
    whenever an episode is added or rewritten (the manifest's "data hash"; frames are not re-read)."""
    root = Path(root)
    digest = hashlib.sha256()
    meta = root / "meta"
    files = [meta / "info.json", meta / "tasks.parquet", *sorted((meta / "episodes").rglob("*.parquet"))]
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def select_episodes(datasets: Sequence[EpisodeDataset], success_only: bool, min_length: int = 2
                    ) -> list[EpisodeKey]:
    """Episodes to imitate: long enough to hold one action after an observation, and (by default) successful."""
    keys = []
    for d, dataset in enumerate(datasets):
        for meta in dataset.episodes:
            if meta.length >= min_length and (not success_only or meta.success is True):
                keys.append((d, meta.episode_index))
    if not keys:
        what = "successful episodes" if success_only else "episodes"
        raise DataError(f"no {what} of at least {min_length} frames in {[str(d.root) for d in datasets]}"
                        + (" (set train success_only=false to imitate unlabeled or failed ones)"
                           if success_only else ""))
    return keys


def split_episodes(datasets: Sequence[EpisodeDataset], keys: Sequence[EpisodeKey], val_fraction: float,
                   seed: int) -> tuple[list[EpisodeKey], list[EpisodeKey]]:
    """Hold out ``val_fraction`` of each task's episodes (none of a task with fewer than 3: training needs them)."""
    by_task: dict[str, list[EpisodeKey]] = {}
    for key in keys:
        by_task.setdefault(datasets[key[0]].meta(key[1]).task, []).append(key)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for task in sorted(by_task):
        members = by_task[task]
        n_val = int(round(val_fraction * len(members))) if len(members) >= 3 else 0
        order = rng.permutation(len(members))
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    return sorted(train), sorted(val)


def hold_still_chunk(actions: np.ndarray, t: int, chunk_size: int) -> np.ndarray:
    """``actions[t+1 : t+1+chunk_size]`` of one episode, padded past its end with "hold still" actions (no
    motion, the last gripper command)."""
    chunk = np.asarray(actions[t + 1: t + 1 + chunk_size], dtype=np.float32)
    if len(chunk) < chunk_size:
        hold = np.zeros((chunk_size - len(chunk), actions.shape[1]), dtype=np.float32)
        hold[:, -1] = actions[-1, -1] if len(actions) > 1 else GRIPPER_OPEN
        chunk = np.concatenate([chunk, hold])
    return chunk


class DemoFrames:
    """The frames, states, actions and tasks of a list of episodes, images cached at one size.

    The cache lives in ``cache_root/<hash of what it holds>/`` as one ``.npy`` per camera (memory-mapped when
    read) plus states and actions; it is written under a temporary name and renamed when complete, so an
    interrupted build is redone, never half-used.
    """

    def __init__(self, datasets: Sequence[EpisodeDataset], keys: Sequence[EpisodeKey], cameras: Sequence[str],
                 resize: ResizeImages, cache_root: str | Path, progress: bool = False):
        if not keys:
            raise ValueError("DemoFrames needs at least one episode")
        if resize.height != resize.width:
            raise ValueError(f"the policy's images are square, got a resize to {resize.height}x{resize.width}")
        self.keys = list(keys)
        self.cameras = tuple(cameras)
        self.resize = resize
        self.image_size = int(resize.height)
        metas = [datasets[d].meta(i) for d, i in self.keys]
        self.lengths = np.array([m.length for m in metas], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.tasks = [m.task for m in metas]
        self.source_sizes = {c: tuple(datasets[self.keys[0][0]].info.cameras[c]) for c in self.cameras}
        identity = {"format": CACHE_FORMAT, "cameras": list(self.cameras), "image_size": self.image_size,
                    "resize_pad": resize.pad,
                    "episodes": [[str(datasets[d].root.resolve()), i, int(n)]
                                 for (d, i), n in zip(self.keys, self.lengths, strict=True)]}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.cache_dir = Path(cache_root).expanduser() / f"frames-{self.image_size}px-{digest}"
        if not (self.cache_dir / "index.json").is_file():
            self._build(datasets, identity, progress)
        self.images = {c: np.load(self.cache_dir / f"{c}.npy", mmap_mode="r") for c in self.cameras}
        self.states = np.load(self.cache_dir / "states.npy")
        self.actions = np.load(self.cache_dir / "actions.npy")
        total = int(self.lengths.sum())
        if any(len(a) != total for a in (*self.images.values(), self.states, self.actions)):
            raise DataError(f"{self.cache_dir}: cache does not hold {total} frames; delete it to rebuild")
        # Observations with at least one action after them.
        self.valid = np.concatenate([s + np.arange(n - 1) for s, n in zip(self.starts, self.lengths, strict=True)])
        self.frame_episode = np.repeat(np.arange(len(self.keys)), self.lengths)

    def _build(self, datasets: Sequence[EpisodeDataset], identity: dict, progress: bool) -> None:
        from tqdm import tqdm

        tmp = self.cache_dir.with_name(self.cache_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        total, size = int(self.lengths.sum()), self.image_size
        resize = ResizeImages(size, size, pad=self.resize.pad)  # the policy's resize, for any image key
        images = {c: np.lib.format.open_memmap(tmp / f"{c}.npy", mode="w+", dtype=np.uint8,
                                               shape=(total, size, size, 3))
                  for c in self.cameras}
        states, actions = [], []
        bar = tqdm(self.keys, desc=f"caching frames at {size}px", unit="ep", disable=not progress)
        for (d, index), start, n in zip(bar, self.starts, self.lengths, strict=True):
            episode = datasets[d].episode(index)
            for c in self.cameras:
                frames = episode.frames(c)
                images[c][start:start + n] = resize({IMAGE_KEY_PREFIX + c: frames})[IMAGE_KEY_PREFIX + c]
            states.append(np.asarray(episode.states, dtype=np.float32))
            actions.append(np.asarray(episode.actions, dtype=np.float32))
        for array in images.values():
            array.flush()
        del images
        np.save(tmp / "states.npy", np.concatenate(states))
        np.save(tmp / "actions.npy", np.concatenate(actions))
        (tmp / "index.json").write_text(json.dumps(identity, indent=1) + "\n")
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        tmp.rename(self.cache_dir)

    def __len__(self) -> int:
        return int(self.lengths.sum())

    def sample(self, frame: int, chunk_size: int) -> dict:
        """Observation ``frame`` (a global frame number) with the action chunk that followed it, robot units."""
        e = int(self.frame_episode[frame])
        start, n = int(self.starts[e]), int(self.lengths[e])
        obs = {IMAGE_KEY_PREFIX + c: self.images[c][frame] for c in self.cameras}
        obs[STATE_KEY] = self.states[frame]
        obs[TASK_KEY] = self.tasks[e]
        obs[ACTION_KEY] = hold_still_chunk(self.actions[start:start + n], frame - start, chunk_size)
        return obs

    def norm_stats(self) -> dict[str, NormStats]:
        """Statistics of the states and of the actions (each episode's placeholder ``action[0]`` left out)."""
        real = np.ones(len(self), dtype=bool)
        real[self.starts] = False
        return {ACTION_KEY: NormStats.compute(self.actions[real]), STATE_KEY: NormStats.compute(self.states)}


@dataclass(frozen=True, eq=False)
class ChunkSampler:
    """SFT batches as a pure function of the step (see the module docstring). Usable as a map-style dataset
    (``sampler[step]``), so a ``DataLoader`` can prefetch it in worker processes."""

    frames: DemoFrames
    transform: VLASampleTransform
    chunk_size: int
    batch_size: int
    seed: int = 0
    rank: int = 0
    shift: int = 0  # random image shift (pixels) for augmentation; 0 = none

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> tuple[VLABatch, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, int(step)])
        frames = self.frames.valid[rng.integers(0, len(self.frames.valid), size=self.batch_size)]
        batch, tokens = collate([self.transform(self.frames.sample(int(f), self.chunk_size)) for f in frames])
        if self.shift > 0:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            batch = batch.augmented(generator, self.shift)
        return batch, tokens


def fixed_frames(frames: DemoFrames, count: int) -> np.ndarray:
    """Up to ``count`` valid frames spread evenly over the episodes (a fixed validation set)."""
    valid = frames.valid
    if len(valid) <= count:
        return valid
    return valid[np.linspace(0, len(valid) - 1, count).round().astype(np.int64)]


def frames_batches(frames: DemoFrames, transform: VLASampleTransform, chunk_size: int, indices: np.ndarray,
                   batch_size: int):
    """Yield (batch, tokens) over ``indices`` in order, without augmentation."""
    for i in range(0, len(indices), batch_size):
        yield collate([transform(frames.sample(int(f), chunk_size)) for f in indices[i:i + batch_size]])


def describe_split(datasets: Sequence[EpisodeDataset], train: Sequence[EpisodeKey], val: Sequence[EpisodeKey]
                   ) -> Mapping[str, int]:
    tasks = {datasets[d].meta(i).task for d, i in train}
    return {"train_episodes": len(train), "val_episodes": len(val), "tasks": len(tasks),
            "train_frames": sum(datasets[d].meta(i).length for d, i in train)}
