"""Imagined-vs-real frame strips: a PNG with real frames above the imagined ones, for the report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from wovr_core.errors import DataError


def pick_columns(length: int, columns: int) -> np.ndarray:
    return np.unique(np.linspace(0, max(length - 1, 0), columns).round().astype(int))


def strip_rows(real: np.ndarray, imagined: np.ndarray, columns: int = 8, size: int = 64) -> np.ndarray:
    """(T, H, W, 3) real and imagined frames of one episode -> a (2 * size, n * size, 3) uint8 image."""
    length = min(len(real), len(imagined))
    picks = pick_columns(length, columns)

    def row(frames: np.ndarray) -> np.ndarray:
        return np.concatenate([cv2.resize(np.ascontiguousarray(frames[t]), (size, size),
                                          interpolation=cv2.INTER_AREA) for t in picks], axis=1)

    return np.concatenate([row(real), row(imagined)], axis=0)


def write_strip(path: Path, pairs: Sequence[tuple[np.ndarray, np.ndarray]], columns: int = 8, size: int = 64) -> Path:
    """Stack the strips of several episodes (separated by a white line) into one PNG."""
    if not pairs:
        raise ValueError("no episodes to draw")
    blocks = [strip_rows(r, g, columns, size) for r, g in pairs]
    width = max(b.shape[1] for b in blocks)
    padded = []
    for block in blocks:
        pad = np.full((block.shape[0] + 4, width, 3), 255, np.uint8)
        pad[: block.shape[0], : block.shape[1]] = block
        padded.append(pad)
    image = np.concatenate(padded, axis=0)
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"{path}: PNG encoding failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.tobytes())
    tmp.replace(path)
    return path
