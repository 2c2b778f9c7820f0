"""Configs of RL in imagination: the imagined environment, masked GRPO, keyframe starts (KIR), the trainer.

Values marked (paper) / (ref) come from arXiv 2602.13977 and its reference code; the rest are our choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from wovr_core.config import ConfigError
from wovr_core.world_model.config import check_action_guidance

KEYFRAME_SOURCES = ("operator", "intervention", "failure", "drop", "stall", "grasp")
"""Where keyframes come from: marked by the operator while recording, or mined from policy rollouts."""


@dataclass
class GRPOConfig:
    """Masked GRPO (DESIGN.md section 4): group-relative advantages, asymmetric PPO clip, no KL, no entropy."""

    group_size: int = 8  # (paper) rollouts per start
    clip_low: float = 0.2  # (ref) ratio clipped to [1 - clip_low, 1 + clip_high]
    clip_high: float = 0.28  # (ref)
    advantage_eps: float = 1e-6  # (paper) A = (R - mean) / (std + eps)
    # A group is dropped when max(R) - min(R) <= this: its advantages would be 0 (or amplified float noise).
    equal_returns_tol: float = 1e-6
    # (paper) the loss ends at the first success: what follows it is the world model's (and reward model's)
    # least reliable part. False is the "w/o post-success masking" ablation.
    mask_after_success: bool = True

    def validate(self) -> None:
        if self.group_size < 2:
            raise ConfigError(f"grpo.group_size must be >= 2 (advantages are relative within a group), "
                              f"got {self.group_size}")
        if not 0 < self.clip_low < 1 or self.clip_high <= 0:
            raise ConfigError(f"grpo.clip_low must be in (0, 1) and clip_high > 0, got {self.clip_low}, "
                              f"{self.clip_high}")
        if self.advantage_eps <= 0 or self.equal_returns_tol < 0:
            raise ConfigError("grpo.advantage_eps must be > 0 and equal_returns_tol >= 0")


@dataclass
class EnvConfig:
    """The imagined environment: chunks of ``chunk_size`` actions, success-probability-difference rewards."""

    chunk_size: int = 8  # (paper) frames imagined per call = actions per policy call
    memory_frames: int = 4  # (paper) frames of context after the anchor o_0
    max_steps: int = 256  # (paper) horizon in control steps (32 chunks)
    reward_scale: float = 5.0  # (paper) r_t = scale * (s_t - s_{t-1})
    done_threshold: float = 0.9  # (paper) terminate at the first chunk whose max frame probability reaches it
    # Which frame's probability is a chunk's score. "last" (ref: per-frame differences summed over the chunk)
    # or "max" (consistent with the termination test).
    reward_frame: Literal["last", "max"] = "last"
    # s_t: "success" = 1 when the score reaches success_threshold, else 0 (the paper's r = 1 at p >= 0.5);
    # "probability" = the score itself. With probabilities, a group where nothing happens still has returns
    # that differ by the reward model's noise (1e-6..1e-4), which GRPO's normalized advantages blow up to
    # +-1: the policy would be trained on noise. Measured with benchmarks/imagined_success.py.
    reward_signal: Literal["success", "probability"] = "success"
    success_threshold: float = 0.5  # (paper)
    # Imagine with this action guidance instead of the world model's own (WorldModelConfig.action_guidance;
    # needs a model trained with action_dropout > 0); None: the model's.
    action_guidance: float | None = None

    @property
    def max_chunks(self) -> int:
        return self.max_steps // self.chunk_size

    def validate(self) -> None:
        if self.chunk_size < 1 or self.memory_frames < 1:
            raise ConfigError("env.chunk_size and env.memory_frames must be >= 1")
        if self.max_steps < self.chunk_size or self.max_steps % self.chunk_size:
            raise ConfigError(f"env.max_steps ({self.max_steps}) must be a positive multiple of env.chunk_size "
                              f"({self.chunk_size})")
        if not 0 < self.done_threshold <= 1:
            raise ConfigError(f"env.done_threshold must be in (0, 1], got {self.done_threshold}")
        if not 0 < self.success_threshold <= 1:
            raise ConfigError(f"env.success_threshold must be in (0, 1], got {self.success_threshold}")
        if self.action_guidance is not None:
            check_action_guidance(self.action_guidance)


def _default_source_weights() -> dict[str, float]:
    # Failure-related states first: that is where the policy has most to learn (our choice, to be measured).
    return {"operator": 1.0, "intervention": 1.0, "failure": 1.0, "drop": 1.0, "stall": 0.5, "grasp": 0.5}


@dataclass
class KeyframeConfig:
    """Keyframe-Initialized Rollouts: which starts, how often. The paper leaves both open; these are ours."""

    kir_share: float = 0.5  # fraction of groups that start from a keyframe (the rest from an episode's o_0)
    # Relative weight of each keyframe source in a keyframe draw; sources not listed get 0.
    source_weights: dict[str, float] = field(default_factory=_default_source_weights)
    lead_frames: int = 8  # "shortly before": mined keyframes sit this many frames before the detected event
    drop_threshold: float = 0.3  # a success-probability fall of this much from a running peak is a drop
    stall_frames: int = 40  # no progress over this many frames (below success_threshold) is a stall
    stall_floor: float = 0.1  # ... once the probability has risen this far (before, there is no progress to stall)
    stall_tolerance: float = 0.05  # ... where progress means the running max rising by more than this
    success_threshold: float = 0.5  # (paper) p >= this reads as success
    min_gap_frames: int = 8  # keyframes of one source closer than this in an episode are merged
    seed: int = 0

    def validate(self) -> None:
        if not 0 <= self.kir_share <= 1:
            raise ConfigError(f"keyframes.kir_share must be in [0, 1], got {self.kir_share}")
        unknown = sorted(set(self.source_weights) - set(KEYFRAME_SOURCES))
        if unknown:
            raise ConfigError(f"keyframes.source_weights: unknown sources {unknown}; known: {list(KEYFRAME_SOURCES)}")
        if any(w < 0 for w in self.source_weights.values()):
            raise ConfigError("keyframes.source_weights must be >= 0")
        if self.lead_frames < 0 or self.stall_frames < 2 or self.min_gap_frames < 0:
            raise ConfigError("keyframes.lead_frames >= 0, stall_frames >= 2 and min_gap_frames >= 0 are required")


@dataclass
class TrainerConfig:
    """One GRPO update per batch of imagined rollouts."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    temperature: float = 1.6  # (ref) sampling and log-prob temperature
    epochs: int = 1  # passes over a rollout batch
    minibatches: int = 1  # optimizer steps per pass (> 1 makes the PPO ratio and its clip matter)
    micro_batch_size: int = 64  # chunk steps per forward/backward (gradient accumulation)
    max_grad_norm: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        if self.lr <= 0 or self.temperature <= 0:
            raise ConfigError("trainer.lr and trainer.temperature must be > 0")
        if self.epochs < 1 or self.minibatches < 1 or self.micro_batch_size < 1:
            raise ConfigError("trainer.epochs, minibatches and micro_batch_size must be >= 1")
        if self.max_grad_norm <= 0:
            raise ConfigError("trainer.max_grad_norm must be > 0")


@dataclass
class RLConfig:
    """Everything one GRPO-in-imagination stage needs (``wovr retrain`` composes it with the models)."""

    PRESETS: ClassVar[dict] = {
        "tiny": {},
        # GPU scale. Our starting point, not published values: the paper gives group size, clip range,
        # temperature and horizon (the defaults), not the batch size or learning rate.
        "paper": {"groups_per_update": 32, "trainer.lr": 2e-5, "trainer.micro_batch_size": 32},
    }

    env: EnvConfig = field(default_factory=EnvConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # Read by the stage driver (``wovr retrain``): starts drawn per update (x group_size rollouts), updates per stage.
    groups_per_update: int = 4
    updates: int = 20

    def validate(self) -> None:
        if self.groups_per_update < 1 or self.updates < 0:
            raise ConfigError("groups_per_update must be >= 1 and updates >= 0")
