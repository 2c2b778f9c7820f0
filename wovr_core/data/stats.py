"""Normalization statistics of a dataset (``meta/stats.json``), computed in one streaming pass.

JSON shape (other modules rely on it)::

    {"action": {"mean": [...], "std": [...], "min": [...], "max": [...], "q01": [...], "q99": [...], "count": N},
     "observation.state": {...}}

``action`` statistics leave out each episode's placeholder ``action[0]`` (DUMMY_ACTION: nothing led to the
first frame, and no model is ever asked to produce it). ``std`` is the population std (numpy's default).
Mean/std/min/max are exact. Quantiles are exact up to ``max_quantile_samples`` frames per feature; beyond
that they come from a uniform random subsample of that size (deterministic seed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wovr_core.errors import DataError

from . import schema
from ._fsio import atomic_write_json

if TYPE_CHECKING:
    from .reader import EpisodeDataset

STAT_KEYS = ("mean", "std", "min", "max", "q01", "q99")
DEFAULT_FEATURES = (schema.ACTION, schema.STATE)


@dataclass(frozen=True)
class FeatureStats:
    """Per-dimension statistics of one feature (float64 arrays of the feature's shape)."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    count: int

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: np.asarray(getattr(self, k), np.float64).tolist() for k in STAT_KEYS}
        d["count"] = int(self.count)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureStats:
        missing = [k for k in (*STAT_KEYS, "count") if k not in d]
        if missing:
            raise KeyError(f"missing {missing}")
        return cls(**{k: np.asarray(d[k], np.float64) for k in STAT_KEYS}, count=int(d["count"]))


@dataclass(frozen=True)
class NormStats:
    """Statistics per feature name (``"action"``, ``"observation.state"``, ...)."""

    features: dict[str, FeatureStats]

    def __getitem__(self, name: str) -> FeatureStats:
        try:
            return self.features[name]
        except KeyError:
            raise KeyError(f"no statistics for {name!r}; have {sorted(self.features)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.features

    def keys(self):
        return self.features.keys()

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: stats.to_dict() for name, stats in self.features.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> NormStats:
        return cls({name: FeatureStats.from_dict(v) for name, v in d.items()})

    def to_json(self, path: str | Path) -> None:
        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def from_json(cls, path: str | Path) -> NormStats:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise DataError(f"{path}: normalization stats file is missing") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{path}: corrupt normalization stats ({type(e).__name__}: {e})") from e


class RunningStats:
    """Streaming mean/std (Chan et al. pairwise merge, float64), min/max, and a quantile sample."""

    def __init__(self, total: int | None = None, max_quantile_samples: int = 1_000_000, seed: int = 0):
        self.count = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None
        self._sample: list[np.ndarray] = []
        self._keep = 1.0 if not total or total <= max_quantile_samples else max_quantile_samples / total
        self._rng = np.random.default_rng(seed)

    def update(self, values: np.ndarray) -> None:
        """Add rows of shape (n, *feature_shape)."""
        x = np.asarray(values, np.float64)
        n = x.shape[0]
        if n == 0:
            return
        mean = x.mean(axis=0)
        m2 = ((x - mean) ** 2).sum(axis=0)
        if self._mean is None:
            self._mean, self._m2 = mean, m2
            self._min, self._max = x.min(axis=0), x.max(axis=0)
        else:
            total = self.count + n
            delta = mean - self._mean
            self._mean = self._mean + delta * (n / total)
            self._m2 = self._m2 + m2 + delta**2 * (self.count * n / total)
            self._min = np.minimum(self._min, x.min(axis=0))
            self._max = np.maximum(self._max, x.max(axis=0))
        self.count += n
        self._sample.append(x if self._keep >= 1.0 else x[self._rng.random(n) < self._keep])

    def result(self) -> FeatureStats:
        if self.count == 0:
            raise ValueError("no values to compute statistics from")
        sample = np.concatenate(self._sample)
        if len(sample) == 0:  # tiny keep probability and bad luck: fall back to the extremes
            q01, q99 = self._min, self._max
        else:
            q01, q99 = np.quantile(sample, [0.01, 0.99], axis=0)
        return FeatureStats(mean=self._mean, std=np.sqrt(self._m2 / self.count), min=self._min, max=self._max,
                            q01=q01, q99=q99, count=self.count)


def compute_stats(dataset: EpisodeDataset, features: Sequence[str] = DEFAULT_FEATURES,
                  max_quantile_samples: int = 1_000_000, seed: int = 0) -> NormStats:
    """Stats of numeric per-frame features over every episode of ``dataset`` (a dataset or a view), reading
    one episode at a time (no video decoding)."""
    for name in features:
        spec = dataset.info.features.get(name)
        if spec is None or spec.kind in ("video", "text"):
            raise ValueError(f"cannot compute stats of {name!r}; numeric features: "
                             f"{[n for n, s in dataset.info.features.items() if s.kind not in ('video', 'text')]}")
    running = {name: RunningStats(dataset.num_frames, max_quantile_samples, seed) for name in features}
    for name, values in _feature_rows(dataset, features):
        running[name].update(values)
    return NormStats({name: r.result() for name, r in running.items()})


def _feature_rows(dataset: EpisodeDataset, features: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
    for episode in dataset.iter_episodes():
        for name in features:
            values = episode.column(name)
            if name == schema.ACTION:
                values = values[1:]
            yield name, values
