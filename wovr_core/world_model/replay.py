"""How a recorded episode looks to a reward model that will score imagined frames.

A reward model for RL in imagination scores frames the world model made. Those differ from camera frames in
ways a small classifier notices even where a person sees the same scene (the codec's blur, smeared contacts,
a held object that fades), and a classifier trained on camera frames alone can read none of them as success.
The views here turn a labelled episode into labelled frames of the kind imagination produces; each frame keeps
the label of the real frame it stands for.

* ``codec``: every frame encoded and decoded on its own (needs a frame-wise codec);
* ``imagined``: *imagined replay*: every ``anchor_every`` chunks the model re-observes the real context and
  imagines the next chunks under the episode's recorded actions, so an imagined frame is 1 to
  ``anchor_every * chunk_frames`` steps from the last real one, as in rollouts from a keyframe.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np

from wovr_core.transforms import resize_images
from wovr_core.types import DUMMY_ACTION, EpisodeView, RewardViewKind
from wovr_core.world_model.model import WorldModel, codec_is_frame_wise

Frames = dict[str, np.ndarray]
VIEW_KINDS: tuple[str, ...] = get_args(RewardViewKind)


def imagined_replay(model: WorldModel, frames: Frames, actions: np.ndarray, anchor_every: int = 1,
                    batch: int = 16) -> Frames:
    """The episode's frames as imagined from its own actions, re-anchored on real frames every ``anchor_every``
    chunks (see the module docstring). Frame 0, the real start of every rollout, stays as recorded. Frames of
    any size come back at their size (imagined at the model's)."""
    if anchor_every < 1:
        raise ValueError(f"anchor_every must be >= 1, got {anchor_every}")
    cfg = model.config
    actions = np.asarray(actions, np.float32)
    length = len(actions)
    shapes = {c: np.asarray(frames[c]).shape[1:3] for c in cfg.cameras}
    if any(len(frames[c]) != length for c in cfg.cameras):
        raise ValueError(f"every camera needs one frame per action ({length}); got "
                         f"{ {c: len(frames[c]) for c in cfg.cameras} }")
    real = {c: resize_images(frames[c], cfg.image_size, cfg.image_size) for c in cfg.cameras}
    out = {c: v.copy() for c, v in real.items()}
    span = anchor_every * cfg.chunk_frames
    anchors = list(range(0, length - 1, span))
    # The last anchor's actions run past the episode: its last action repeats, and those frames are dropped.
    padded = np.concatenate([actions, np.repeat(actions[-1:], span, axis=0)])
    for lo in range(0, len(anchors), batch):
        group = anchors[lo:lo + batch]
        context = [_context(real, actions, a, cfg.memory_frames) for a in group]
        state = model.observe({c: np.stack([f[c] for f, _ in context]) for c in cfg.cameras},
                              np.stack([a for _, a in context]))
        imagined: dict[str, list[np.ndarray]] = {c: [] for c in cfg.cameras}
        for k in range(anchor_every):
            chunk = np.stack([padded[a + 1 + k * cfg.chunk_frames:a + 1 + (k + 1) * cfg.chunk_frames] for a in group])
            chunk_frames, state = model.imagine(state, chunk)
            for c in cfg.cameras:
                imagined[c].append(chunk_frames[c])
        for c in cfg.cameras:
            video = np.concatenate(imagined[c], axis=1)
            for a, clip in zip(group, video, strict=True):
                n = min(span, length - 1 - a)
                out[c][a + 1:a + 1 + n] = clip[:n]
    return {c: resize_images(v, *shapes[c]) for c, v in out.items()}


def _context(frames: Frames, actions: np.ndarray, anchor: int, memory: int) -> tuple[Frames, np.ndarray]:
    """``[o_0] + the memory frames up to anchor`` and the actions that led to them; before the memory is full
    (a reset) o_0 stands in for the missing frames with the dummy action, as in training's reset clips."""
    index = np.concatenate([[0], np.arange(anchor - memory + 1, anchor + 1)]).clip(0)
    context_actions = actions[index].copy()
    context_actions[index == 0] = DUMMY_ACTION
    return {c: v[index] for c, v in frames.items()}, context_actions


def reward_view(directory: str | Path, kind: RewardViewKind, anchor_every: int = 1) -> EpisodeView | None:
    """The view a reward model for the world model saved in ``directory`` trains with: None for ``camera``
    (camera frames only), and for ``codec`` when the codec decodes whole clips (a Wan VAE, near lossless)."""
    if kind not in VIEW_KINDS:
        raise ValueError(f"unknown reward view {kind!r}; choose one of {list(VIEW_KINDS)}")
    if kind == "camera" or (kind == "codec" and not codec_is_frame_wise(directory)):
        return None
    model = WorldModel.load(directory).prepare_for_inference()
    if kind == "codec":
        return lambda frames, actions: model.through_codec(frames)
    return lambda frames, actions: imagined_replay(model, frames, actions, anchor_every)
