"""The success classifier: p(task accomplished | one frame [, task]).

Backbone: transformers' ``ResNetModel`` (ResNet-18 in the ``paper`` preset, as in the WoVR reference; a
small ResNet for ``tiny``), trained from scratch; the task enters as a learned embedding concatenated with
the pooled image features. Checkpoint directory::

    config.json          RewardModelConfig (with the task list)
    model.safetensors    weights
    metrics.json         held-out evaluation written by training (optional)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wovr_core.config import ConfigError, load_config, save_config
from wovr_core.errors import DataError
from wovr_core.reward.config import RewardModelConfig
from wovr_core.transforms import resize_images

WEIGHTS_FILE = "model.safetensors"


class SuccessClassifier(nn.Module):
    """Frames (cameras side by side) + task index -> success logit."""

    def __init__(self, config: RewardModelConfig):
        from transformers import ResNetConfig, ResNetModel

        super().__init__()
        config.validate()
        self.config = config
        self.backbone = ResNetModel(ResNetConfig(num_channels=3, **config.backbone))
        features = int(config.backbone["hidden_sizes"][-1])
        self.task_embedding = None
        if config.task_conditioning:
            if not config.tasks:
                raise ConfigError("task_conditioning needs the task list (config.tasks), filled in by training")
            self.task_embedding = nn.Embedding(len(config.tasks), config.task_embedding_dim)
            features += config.task_embedding_dim
        self.head = nn.Sequential(nn.Linear(features, config.head_hidden), nn.ReLU(), nn.Linear(config.head_hidden, 1))
        # Training sees success frames far more often than they occur (balanced batches); this constant,
        # log-odds(true frame prior) - log-odds(training prior), turns its logits back into probabilities of
        # the real frame distribution (prior correction). Set by training, saved with the weights.
        self.register_buffer("logit_offset", torch.zeros(()))
        self._task_index = {t: i for i, t in enumerate(config.tasks)}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def task_indices(self, tasks: str | Sequence[str], n: int) -> torch.Tensor:
        names = [tasks] * n if isinstance(tasks, str) else list(tasks)
        if len(names) != n:
            raise ValueError(f"{len(names)} tasks for {n} frames")
        unknown = sorted({t for t in names if t not in self._task_index})
        if unknown and self.task_embedding is not None:
            raise ValueError(f"tasks {unknown} were not seen in training; known: {list(self.config.tasks)}")
        return torch.tensor([self._task_index.get(t, 0) for t in names], dtype=torch.long, device=self.device)

    def forward(self, images: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, V W) in [-1, 1] -> calibrated logits (N,) (see ``logit_offset``)."""
        return self.balanced_logits(images, task_index) + self.logit_offset

    def balanced_logits(self, images: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        """Logits under the training prior (what the class-balanced training loss sees)."""
        features = self.backbone(images).pooler_output.flatten(1)
        if self.task_embedding is not None:
            features = torch.cat([features, self.task_embedding(task_index)], dim=1)
        return self.head(features).squeeze(1)

    # ---- numpy in, numpy out ---------------------------------------------------------------------------
    def to_images(self, frames: dict[str, np.ndarray]) -> torch.Tensor:
        """camera -> (N, H, W, 3) uint8 (resized to image_size if needed) -> (N, 3, S, V S) in [-1, 1]."""
        size = self.config.image_size
        views = []
        for cam in self.config.cameras:
            if cam not in frames:
                raise ValueError(f"frames are missing camera {cam!r}; this reward model uses {list(self.config.cameras)}")
            x = np.asarray(frames[cam])
            if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
                raise ValueError(f"frames[{cam!r}] must be (N, H, W, 3) uint8, got {x.shape} {x.dtype}")
            views.append(torch.as_tensor(resize_images(x, size, size)))
        image = torch.cat(views, dim=2).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return image.to(self.device)

    @torch.no_grad()
    def success_probability(self, frames: dict[str, np.ndarray], tasks: str | Sequence[str],
                            batch_size: int = 256) -> np.ndarray:
        """p(success) per frame: camera -> (N, H, W, 3) uint8, one task or one per frame -> (N,) float."""
        n = len(next(iter(frames.values())))
        index = self.task_indices(tasks, n)
        out = []
        was_training = self.training
        self.eval()
        for lo in range(0, n, batch_size):
            images = self.to_images({c: v[lo:lo + batch_size] for c, v in frames.items()})
            out.append(torch.sigmoid(self(images, index[lo:lo + batch_size]).float()).cpu())
        self.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    # ---- files ------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_config(self.config, directory)
        save_model(self, str(directory / WEIGHTS_FILE))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> SuccessClassifier:
        from safetensors.torch import load_model

        directory = Path(directory).expanduser()
        if not directory.is_dir():
            raise DataError(f"{directory}: reward model checkpoint not found")
        try:
            config = load_config(directory / "config.json", RewardModelConfig)
        except ValueError as e:  # unparseable JSON or fields that do not fit (ConfigError names the file)
            raise DataError(f"{directory / 'config.json'}: unreadable reward model config ({e})") from None
        model = cls(config)
        path = directory / WEIGHTS_FILE
        try:
            missing, unexpected = load_model(model, str(path), strict=False)
        except FileNotFoundError:
            raise DataError(f"{path}: reward model weights not found") from None
        except Exception as e:  # safetensors raises several types for corrupt files
            raise DataError(f"{path}: unreadable reward model weights ({type(e).__name__}: {e})") from None
        if missing or unexpected:
            raise DataError(f"{path}: weights do not match config.json (missing {missing}, unexpected {unexpected})")
        model.eval()
        return model.to(device) if device is not None else model


def load_frame_scorer(directory: str | Path):
    """``score(frames, tasks) -> p(success)`` of a saved reward model (what world-model evaluation needs)."""
    model = SuccessClassifier.load(directory)
    return model.success_probability
