"""Imagined-vs-real pictures: side-by-side videos (mp4) and image grids (TensorBoard, reports)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wovr_core.data.video import VideoConfig, VideoEncoder

_GAP = 2  # pixels of white between panels


def _hcat(images: Sequence[np.ndarray]) -> np.ndarray:
    gap = np.full((images[0].shape[0], _GAP, 3), 255, np.uint8)
    out = [images[0]]
    for img in images[1:]:
        out += [gap, img]
    return np.concatenate(out, axis=1)


def _vcat(images: Sequence[np.ndarray]) -> np.ndarray:
    width = max(i.shape[1] for i in images)
    padded = [np.pad(i, ((0, 0), (0, width - i.shape[1]), (0, 0)), constant_values=255) for i in images]
    gap = np.full((_GAP, width, 3), 255, np.uint8)
    out = [padded[0]]
    for img in padded[1:]:
        out += [gap, img]
    return np.concatenate(out, axis=0)


def side_by_side(real: dict[str, np.ndarray], imagined: dict[str, np.ndarray], cameras: Sequence[str]) -> np.ndarray:
    """Per frame: real cameras left, imagined cameras right. Inputs camera -> (T, H, W, 3); -> (T, H', W', 3)."""
    t = min(len(real[cameras[0]]), len(imagined[cameras[0]]))
    return np.stack([_hcat([real[c][k] for c in cameras] + [imagined[c][k] for c in cameras]) for k in range(t)])


def stack_rows(videos: Sequence[np.ndarray]) -> np.ndarray:
    """Several (T, H, W, 3) videos of one length stacked vertically."""
    t = min(len(v) for v in videos)
    return np.stack([_vcat([v[k] for v in videos]) for k in range(t)])


def frame_grid(real: np.ndarray, imagined: np.ndarray, every: int = 8) -> np.ndarray:
    """Two rows (real above imagined) of every ``every``-th frame of (T, H, W, 3) videos: one image."""
    idx = list(range(every - 1, min(len(real), len(imagined)), every)) or [0]
    return _vcat([_hcat([real[k] for k in idx]), _hcat([imagined[k] for k in idx])])


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    """Write (T, H, W, 3) uint8 frames as H.264 (sizes padded to even numbers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    encoder = VideoEncoder(path, frames.shape[1], frames.shape[2], fps, VideoConfig(crf=20, gop=30))
    try:
        for frame in frames:
            encoder.add(frame)
    finally:
        encoder.close()
    return path
