"""Composable data transforms, the SAME code in training and in serving (model: openpi's transforms).

A transform is a frozen dataclass called on a sample dict and returning a new dict (inputs are never
modified in place). Transforms are numpy-only so the robot side and the server can run them without torch.
A checkpoint stores its transforms as a list of specs (``{"type": "normalize", ...}``) in ``config.json`` and
its statistics in ``norm_stats.json``; :func:`transforms_from_specs` rebuilds exactly what training used::

    specs = [{"type": "normalize", "keys": {"observation.state": "observation.state"}, "mode": "mean_std"}]
    inputs = transforms_from_specs(specs, load_norm_stats(ckpt / "norm_stats.json"))
    sample = inputs(sample)

Normalization statistics file (one entry per feature, each value a per-dimension list)::

    {"action": {"mean": [...], "std": [...], "min": [...], "max": [...], "q01": [...], "q99": [...], "count": N},
     "observation.state": {...}}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from wovr_core.config import ConfigError, did_you_mean
from wovr_core.errors import DataError

IMAGE_KEY_PREFIX = "observation.images."
NormMode = Literal["mean_std", "quantile", "min_max"]
# Below this a dimension is treated as constant: dividing by its spread would blow noise up to huge values.
_MIN_SPREAD = 1e-6


class DataTransform(Protocol):
    def __call__(self, data: dict) -> dict: ...


# ----------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True, eq=False)
class NormStats:
    """Per-dimension statistics of one feature (float32 vectors of equal length)."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    count: int = 0

    FIELDS: ClassVar[tuple[str, ...]] = ("mean", "std", "min", "max", "q01", "q99")

    def __post_init__(self) -> None:
        dims = {np.shape(getattr(self, name)) for name in self.FIELDS}
        if len(dims) != 1 or len(next(iter(dims))) != 1:
            raise ValueError(f"NormStats fields must be 1-D vectors of one length, got shapes {sorted(dims)}")

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str = "stats") -> NormStats:
        if not isinstance(data, Mapping):
            raise ValueError(f"{name}: expected a mapping of statistics, got {type(data).__name__}")
        missing = [f for f in (*cls.FIELDS, "count") if f not in data]
        if missing:
            raise ValueError(f"{name}: missing statistics {missing}")
        arrays = {}
        for f in cls.FIELDS:
            try:
                arrays[f] = np.asarray(data[f], dtype=np.float32)
            except (TypeError, ValueError):
                raise ValueError(f"{name}.{f}: expected a list of numbers") from None
            if arrays[f].ndim != 1 or not np.all(np.isfinite(arrays[f])):
                raise ValueError(f"{name}.{f}: expected a 1-D list of finite numbers")
        count = data["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{name}.count: expected a non-negative integer, got {count!r}")
        return cls(**arrays, count=count)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {f: getattr(self, f).astype(float).tolist() for f in self.FIELDS}
        out["count"] = int(self.count)
        return out

    @classmethod
    def compute(cls, values: np.ndarray) -> NormStats:
        """Statistics of ``values`` (N, D), e.g. every action of a dataset."""
        x = np.asarray(values, dtype=np.float64).reshape(-1, np.shape(values)[-1])
        if x.shape[0] == 0:
            raise ValueError("cannot compute statistics of zero samples")
        q01, q99 = np.quantile(x, [0.01, 0.99], axis=0)
        return cls(mean=x.mean(0).astype(np.float32), std=x.std(0).astype(np.float32),
                   min=x.min(0).astype(np.float32), max=x.max(0).astype(np.float32),
                   q01=q01.astype(np.float32), q99=q99.astype(np.float32), count=int(x.shape[0]))


def load_norm_stats(path: str | Path) -> dict[str, NormStats]:
    """Read ``norm_stats.json``; any problem is a DataError that names the file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: normalization statistics file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON file: {e}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a mapping of feature name -> statistics")
    try:
        return {name: NormStats.from_dict(value, name) for name, value in raw.items()}
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None


def save_norm_stats(stats: Mapping[str, NormStats], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({k: v.to_dict() for k, v in stats.items()}, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------- composition
@dataclass(frozen=True)
class Compose:
    """Apply transforms in order."""

    transforms: tuple[DataTransform, ...] = ()

    def __call__(self, data: dict) -> dict:
        for transform in self.transforms:
            data = transform(data)
        return data


def compose(transforms: Iterable[DataTransform]) -> Compose:
    return Compose(tuple(transforms))


# --------------------------------------------------------------------------------------- normalization
def _spread(stats: NormStats, mode: NormMode) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) such that normalized = (x - offset) / scale."""
    if mode == "mean_std":
        offset, scale = stats.mean, stats.std
    elif mode == "quantile":  # q01 -> -1, q99 -> +1
        offset, scale = (stats.q01 + stats.q99) / 2, (stats.q99 - stats.q01) / 2
    elif mode == "min_max":  # min -> -1, max -> +1
        offset, scale = (stats.min + stats.max) / 2, (stats.max - stats.min) / 2
    else:
        raise ConfigError(f"unknown normalization mode {mode!r}; use mean_std, quantile or min_max")
    return offset, np.where(scale < _MIN_SPREAD, 1.0, scale).astype(np.float32)


