"""Configs of the action-conditioned video world model and of its trainer.

Shapes the design fixes (DESIGN.md section 4): a context of ``1 + memory_frames`` frames (the episode's
first frame ``o_0``, never overwritten, then the last ``memory_frames`` frames) and chunks of
``chunk_frames`` generated frames, one action per frame.

Presets: ``tiny`` (defaults) is a small frame autoencoder + a small Wan transformer trained from scratch,
fast enough for RL on a CPU; ``paper`` is Wan2.2-TI2V-5B (transformer + VAE) loaded from a local
diffusers-format directory, for a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from wovr_core.config import ConfigError

CAMERAS = ("agentview", "wrist")

MAX_ACTION_GUIDANCE = 20.0  # far past any useful scale; larger values only amplify the model's errors

# Local diffusers-format Wan2.2-TI2V-5B folder (subfolders transformer/ and vae/); nothing is downloaded.
WAN22_TI2V_DIR = "~/.cache/wovr/models/Wan2.2-TI2V-5B-Diffusers"


def _tiny_frame_autoencoder() -> dict:
    # 128x128x3 -> 8x8x8 per camera (f = 16, 96x fewer values). Few, deep latents keep the transformer's token
    # count low (what CPU imagination speed needs) while each token's values (2x2 latents x 8 channels x 2
    # cameras = 64) stay below the transformer width, so a token can carry its patch through unchanged.
    # Widths taper towards full resolution, where every channel costs most. The decoder runs for every
    # imagined frame, the encoder only on real frames, so the decoder is the narrower one.
    return {"block_channels": [16, 32, 64, 96], "latent_channels": 8, "mid_blocks": 1,
            "decoder_block_channels": [12, 24, 48, 96], "decoder_mid_blocks": 1}


def _tiny_transformer() -> dict:
    # diffusers WanTransformer3DModel kwargs. in/out channels and text_dim are filled in by the model.
    # Patch (1, 2, 2) on 8x8 latents: 16 tokens per frame, 208 for a 13-frame window; width 128 (4 heads of
    # 32), 4 layers, 1.1M parameters. Measured on one CPU core: about 0.5 s of denoising and 0.2 s of decoding
    # per imagine() call of 8 rollouts x 8 frames x 2 cameras (benchmarks/imagination_speed.py).
    return {"patch_size": [1, 2, 2], "num_attention_heads": 4, "attention_head_dim": 32, "ffn_dim": 384,
            "num_layers": 4, "freq_dim": 64, "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads",
            "rope_max_seq_len": 64}


@dataclass
class CodecConfig:
    """Pixels <-> latents.

    ``frame_ae``: :class:`~wovr_core.world_model.autoencoder.FrameAutoencoder`, a 2D conv autoencoder trained
    here, one latent frame per frame. ``wan_vae``: diffusers ``AutoencoderKLWan`` (causal 3D, 4 frames per
    latent frame after the first), loaded from ``pretrained_path`` or built from ``wan_vae`` kwargs.
    """

    kind: Literal["frame_ae", "wan_vae"] = "frame_ae"
    frame_ae: dict[str, Any] = field(default_factory=_tiny_frame_autoencoder)
    wan_vae: dict[str, Any] = field(default_factory=dict)
    # wan_vae: a folder with config.json + safetensors (e.g. <Wan2.2>/vae); frame_ae: the codec/ folder of a
    # trained world model, the starting point of the autoencoder stage (ae_max_steps=0: reused as it is)
    pretrained_path: str = ""
    # How the cameras share one latent video: "channels" stacks their latents (tokens do not grow with
    # the number of cameras); "width" tiles the images side by side before encoding (what a pretrained
    # video VAE/transformer expects).
    camera_layout: Literal["channels", "width"] = "channels"

    def validate(self) -> None:
        if self.kind == "frame_ae":
            chans = self.frame_ae.get("block_channels", [])
            if not chans or int(self.frame_ae.get("latent_channels", 0)) < 1:
                raise ConfigError("codec.frame_ae needs non-empty 'block_channels' and 'latent_channels' >= 1")
        if self.kind == "wan_vae" and not (self.pretrained_path or self.wan_vae):
            raise ConfigError("codec.kind=wan_vae needs codec.pretrained_path (a local AutoencoderKLWan folder) "
                              "or codec.wan_vae (constructor kwargs for a model trained from scratch)")


@dataclass
class DenoiserConfig:
    """The Wan transformer over latents plus the action encoder that replaces its text encoder."""

    transformer: dict[str, Any] = field(default_factory=_tiny_transformer)
    pretrained_path: str = ""  # a local WanTransformer3DModel folder (e.g. <Wan2.2>/transformer)
    action_hidden: int = 128  # width of the per-action MLP
    action_token_dim: int = 64  # = the transformer's text_dim when built from scratch
    # Also embed, per frame, the arm command summed since the last context frame (ActionEncoder): where the
    # frame's arm should be, not just how it moved since the frame before. Off by default: on the tiny model
    # at 16000 steps it did not make the model read direction more (world_model_action_sensitivity_*.json).
    displacement_embedding: bool = False

    def validate(self) -> None:
        for key in ("in_channels", "out_channels", "text_dim"):
            if key in self.transformer and not self.pretrained_path:
                raise ConfigError(f"denoiser.transformer.{key} is derived from the codec and action encoder; "
                                  f"remove it from the config")


@dataclass
class WorldModelConfig:
    """What the world model is; saved as the ``config.json`` of every world-model checkpoint."""

    PRESETS: ClassVar[dict] = {
        "tiny": {},
        "paper": {
            "image_size": 256,
            "codec": {"kind": "wan_vae", "pretrained_path": f"{WAN22_TI2V_DIR}/vae", "camera_layout": "width"},
            # The transformer's architecture comes from the pretrained folder's config.json.
            "denoiser": {"pretrained_path": f"{WAN22_TI2V_DIR}/transformer", "transformer": {},
                         "action_hidden": 1024, "action_token_dim": 4096},
            "timestep_shift": 5.0,
            "dtype": "bfloat16",
        },
    }

    cameras: tuple[str, ...] = CAMERAS
    image_size: int = 128
    memory_frames: int = 4
    chunk_frames: int = 8
    codec: CodecConfig = field(default_factory=CodecConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    euler_steps: int = 5
    # Rectified flow time warp t' = s t / (1 + (s - 1) t): s > 1 spends more of training and sampling at
    # high noise, where the frame's layout (the arm's position) is decided from the actions; 1 = uniform. The
    # tiny model gains 0.5-0.9 dB with 3 instead of 1 (world_model_fidelity_shift3.json vs
    # world_model_fidelity_demos_noisy.json) and another 0.2-0.4 dB with 5, Wan's, instead of 3
    # (world_model_fidelity_shift{5,3}_8k_same_codec.json).
    timestep_shift: float = 5.0
    # Memory frames are noised up to this level in training while the model is told t = 0, so it learns to
    # cope with its own imperfect frames during long rollouts.
    memory_noise_max: float = 0.2
    # Action guidance in sampling: velocity = v(no command) + w (v(actions) - v(no command)), the chunk's actions
    # replaced by NULL_ACTION for the first term. 1 = none (the paper's: one model call per Euler step); w > 1
    # amplifies what the commanded actions change (two calls). Needs a model trained with action_dropout > 0,
    # otherwise it never learned what "no command" predicts.
    action_guidance: float = 1.0
    # Every imagine() call draws the same noise: the simulator is deterministic, the spread comes from the
    # policy.
    seed: int = 0
    dtype: Literal["float32", "bfloat16"] = "float32"
    # Action normalization: q01/q99 -> [-1, 1] for the arm dims; the gripper is already -1/+1.
    normalize_action_dims: tuple[bool, ...] = (True, True, True, True, True, True, False)

    @property
    def context_frames(self) -> int:
        return 1 + self.memory_frames

    @property
    def clip_frames(self) -> int:
        """Frames of one training clip: ``[o_0] + memory + chunk``."""
        return self.context_frames + self.chunk_frames

    def validate(self) -> None:
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"cameras must be distinct and non-empty, got {list(self.cameras)}")
        if self.image_size < 16 or self.image_size % 16:
            raise ConfigError(f"image_size must be a multiple of 16 (>= 16), got {self.image_size}")
        if self.memory_frames < 1 or self.chunk_frames < 1:
            raise ConfigError("memory_frames and chunk_frames must be >= 1")
        if self.euler_steps < 1:
            raise ConfigError(f"euler_steps must be >= 1, got {self.euler_steps}")
        if self.timestep_shift <= 0:
            raise ConfigError(f"timestep_shift must be > 0, got {self.timestep_shift}")
        if not 0 <= self.memory_noise_max < 1:
            raise ConfigError(f"memory_noise_max must be in [0, 1), got {self.memory_noise_max}")
        check_action_guidance(self.action_guidance)


@dataclass
class AugmentConfig:
    """Clip augmentations of the reference trainer."""

    # A clip whose frames are all one frame, with zero arm motion: the model learns that no action = no change.
    static_prob: float = 0.05
    # A clip that looks like the first chunk after a reset: the memory is o_0 repeated, with dummy actions.
    reset_prob: float = 0.05

    def validate(self) -> None:
        if min(self.static_prob, self.reset_prob) < 0 or self.static_prob + self.reset_prob > 1:
            raise ConfigError("augment.static_prob and augment.reset_prob must be >= 0 and sum to <= 1")


@dataclass
class WorldModelTrainConfig:
    """``wovr train-wm``: stage 1 fits the frame autoencoder (skipped for a pretrained codec), stage 2 the
    denoiser on latents. Each stage stops at ``max_steps`` or when its validation metric has not improved by
    ``min_delta`` for ``patience`` validations."""

    PRESETS: ClassVar[dict] = {
        "tiny": {},
        "paper": {
            "model": WorldModelConfig.PRESETS["paper"],
            "batch_size": 32, "lr": 5e-5, "ema_decay": 0.9999, "max_steps": 100_000, "val_every": 1000,
            "checkpoint_every": 1000, "mixed_precision": "bf16", "pool_episodes": 256, "cache_latents": False,
        },
    }

    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    # Share of training windows whose generated chunk gets NULL_ACTION instead of its actions, so the model also
    # learns the prediction without a command that model.action_guidance compares against (0: off).
    action_dropout: float = 0.0
    # Action contrast (ours): weight of a hinge that asks the denoising loss under the window's chunk translation
    # reversed (world_model_action_sensitivity.py's ``chunk_translation_flipped``) to exceed the loss under the
    # recorded actions by ``action_contrast_margin`` of the latter. Plain denoising learns to read whether the
    # arm moves more than where to (reversal raised the tiny model's loss 2-4 % at 8000 steps, 10 % at 16000),
    # since the recorded motion is mostly predictable from the frames before; the hinge pays only for reading the
    # direction. 0: off (world_model_fidelity_contrast.json: tracking gain 0.31 vs 0.19, the same PSNR).
    action_contrast: float = 0.0
    action_contrast_margin: float = 0.1
    # Exponential moving average of the denoiser's weights (0: off). Validation, the saved best model and so
    # imagination use the average, which samples cleaner frames than the last step's noisy weights.
    ema_decay: float = 0.999
    max_steps: int = 20_000
    val_every: int = 250
    patience: int = 8
    min_delta: float = 1e-3
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    # Autoencoder stage (frame_ae only).
    ae_batch_size: int = 32
    ae_lr: float = 1e-3
    ae_max_steps: int = 6_000
    ae_val_every: int = 250
    # Episodes held out for validation: this fraction (at least one) of each dataset, chosen by seed.
    val_fraction: float = 0.1
    val_clips: int = 64
    val_rollout_frames: int = 32  # open-loop imagination PSNR on held-out episodes at each validation
    # Decoded episodes kept in memory to sample clips from; one is swapped every ``pool_refresh`` steps.
    pool_episodes: int = 64
    pool_refresh: int = 20
    # Frame-wise codecs: encode every frame once after stage 1 and train the denoiser on stored latents.
    cache_latents: bool = True
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    log_images_every: int = 1000
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default

    def validate(self) -> None:
        if self.batch_size < 1 or self.ae_batch_size < 1:
            raise ConfigError("batch sizes must be >= 1")
        if self.max_steps < 0 or self.ae_max_steps < 0:
            raise ConfigError("max_steps must be >= 0")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1) (0: no average), got {self.ema_decay}")
        if self.val_every < 1 or self.ae_val_every < 1 or self.checkpoint_every < 1:
            raise ConfigError("val_every, ae_val_every and checkpoint_every must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.action_dropout < 1:
            raise ConfigError(f"action_dropout must be in [0, 1), got {self.action_dropout}")
        if self.action_contrast < 0 or self.action_contrast_margin <= 0:
            raise ConfigError(f"action_contrast must be >= 0 and action_contrast_margin > 0, got "
                              f"{self.action_contrast}, {self.action_contrast_margin}")
        if self.patience < 1 or self.keep_checkpoints < 1:
            raise ConfigError("patience and keep_checkpoints must be >= 1")


def check_action_guidance(guidance: float) -> None:
    if not 0 <= guidance <= MAX_ACTION_GUIDANCE:
        raise ConfigError(f"action_guidance must be in [0, {MAX_ACTION_GUIDANCE}] (1: no guidance), got {guidance}")


def expand(path: str) -> Path:
    return Path(path).expanduser()


@dataclass
class WorldModelEvalConfig:
    """``wovr eval-wm``: open-loop replay of held-out episodes' real actions from their first frame(s)."""

    PRESETS: ClassVar[dict] = {"tiny": {}, "paper": {"batch_size": 16}}

    horizons: tuple[int, ...] = (8, 32, 128)
    start: int = 0  # 0: the reset context (o_0 alone); else [o_0] + memory frames ending at this frame
    batch_size: int = 8
    max_episodes: int = 0  # 0: all of the selected episodes
    videos: int = 4  # side-by-side mp4s of the first episodes
    # Controllability: from each start, constant commands along +-x, +-y, +-z and a gripper close, measured
    # with a state probe fitted on real frames of the training episodes.
    controllability: bool = True
    control_starts: int = 16  # first frames of the first evaluated episodes (imagined batch_size at a time)
    control_frames: int = 16
    control_magnitude: float = 0.5
    probe_steps: int = 600
    probe_frames: int = 4000  # real frames used to fit the probe (subsampled evenly)
    # Episode outcomes (with a reward model): every labelled episode imagined whole from o_0 under its recorded
    # actions is an imagined success when a frame reaches this probability (the imagined env's
    # rl.env.success_threshold); 0 skips it.
    outcome_threshold: float = 0.5
    # Sample with this action guidance instead of the model's own (model.action_guidance); None: the model's.
    action_guidance: float | None = None
    seed: int = 0
    threads: int = 0

    def validate(self) -> None:
        if not self.horizons or min(self.horizons) < 1:
            raise ConfigError(f"horizons must be positive frame counts, got {list(self.horizons)}")
        if self.start < 0 or self.batch_size < 1 or self.control_frames < 1 or self.control_starts < 1:
            raise ConfigError("start >= 0, batch_size >= 1, control_starts >= 1 and control_frames >= 1 are required")
        if not 0 < self.control_magnitude <= 1:
            raise ConfigError(f"control_magnitude must be in (0, 1], got {self.control_magnitude}")
        if not 0 <= self.outcome_threshold <= 1:
            raise ConfigError(f"outcome_threshold must be in [0, 1], got {self.outcome_threshold}")
        if self.action_guidance is not None:
            check_action_guidance(self.action_guidance)
