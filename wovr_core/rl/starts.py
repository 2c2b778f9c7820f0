"""Where imagined rollouts begin: an episode's first frame, or a keyframe (Keyframe-Initialized Rollouts).

A world model's context is ``[o_0, m_1 .. m_M]``: the episode's anchor frame ``o_0`` and the last M memory
frames. An episode start is ``o_0`` alone (the model fills the memory with it). A keyframe start at frame k is
``o_0`` + frames ``k-M+1 .. k`` with the actions that led to them: the keyframe is the last memory frame, the
observation the policy acts on first (the reference's KIR files end at the keyframe the same way). Near the
start of an episode the memory is padded with frame 0 and its dummy action, as the model's own reset does.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wovr_core.data import EpisodeDataset
from wovr_core.transforms import resize_images
from wovr_core.types import ACTION_DIM, DUMMY_ACTION

EPISODE_START = "episode"
"""``Start.source`` of a start at an episode's first frame; keyframe starts carry their keyframe source."""


@dataclass(frozen=True)
class Start:
    """The context one group of rollouts starts from."""

    task: str
    frames: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8: T = 1 (o_0) or 1 + memory frames
    actions: np.ndarray | None = None  # (T, 7) float32 that led to the frames (actions[0] is the dummy)
    source: str = EPISODE_START
    episode_index: int = -1
    frame_index: int = 0  # the frame the policy acts on first

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("a start needs frames of at least one camera")
        lengths = set()
        for camera, x in self.frames.items():
            if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or len(x) < 1:
                raise ValueError(f"start frames[{camera!r}] must be (T, H, W, 3) uint8, got {x.shape} {x.dtype}")
            lengths.add(len(x))
        if len(lengths) != 1:
            raise ValueError(f"start cameras hold different numbers of frames: {sorted(lengths)}")
        if self.context_length > 1:
            if self.actions is None or self.actions.shape != (self.context_length, ACTION_DIM):
                shape = None if self.actions is None else self.actions.shape
                raise ValueError(f"a {self.context_length}-frame start needs ({self.context_length}, {ACTION_DIM}) "
                                 f"actions, got {shape}")
            if not np.isfinite(self.actions).all():
                raise ValueError(f"start actions of episode {self.episode_index} frame {self.frame_index} hold NaN "
                                 "or inf")

    @property
    def context_length(self) -> int:
        return len(next(iter(self.frames.values())))

    @property
    def cameras(self) -> list[str]:
        return list(self.frames)

    def current_frames(self) -> dict[str, np.ndarray]:
        """camera -> (H, W, 3): what the policy sees first."""
        return {c: x[-1] for c, x in self.frames.items()}

    def full_context(self, memory_frames: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(camera -> (1 + M, H, W, 3), actions (1 + M, 7)): an ``o_0``-only start expanded the way a world model
        expands it (anchor repeated, dummy actions), so starts of both kinds share one ``observe`` call."""
        if self.context_length == 1:
            frames = {c: np.repeat(x, 1 + memory_frames, axis=0) for c, x in self.frames.items()}
            return frames, np.tile(DUMMY_ACTION, (1 + memory_frames, 1))
        if self.context_length != 1 + memory_frames:
            raise ValueError(f"start of episode {self.episode_index} frame {self.frame_index} has "
                             f"{self.context_length} context frames; the model uses 1 or {1 + memory_frames}")
        return dict(self.frames), np.asarray(self.actions, np.float32)


def memory_indices(frame_index: int, memory_frames: int) -> np.ndarray:
    """Frame indices of the memory of a start at ``frame_index`` (the last is the keyframe), clipped at 0."""
    return np.maximum(np.arange(frame_index - memory_frames + 1, frame_index + 1), 0)


def start_from_arrays(frames: dict[str, np.ndarray], actions: np.ndarray, task: str, frame_index: int = 0,
                      memory_frames: int = 4, source: str = EPISODE_START, episode_index: int = -1) -> Start:
    """A start from one episode's arrays: ``frames`` camera -> (L, H, W, 3), ``actions`` (L, 7)."""
    length = len(actions)
    if not 0 <= frame_index < length:
        raise ValueError(f"frame_index {frame_index} is outside the episode's {length} frames")
    if frame_index == 0:
        return Start(task, {c: np.asarray(x[:1]) for c, x in frames.items()}, None, source, episode_index, 0)
    idx = memory_indices(frame_index, memory_frames)
    context = {c: np.concatenate([x[:1], x[idx]]) for c, x in frames.items()}
    context_actions = np.concatenate([DUMMY_ACTION[None], np.asarray(actions, np.float32)[idx]])
    return Start(task, context, context_actions, source, episode_index, frame_index)


def start_from_dataset(dataset: EpisodeDataset, episode_index: int, frame_index: int = 0, memory_frames: int = 4,
                       cameras: Sequence[str] | None = None, source: str = EPISODE_START) -> Start:
    """A start read from a recorded episode (only the frames the context needs are decoded)."""
    cameras = list(cameras) if cameras is not None else dataset.cameras
    meta = dataset.meta(episode_index)
    if not 0 <= frame_index < meta.length:
        raise ValueError(f"frame_index {frame_index} is outside episode {episode_index} ({meta.length} frames)")
    if frame_index == 0:
        clip = dataset.clip(episode_index, 0, 1, cameras)
        return Start(meta.task, clip.frames, None, source, episode_index, 0)
    idx = memory_indices(frame_index, memory_frames)
    lo = int(idx[0])
    clip = dataset.clip(episode_index, lo, frame_index - lo + 1, cameras, with_first_frame=True)
    assert clip.first_frame is not None
    context = {c: np.concatenate([clip.first_frame[c][None], clip.frames[c][idx - lo]]) for c in cameras}
    actions = np.concatenate([DUMMY_ACTION[None], clip.actions[idx - lo]]).astype(np.float32)
    return Start(meta.task, context, actions, source, episode_index, frame_index)


def resize_start(start: Start, size: int) -> Start:
    """A start with its frames resized to the world model's square image size."""
    return dataclasses.replace(start, frames={c: resize_images(x, size, size) for c, x in start.frames.items()})


def starts_per_task(dataset: EpisodeDataset, per_task: int, cameras: Sequence[str], image_size: int,
                    frames_before_end: int | None = None, success: bool | None = None) -> list[Start]:
    """The first ``per_task`` episodes of each task (in index order) as starts at ``image_size``, grouped by
    task in sorted order: at their first frame, or ``frames_before_end`` frames before their last (with its
    memory, as a keyframe start). ``success`` keeps only episodes with that outcome label."""
    if per_task < 1:
        raise ValueError(f"per_task must be >= 1, got {per_task}")
    chosen: dict[str, list[Start]] = defaultdict(list)
    for index in range(len(dataset)):
        meta = dataset.meta(index)
        if (success is not None and meta.success is not success) or len(chosen[meta.task]) >= per_task:
            continue
        frame = 0 if frames_before_end is None else max(0, meta.length - 1 - frames_before_end)
        start = start_from_dataset(dataset, index, frame, cameras=cameras)
        chosen[meta.task].append(resize_start(start, image_size))
    return [start for task in sorted(chosen) for start in chosen[task]]
