"""Observation dicts -> model inputs: the one preprocessing path shared by SFT, RL and serving.

Two numpy stages, then tensors:

1. the checkpoint's declared transforms (``wovr_core.transforms``: resize images, z-score the state; for
   training also q01/q99-normalize the action chunk) -- see :func:`vla_transform_specs`;
2. :class:`VLAFeaturizer`: stack cameras, tokenize the instruction, bin the normalized actions;
3. :func:`collate` -> :class:`VLABatch` of tensors. Training-only image augmentation: :meth:`VLABatch.augmented`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from wovr_core.errors import WovrError
from wovr_core.policy.action_tokenizer import ActionTokenizer
from wovr_core.policy.base import ACTIONS_KEY, IMAGE_KEY_PREFIX, STATE_KEY, TASK_KEY
from wovr_core.policy.task_tokenizer import TaskTokenizer
from wovr_core.policy.vla_config import VLAConfig
from wovr_core.types import STATE_DIM

ACTION_KEY = "action"
"""In a training sample: the (chunk_size, action_dim) actions to execute after this observation (robot units);
also the name of the action statistics in ``norm_stats.json``."""


class ObservationError(WovrError, ValueError):
    """An observation the policy cannot use (missing key, wrong shape or dtype, NaN); nothing was run."""


def vla_transform_specs(config: VLAConfig, image_size: int) -> dict[str, list]:
    """The transforms a VLA checkpoint declares in ``config.json`` (inputs before the model, outputs after)."""
    inputs: list[dict] = [{"type": "resize_images", "height": image_size, "width": image_size, "pad": True,
                           "keys": [IMAGE_KEY_PREFIX + c for c in config.cameras]}]
    if config.use_state:
        inputs.append({"type": "normalize", "keys": [STATE_KEY], "mode": "mean_std"})
    outputs = [{"type": "unnormalize", "keys": {ACTIONS_KEY: ACTION_KEY}, "mode": "quantile",
                "masks": {ACTIONS_KEY: list(config.normalize_action_dims)}}]
    return {"inputs": inputs, "outputs": outputs}


def action_normalize_spec(config: VLAConfig) -> dict:
    """Training-side inverse of the output transform: robot-unit action chunk -> [-1, 1] (before binning)."""
    return {"type": "normalize", "keys": [ACTION_KEY], "mode": "quantile",
            "masks": {ACTION_KEY: list(config.normalize_action_dims)}}


@dataclass(frozen=True, eq=False)
class VLAFeaturizer:
    """A transformed observation (plus, for training, its normalized action chunk) -> fixed-shape arrays.

    Output keys: ``images`` (cameras, S, S, 3) uint8, ``text_ids`` (L,) int64, ``text_mask`` (L,) bool,
    ``state`` (STATE_DIM,) float32 when ``use_state``, and with ``with_action`` ``action_tokens``
    (chunk * dim,) int64.
    """

    cameras: tuple[str, ...]
    image_size: int
    tokenizer: TaskTokenizer
    action_tokenizer: ActionTokenizer
    use_state: bool = True

    def __call__(self, sample: Mapping, with_action: bool = False) -> dict[str, np.ndarray]:
        if not isinstance(sample, Mapping):
            raise ObservationError(f"observation must be a mapping, got {type(sample).__name__}")
        out = {"images": np.stack([self._image(sample, camera) for camera in self.cameras])}
        task = sample.get(TASK_KEY)
        if not isinstance(task, str):
            raise ObservationError(f"observation needs {TASK_KEY!r} (the instruction string), "
                                   f"got {type(task).__name__}")
        out["text_ids"], out["text_mask"] = self.tokenizer.encode(task)
        if self.use_state:
            out["state"] = self._vector(sample, STATE_KEY, STATE_DIM)
        if with_action:
            if ACTION_KEY not in sample:
                raise ObservationError(f"training sample is missing {ACTION_KEY!r}")
            try:
                out["action_tokens"] = self.action_tokenizer.encode(sample[ACTION_KEY])
            except ValueError as e:
                raise ObservationError(f"{ACTION_KEY!r}: {e}") from None
        return out

    def _image(self, sample: Mapping, camera: str) -> np.ndarray:
        key = IMAGE_KEY_PREFIX + camera
        if key not in sample:
            raise ObservationError(f"observation is missing {key!r} (this policy uses cameras {list(self.cameras)})")
        image = np.asarray(sample[key])
        expected = (self.image_size, self.image_size, 3)
        if image.shape != expected or image.dtype != np.uint8:
            raise ObservationError(f"{key!r} must be a uint8 RGB image of shape {expected} after resizing, "
                                   f"got {image.dtype} {image.shape}")
        return np.ascontiguousarray(image)

    @staticmethod
    def _vector(sample: Mapping, key: str, dim: int) -> np.ndarray:
        if key not in sample:
            raise ObservationError(f"observation is missing {key!r} ({dim} floats)")
        try:
            value = np.asarray(sample[key], dtype=np.float32)
        except (TypeError, ValueError):
            raise ObservationError(f"{key!r} must be {dim} numbers") from None
        if value.shape != (dim,):
            raise ObservationError(f"{key!r} must have shape ({dim},), got {value.shape}")
        if not np.isfinite(value).all():
            raise ObservationError(f"{key!r} holds NaN or inf: {value.tolist()}")
        return value


@dataclass(frozen=True)
class VLABatch:
    """Model inputs for B observations (tensors on one device)."""

    images: torch.Tensor  # (B, cameras, S, S, 3) uint8
    text_ids: torch.Tensor  # (B, L) int64
    text_mask: torch.Tensor  # (B, L) bool
    state: torch.Tensor | None = None  # (B, STATE_DIM) float32, normalized

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> VLABatch:
        return VLABatch(images=self.images.to(device), text_ids=self.text_ids.to(device),
                        text_mask=self.text_mask.to(device),
                        state=None if self.state is None else self.state.to(device))

    def repeat(self, times: int) -> VLABatch:
        """Each observation ``times`` times in a row (a GRPO group shares one start)."""
        def rep(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.repeat_interleave(times, dim=0)
        return VLABatch(images=rep(self.images), text_ids=rep(self.text_ids), text_mask=rep(self.text_mask),
                        state=rep(self.state))

    def augmented(self, generator: torch.Generator | None = None, max_shift: int = 8) -> VLABatch:
        """Random image shifts of up to ``max_shift`` px (edge-padded, independent per image): the standard cheap
        augmentation that lets a from-scratch vision encoder learn from tens of demonstrations. Training only."""
        if max_shift <= 0:
            return self
        b, c, h, w, _ = self.images.shape
        flat = self.images.reshape(b * c, h, w, 3).permute(0, 3, 1, 2).float()
        padded = F.pad(flat, (max_shift,) * 4, mode="replicate")
        offsets = torch.randint(0, 2 * max_shift + 1, (b * c, 2), generator=generator,
                                device=generator.device if generator is not None else "cpu").tolist()
        shifted = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])
        images = shifted.round().to(torch.uint8).permute(0, 2, 3, 1).reshape(b, c, h, w, 3)
        return replace(self, images=images)


def collate(items: Sequence[Mapping[str, np.ndarray]]) -> tuple[VLABatch, torch.Tensor | None]:
    """Stack :class:`VLAFeaturizer` outputs -> (batch, action tokens (B, chunk*dim) or None)."""
    if not items:
        raise ValueError("cannot collate an empty list of samples")

    def stack(key: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([item[key] for item in items]))

    batch = VLABatch(images=stack("images"), text_ids=stack("text_ids"), text_mask=stack("text_mask"),
                     state=stack("state") if "state" in items[0] else None)
    with_tokens = ["action_tokens" in item for item in items]
    if any(with_tokens) and not all(with_tokens):
        raise ValueError("either every sample or none must carry an action chunk")
    return batch, (stack("action_tokens") if all(with_tokens) else None)
