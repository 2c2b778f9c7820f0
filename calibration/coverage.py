"""How much of the image the detected board corners have covered, for live feedback while capturing.

Distortion is only determined where corners were seen, so the operator is told which regions are still empty.
"""

from __future__ import annotations

import numpy as np

_ROW_NAMES = ("top", "middle", "bottom")
_COL_NAMES = ("left", "centre", "right")


class CoverageGrid:
    """Counts corners per cell of a ``cols`` x ``rows`` grid over the image."""

    def __init__(self, width: int, height: int, cols: int = 8, rows: int = 6):
        self.width, self.height = width, height
        self.counts = np.zeros((rows, cols), dtype=np.int64)

    def add(self, points: np.ndarray) -> None:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        rows, cols = self.counts.shape
        c = np.clip((pts[:, 0] / self.width * cols).astype(int), 0, cols - 1)
        r = np.clip((pts[:, 1] / self.height * rows).astype(int), 0, rows - 1)
        np.add.at(self.counts, (r, c), 1)

    @property
    def fraction(self) -> float:
        """Share of grid cells holding at least one corner."""
        return float(np.count_nonzero(self.counts) / self.counts.size)

    def empty_regions(self) -> list[str]:
        """Names ("top-left", "bottom-centre", ...) of the image ninths where no corner was seen yet."""
        rows, cols = self.counts.shape
        empty = []
        for i, row_name in enumerate(_ROW_NAMES):
            for j, col_name in enumerate(_COL_NAMES):
                block = self.counts[i * rows // 3:(i + 1) * rows // 3, j * cols // 3:(j + 1) * cols // 3]
                if block.sum() == 0:
                    empty.append("centre" if (row_name, col_name) == ("middle", "centre") else f"{row_name}-{col_name}")
        return empty

    def hint(self) -> str:
        empty = self.empty_regions()
        coverage = f"coverage {100 * self.fraction:.0f}%"
        return f"{coverage}; move the board to: {', '.join(empty)}" if empty else coverage