@dataclass(frozen=True, eq=False)
class _StatsTransform:
    """Shared by Normalize/Unnormalize: per-key stats, a mode and optional per-dimension masks."""

    stats: Mapping[str, NormStats]
    mode: NormMode = "mean_std"
    # Dimensions with mask False pass through unchanged (e.g. the gripper command, already -1/+1).
    masks: Mapping[str, tuple[bool, ...]] = field(default_factory=dict)
    strict: bool = False  # True: a key with statistics must be present in every sample

    def __post_init__(self) -> None:
        for key, stats in self.stats.items():
            _spread(stats, self.mode)  # fail at construction on a bad mode
            mask = self.masks.get(key)
            if mask is not None and len(mask) != stats.dim:
                raise ConfigError(f"normalization mask for {key!r} has {len(mask)} entries, stats have {stats.dim}")

    def _apply(self, data: dict, forward: bool) -> dict:
        out = dict(data)
        for key, stats in self.stats.items():
            if key not in out:
                if self.strict:
                    raise KeyError(f"{type(self).__name__}: sample has no {key!r}; keys: {sorted(out)}")
                continue
            x = np.asarray(out[key], dtype=np.float32)
            if x.shape[-1:] != (stats.dim,):
                raise ValueError(f"{type(self).__name__}: {key!r} has shape {x.shape}, statistics have {stats.dim} dims")
            offset, scale = _spread(stats, self.mode)
            y = (x - offset) / scale if forward else x * scale + offset
            mask = self.masks.get(key)
            if mask is not None:
                y = np.where(np.asarray(mask, dtype=bool), y, x)
            out[key] = y.astype(np.float32)
        return out


class Normalize(_StatsTransform):
    """Map features to roughly [-1, 1] (quantile/min_max) or zero mean, unit std (mean_std)."""

    def __call__(self, data: dict) -> dict:
        return self._apply(data, forward=True)


class Unnormalize(_StatsTransform):
    """Inverse of :class:`Normalize` with the same statistics and mode."""

    def __call__(self, data: dict) -> dict:
        return self._apply(data, forward=False)


# ------------------------------------------------------------------------------------------------ images
@dataclass(frozen=True)
class ResizeImages:
    """Resize every ``observation.images.*`` (or the given keys) to (height, width), uint8 (..., H, W, 3).

    ``pad=True`` keeps the aspect ratio and pads with black (openpi's resize_with_pad), so objects are never
    squashed differently in training and serving.
    """

    height: int
    width: int
    keys: tuple[str, ...] | None = None
    pad: bool = True

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ConfigError(f"ResizeImages needs a positive size, got {self.height}x{self.width}")

    def __call__(self, data: dict) -> dict:
        out = dict(data)
        keys = self.keys if self.keys is not None else [k for k in data if k.startswith(IMAGE_KEY_PREFIX)]
        for key in keys:
            if key in out:
                out[key] = self._resize(np.asarray(out[key]), key)
        return out

    def _resize(self, images: np.ndarray, key: str) -> np.ndarray:
        if images.ndim < 3 or images.shape[-1] != 3:
            raise ValueError(f"ResizeImages: {key!r} must be (..., H, W, 3), got {images.shape}")
        if images.shape[-3:-1] == (self.height, self.width):
            return images
        flat = images.reshape(-1, *images.shape[-3:])
        resized = np.stack([self._resize_one(img) for img in flat])
        return resized.reshape(*images.shape[:-3], self.height, self.width, 3)

    def _resize_one(self, image: np.ndarray) -> np.ndarray:
        import cv2  # only when resizing happens; keeps the import of this module cheap

        h, w = image.shape[:2]
        if self.pad:
            ratio = min(self.height / h, self.width / w)
            new_h, new_w = max(1, round(h * ratio)), max(1, round(w * ratio))
        else:
            new_h, new_w = self.height, self.width
        # INTER_AREA avoids aliasing when shrinking; INTER_LINEAR is the sensible choice when enlarging.
        interp = cv2.INTER_AREA if new_h * new_w < h * w else cv2.INTER_LINEAR
        resized = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=interp)
        if (new_h, new_w) == (self.height, self.width):
            return resized
        canvas = np.zeros((self.height, self.width, 3), dtype=image.dtype)
        top, left = (self.height - new_h) // 2, (self.width - new_w) // 2
        canvas[top:top + new_h, left:left + new_w] = resized
        return canvas


