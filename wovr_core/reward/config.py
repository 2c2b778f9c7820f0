"""Configs of the success classifier (the reward model) and of its trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from wovr_core.config import ConfigError
from wovr_core.data.schema import SUCCESS_COLUMN
from wovr_core.types import RewardViewKind


def _tiny_resnet() -> dict:
    # transformers ResNetConfig kwargs: a 4-stage basic-block ResNet, ~0.3M parameters.
    return {"embedding_size": 16, "hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "layer_type": "basic"}


def _resnet18() -> dict:
    return {"embedding_size": 64, "hidden_sizes": [64, 128, 256, 512], "depths": [2, 2, 2, 2], "layer_type": "basic"}


@dataclass
class RewardModelConfig:
    """Binary success classifier on single frames: ResNet features (+ a task embedding) -> logit.

    Cameras are placed side by side into one image. Both by default: from the agentview alone, an empty
    gripper above the basket looks much like success at 128 px; the wrist camera sees into the basket.
    ``tasks`` is filled in by training (the instructions seen, in index order); with ``task_conditioning``
    the model adds a learned embedding of the task.
    """

    PRESETS: ClassVar[dict] = {"tiny": {}, "paper": {"backbone": _resnet18(), "task_embedding_dim": 64,
                                                     "head_hidden": 256}}

    cameras: tuple[str, ...] = ("agentview", "wrist")
    image_size: int = 128
    backbone: dict[str, Any] = field(default_factory=_tiny_resnet)
    task_conditioning: bool = True
    task_embedding_dim: int = 32
    head_hidden: int = 128
    tasks: tuple[str, ...] = ()
    # r = 1 when p >= threshold; an imagined episode ends at the first chunk with max p >= done_threshold.
    threshold: float = 0.5
    done_threshold: float = 0.9

    def validate(self) -> None:
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"cameras must be distinct and non-empty, got {list(self.cameras)}")
        if self.image_size < 32:
            raise ConfigError(f"image_size must be >= 32, got {self.image_size}")
        if not 0 < self.threshold < 1 or not 0 < self.done_threshold < 1:
            raise ConfigError("threshold and done_threshold must be in (0, 1)")
        if "hidden_sizes" not in self.backbone:
            raise ConfigError("backbone must be transformers ResNetConfig kwargs with 'hidden_sizes'")


@dataclass
class RewardTrainConfig:
    """``wovr train-reward``. Labels: a frame is positive when the episode's success predicate holds at that
    frame (the per-frame ``success`` column when the dataset has one, else the last ``success_tail_frames``
    frames of an episode labelled successful: the twin's collector stops that many frames after LIBERO's
    predicate first holds). Unlabelled episodes are skipped.

    Episodes: ``test_fraction`` is held out for the final report (never seen in training or model
    selection); ``val_fraction`` of the rest picks the best step (early stopping)."""

    PRESETS: ClassVar[dict] = {"tiny": {}, "paper": {"model": RewardModelConfig.PRESETS["paper"], "lr": 3e-4,
                                                     "batch_size": 128, "max_steps": 20_000, "val_every": 500}}

    model: RewardModelConfig = field(default_factory=RewardModelConfig)
    success_column: str = SUCCESS_COLUMN
    success_tail_frames: int = 6
    # Negatives kept per successful episode in the training bank: evenly spaced, plus every frame of the
    # ``hard_negative_frames`` before success (they look most like success). Failed episodes keep every frame.
    negatives_per_episode: int = 48
    hard_negative_frames: int = 24
    # Share of positives in a batch; the model's logits are corrected back to the real share afterwards.
    positive_fraction: float = 0.5
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_steps: int = 3000
    val_every: int = 100
    patience: int = 8
    test_fraction: float = 0.25
    val_fraction: float = 0.15
    # Augmentation: random translation by up to this many pixels and brightness/contrast jitter.
    shift_pixels: int = 6
    color_jitter: float = 0.1
    # How a reward model for imagination meets frames, when trained with a world model (its view of each episode,
    # wovr_core.world_model.replay): "camera" (camera frames only), "codec" (each frame through the world model's
    # codec), "imagined" (imagined replay of the recorded actions, re-anchored on real frames every
    # ``view_anchor_every`` chunks).
    world_model_view: RewardViewKind = "imagined"
    view_anchor_every: int = 1
    # Share of each batch seen through that view.
    viewed_fraction: float = 0.5
    calibration_bins: int = 10
    seed: int = 0
    threads: int = 0

    def validate(self) -> None:
        if self.success_tail_frames < 1:
            raise ConfigError("success_tail_frames must be >= 1")
        if not 0 <= self.viewed_fraction <= 1:
            raise ConfigError(f"viewed_fraction must be in [0, 1], got {self.viewed_fraction}")
        if self.view_anchor_every < 1:
            raise ConfigError(f"view_anchor_every must be >= 1, got {self.view_anchor_every}")
        if not 0 < self.positive_fraction < 1:
            raise ConfigError("positive_fraction must be in (0, 1)")
        if not 0 < self.test_fraction < 1 or not 0 < self.val_fraction < 1:
            raise ConfigError("test_fraction and val_fraction must be in (0, 1): accuracy is measured on held-out "
                              "episodes and the best step is chosen on others")
        if self.batch_size < 2 or self.max_steps < 0 or self.val_every < 1 or self.patience < 1:
            raise ConfigError("batch_size >= 2, max_steps >= 0, val_every >= 1 and patience >= 1 are required")
