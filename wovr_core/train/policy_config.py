"""Configuration of ``wovr train-policy`` (VLA supervised fine-tuning on demonstrations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from wovr_core.config import ConfigError
from wovr_core.policy.vla_config import VLAConfig


@dataclass
class OptimConfig:
    """AdamW with linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``max_steps`` (or constant)."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 200
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0

    def validate(self) -> None:
        if self.lr <= 0 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1 or self.grad_clip <= 0:
            raise ConfigError(f"invalid optimizer settings: {self}")


@dataclass
class PeriodicEvalConfig:
    """Success rate in the LIBERO twin every ``every`` steps (0: never); logged to TensorBoard."""

    every: int = 0
    suite: str = "libero_object"
    tasks: tuple[int, ...] = ()  # empty: every task of the suite
    episodes_per_task: int = 2
    workers: int = 2
    max_steps: int = 0  # episode step limit; 0: the suite's standard limit

    def validate(self) -> None:
        if self.every < 0 or self.episodes_per_task < 1 or self.workers < 1 or self.max_steps < 0:
            raise ConfigError(f"invalid periodic evaluation settings: {self}")


@dataclass
class PolicyTrainConfig:
    """What ``wovr train-policy`` trains (``model``) and how.

    ``tiny`` trains the CPU-sized VLA from scratch on a 2-core machine in tens of minutes; ``paper`` fine-tunes
    the pretrained-backbone VLA in bfloat16 on GPUs (``accelerate launch`` for several).
    """

    PRESETS: ClassVar[dict] = {
        "tiny": {},
        "paper": {
            "model": VLAConfig.PRESETS["paper"],
            "batch_size": 32,
            "max_steps": 30000,
            "optim": {"lr": 1e-4, "warmup_steps": 1000, "weight_decay": 0.0},
            "mixed_precision": "bf16",
            "augment_shift": 0.04,
            "smoothing_sigma": 0.0,
            "checkpoint_every": 2000,
            "val_every": 1000,
            "num_workers": 4,
        },
    }

    model: VLAConfig = field(default_factory=VLAConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 64
    max_steps: int = 4000
    success_only: bool = True  # imitate only episodes labeled successful
    val_fraction: float = 0.05  # whole episodes held out per task (tasks with >= 3 episodes)
    val_every: int = 250
    val_frames: int = 512
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    # Random image shift as a fraction of the image size (DrQ-style): the augmentation that most helps a
    # from-scratch vision encoder generalize from tens of demonstrations.
    augment_shift: float = 0.06
    # Gaussian target over neighbouring action bins (std in bins) for the token cross-entropy; 0 = one-hot.
    smoothing_sigma: float = 2.0
    seed: int = 0
    threads: int = 0  # torch CPU threads (0: torch's default)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    num_workers: int = 0  # DataLoader worker processes preparing batches
    eval: PeriodicEvalConfig = field(default_factory=PeriodicEvalConfig)

    # Settings a resumed run may change: when and how often things happen, not what is learned.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("max_steps", "val_every", "val_frames", "checkpoint_every",
                                            "keep_checkpoints", "log_every", "threads", "num_workers", "eval")

    def validate(self) -> None:
        if self.batch_size < 1 or self.max_steps < 1:
            raise ConfigError(f"batch_size and max_steps must be >= 1, got {self.batch_size}, {self.max_steps}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("val_every", "checkpoint_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.augment_shift < 0.5 or self.smoothing_sigma < 0:
            raise ConfigError(f"augment_shift must be in [0, 0.5) and smoothing_sigma >= 0, got "
                              f"{self.augment_shift}, {self.smoothing_sigma}")
        if self.threads < 0 or self.num_workers < 0:
            raise ConfigError("threads and num_workers must be >= 0")