def resize_images(images: np.ndarray, height: int, width: int, pad: bool = True) -> np.ndarray:
    """One image array (..., H, W, 3) resized as :class:`ResizeImages` does; returned as is at that size."""
    return ResizeImages(height, width, keys=("images",), pad=pad)({"images": images})["images"]


# ----------------------------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class DeltaActions:
    """Absolute -> relative-to-state for masked action dims (actions (..., T, D), state (..., S))."""

    mask: tuple[bool, ...]
    action_key: str = "actions"
    state_key: str = "observation.state"

    def __call__(self, data: dict) -> dict:
        return _shift_actions(data, self, sign=-1.0)


@dataclass(frozen=True)
class AbsoluteActions:
    """Inverse of :class:`DeltaActions`: relative-to-state -> absolute for masked dims."""

    mask: tuple[bool, ...]
    action_key: str = "actions"
    state_key: str = "observation.state"

    def __call__(self, data: dict) -> dict:
        return _shift_actions(data, self, sign=1.0)


def _shift_actions(data: dict, t: DeltaActions | AbsoluteActions, sign: float) -> dict:
    if t.action_key not in data:
        return data
    out = dict(data)
    actions = np.asarray(data[t.action_key], dtype=np.float32)
    state = np.asarray(data[t.state_key], dtype=np.float32)
    n = len(t.mask)
    if actions.shape[-1] < n or state.shape[-1] < n:
        raise ValueError(f"{type(t).__name__}: mask has {n} dims but actions are {actions.shape}, "
                         f"state is {state.shape}")
    offset = np.where(np.asarray(t.mask), state[..., :n], 0.0).astype(np.float32)
    shifted = actions.copy()
    shifted[..., :n] += sign * offset[..., None, :]
    out[t.action_key] = shifted
    return out


@dataclass(frozen=True)
class RenameKeys:
    """Rename keys (e.g. a dataset's ``action`` to a policy's ``actions``); unmapped keys are kept."""

    mapping: Mapping[str, str]

    def __call__(self, data: dict) -> dict:
        return {self.mapping.get(k, k): v for k, v in data.items()}


# -------------------------------------------------------------------------------------- (de)serialization
TRANSFORM_TYPES: dict[str, type] = {
    "normalize": Normalize,
    "unnormalize": Unnormalize,
    "resize_images": ResizeImages,
    "delta_actions": DeltaActions,
    "absolute_actions": AbsoluteActions,
    "rename_keys": RenameKeys,
}


def transform_from_spec(spec: Mapping[str, Any], norm_stats: Mapping[str, NormStats] | None = None) -> DataTransform:
    """Build one transform from ``{"type": name, **fields}``.

    (Un)normalize specs name their statistics with ``"keys"``: a list of keys, or a mapping sample key ->
    statistics key (``{"actions": "action"}``), looked up in ``norm_stats``.
    """
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"a transform spec must be a mapping with a 'type', got {spec!r}")
    kind = spec["type"]
    if kind not in TRANSFORM_TYPES:
        raise ConfigError(f"unknown transform type {kind!r}; known: {sorted(TRANSFORM_TYPES)}."
                          + did_you_mean(str(kind), TRANSFORM_TYPES))
    cls = TRANSFORM_TYPES[kind]
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    if cls in (Normalize, Unnormalize):
        kwargs = _stats_kwargs(kind, kwargs, norm_stats or {})
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ConfigError(f"transform {kind!r}: unknown fields {unknown}; valid: {sorted(valid)}."
                          + did_you_mean(unknown[0], valid))
    for name in ("keys", "mask"):
        if isinstance(kwargs.get(name), list):
            kwargs[name] = tuple(kwargs[name])
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"transform {kind!r}: {e}") from None


def _stats_kwargs(kind: str, kwargs: dict, norm_stats: Mapping[str, NormStats]) -> dict:
    keys = kwargs.pop("keys", None)
    if keys is None:
        raise ConfigError(f"transform {kind!r} needs 'keys' (a list, or a mapping sample key -> stats key)")
    mapping = dict(keys) if isinstance(keys, Mapping) else {k: k for k in keys}
    stats = {}
    for data_key, stats_key in mapping.items():
        if stats_key not in norm_stats:
            raise ConfigError(f"transform {kind!r}: no normalization statistics for {stats_key!r}; "
                              f"available: {sorted(norm_stats)}." + did_you_mean(stats_key, norm_stats))
        stats[data_key] = norm_stats[stats_key]
    masks = {k: tuple(bool(b) for b in v) for k, v in (kwargs.pop("masks", None) or {}).items()}
    return {**kwargs, "stats": stats, "masks": masks}


def transforms_from_specs(specs: Sequence[Mapping[str, Any]] | None,
                          norm_stats: Mapping[str, NormStats] | None = None) -> Compose:
    return compose(transform_from_spec(s, norm_stats) for s in (specs or ()))
