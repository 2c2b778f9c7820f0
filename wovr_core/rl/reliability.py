"""Is imagination a reliable judge? Agreement of imagined and real success across policies or tasks."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def pearson_r(pairs: Iterable[tuple[float, float]]) -> float | None:
    """Pearson correlation of (imagined, real) success pairs; None with fewer than 3 pairs or no spread in
    either (the correlation is undefined there, not 0)."""
    data = np.asarray(list(pairs), dtype=np.float64)
    if len(data) < 3:
        return None
    if not np.isfinite(data).all():
        raise ValueError("success pairs hold NaN or inf")
    x, y = data.T
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])
