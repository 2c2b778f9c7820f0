"""The world model: ``observe(context) -> state`` and ``imagine(state, actions) -> (frames, state)``, batched.

Window layout (frames; latent frames with a causal codec group them by k)::

    [ o_0 | m_1 .. m_4 | g_1 .. g_8 ]     context = o_0 (anchor, never overwritten) + 4 memory frames
      t=0   t=0 (noised in training)  t   generated chunk, one action per frame

Rectified flow: ``x_t = (1 - t) x_0 + t eps``, the model predicts ``eps - x_0``, the loss covers the
generated frames only. Sampling: ``euler_steps`` Euler steps from t = 1 to 0, the same noise on every call
and for every batch element (a deterministic simulator); no guidance unless ``action_guidance`` != 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from wovr_core.config import ConfigError, load_config, save_config
from wovr_core.errors import DataError
from wovr_core.transforms import Normalize, NormStats, load_norm_stats, resize_images, save_norm_stats
from wovr_core.types import ACTION_DIM, DUMMY_ACTION
from wovr_core.world_model.checkpoint import load_pretrained
from wovr_core.world_model.codec import Codec, build_codec, load_codec
from wovr_core.world_model.config import WorldModelConfig, check_action_guidance
from wovr_core.world_model.denoiser import ActionConditionedWan, shifted

ACTION_KEY = "action"
CONFIG_FILE = "config.json"
ACTION_ENCODER_FILE = "action_encoder.safetensors"
NORM_STATS_FILE = "norm_stats.json"
MANIFEST_FILE = "manifest.json"
TRANSFORMER_DIR = "transformer"

Frames = dict[str, np.ndarray]  # camera -> (B, T, H, W, 3) uint8

# "No command", in normalized action space: the arm at the middle of its range and the gripper neither open
# (-1) nor closed (+1), a value no recorded action takes, so the model cannot mistake it for "stay still".
NULL_ACTION = np.zeros(ACTION_DIM, np.float32)


def without_commands(window_actions: torch.Tensor, context_frames: int) -> torch.Tensor:
    """(B, N, 7) normalized window actions with the generated frames' actions replaced by NULL_ACTION; the
    context frames' actions stay, since they tell how the frames the model sees came about."""
    null = torch.as_tensor(NULL_ACTION, device=window_actions.device, dtype=window_actions.dtype)
    return torch.cat([window_actions[:, :context_frames], null.expand_as(window_actions[:, context_frames:])], dim=1)


@dataclass(frozen=True)
class ActionContrast:
    """The action-contrast hinge of a training batch: ``actions`` (B, N, 7), the window's actions altered, must
    raise the denoising loss by ``margin`` of the recorded actions' loss; ``weight`` scales the hinge."""

    actions: torch.Tensor
    weight: float
    margin: float


@dataclass
class WorldState:
    """What the model remembers between calls: the latent context and the (normalized) actions that led
    to its frames. ``latents[:, :, :1]`` is the anchor o_0."""

    latents: torch.Tensor  # (B, C, context latent frames, h, w)
    actions: torch.Tensor  # (B, 1 + memory_frames, ACTION_DIM), normalized
    frames_imagined: int = 0

    @property
    def batch_size(self) -> int:
        return int(self.latents.shape[0])

    def select(self, index: torch.Tensor | np.ndarray | list[int]) -> WorldState:
        """The states of some batch elements (e.g. to start a group of rollouts from one state)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long, device=self.latents.device)
        return WorldState(self.latents[idx], self.actions[idx], self.frames_imagined)

    @staticmethod
    def concat(states: list[WorldState]) -> WorldState:
        """One batch from several (e.g. rollouts from different starts, imagined in one call)."""
        return WorldState(torch.cat([s.latents for s in states]), torch.cat([s.actions for s in states]),
                          min(s.frames_imagined for s in states))


def identity_action_stats() -> NormStats:
    """Statistics that leave actions unchanged under quantile normalization (untrained models, tests)."""
    ones, zeros = np.ones(ACTION_DIM, np.float32), np.zeros(ACTION_DIM, np.float32)
    return NormStats(mean=zeros, std=ones, min=-ones, max=ones, q01=-ones, q99=ones, count=0)


class WorldModel(nn.Module):
    """Codec (pixels <-> latents) + action-conditioned Wan denoiser + action normalization."""

    def __init__(self, config: WorldModelConfig, codec: Codec, denoiser: ActionConditionedWan,
                 action_stats: NormStats | None = None):
        super().__init__()
        self.config = config
        self.codec = codec
        self.denoiser = denoiser
        self.action_stats = action_stats or identity_action_stats()
        self._normalize = Normalize(stats={ACTION_KEY: self.action_stats}, mode="quantile",
                                    masks={ACTION_KEY: tuple(config.normalize_action_dims)})
        # The callable sampling uses; compile_for_inference() swaps in a compiled version. Stored outside
        # nn.Module's registry so the weights are not listed twice.
        object.__setattr__(self, "_denoise", denoiser)
        k = codec.temporal_factor
        if config.memory_frames % k or config.chunk_frames % k:
            raise ConfigError(f"memory_frames ({config.memory_frames}) and chunk_frames ({config.chunk_frames}) must "
                              f"be multiples of the codec's temporal factor {k}")

    # ---- construction --------------------------------------------------------------------------------
    @classmethod
    def build(cls, config: WorldModelConfig, action_stats: NormStats | None = None) -> WorldModel:
        """A new model (pretrained parts loaded from their local folders, the rest initialized)."""
        config.validate()
        codec = build_codec(config.codec, len(config.cameras))
        denoiser = ActionConditionedWan(config.denoiser, codec.latent_channels, codec.temporal_factor,
                                        config.clip_frames, context_frames=config.context_frames)
        return cls(config, codec, denoiser, action_stats)

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> WorldModel:
        """Load a checkpoint written by :meth:`save` (DataError naming the file if something is missing)."""
        from diffusers import WanTransformer3DModel
        from safetensors.torch import load_model

        directory = Path(directory).expanduser()
        config = _read_config(directory)
        codec = load_codec(config.codec, len(config.cameras), directory)
        transformer = load_pretrained(WanTransformer3DModel, directory / TRANSFORMER_DIR, "Wan transformer")
        denoiser = ActionConditionedWan(config.denoiser, codec.latent_channels, codec.temporal_factor,
                                        config.clip_frames, transformer=transformer,
                                        context_frames=config.context_frames)
        path = directory / ACTION_ENCODER_FILE
        try:
            missing, unexpected = load_model(denoiser.action_encoder, str(path), strict=False)
        except FileNotFoundError:
            raise DataError(f"{path}: action encoder weights not found") from None
        except Exception as e:  # safetensors raises several types for truncated/corrupt files
            raise DataError(f"{path}: unreadable action encoder weights ({type(e).__name__}: {e})") from None
        if missing or unexpected:
            raise DataError(f"{path}: weights do not match the config (missing {missing}, unexpected {unexpected})")
        stats = load_norm_stats(directory / NORM_STATS_FILE)
        if ACTION_KEY not in stats:
            raise DataError(f"{directory / NORM_STATS_FILE}: no {ACTION_KEY!r} statistics")
        model = cls(config, codec, denoiser, stats[ACTION_KEY])
        return model.to(device) if device is not None else model

    def save(self, directory: str | Path, manifest: dict[str, Any] | None = None) -> Path:
        """Write config.json, codec/ (if trained here), transformer/, action_encoder.safetensors,
        norm_stats.json and manifest.json into ``directory``."""
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_config(self.config, directory)
        self.codec.save(directory)
        self.denoiser.transformer.save_pretrained(directory / TRANSFORMER_DIR)
        save_model(self.denoiser.action_encoder, str(directory / ACTION_ENCODER_FILE))
        save_norm_stats({ACTION_KEY: self.action_stats}, directory / NORM_STATS_FILE)
        if manifest is not None:
            (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return directory

    # ---- properties ------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.parameters()).dtype

    @property
    def context_latent_frames(self) -> int:
        return self.codec.latent_frames(self.config.context_frames)

    @property
    def chunk_latent_frames(self) -> int:
        return self.config.chunk_frames // self.codec.temporal_factor

    def prepare_for_inference(self, device: str | torch.device | None = None) -> WorldModel:
        """eval mode, on ``device``, in the config's inference dtype (bfloat16 uses AMX/tensor cores)."""
        dtype = torch.bfloat16 if self.config.dtype == "bfloat16" else torch.float32
        self.eval().requires_grad_(False)
        return self.to(device=device, dtype=dtype) if device is not None else self.to(dtype=dtype)

    def use_action_guidance(self, guidance: float | None) -> WorldModel:
        """Sample with this action guidance from now on (``WorldModelConfig.action_guidance``); None keeps the
        model's own."""
        if guidance is not None:
            check_action_guidance(guidance)
            self.config.action_guidance = float(guidance)
        return self

    def compile_for_inference(self) -> WorldModel:
        """torch.compile the denoiser for sampling (about 3x on a CPU, where Wan's many small element-wise
        operations dominate); the first call compiles (a minute or more). Weights stay shared."""
        object.__setattr__(self, "_denoise", torch.compile(self.denoiser, dynamic=False))
        return self

    # ---- tensors <-> arrays ------------------------------------------------------------------------------
    def normalize_actions(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape[-1:] != (ACTION_DIM,):
            raise ValueError(f"actions must end in {ACTION_DIM} values, got shape {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise ValueError("actions contain NaN or inf")
        return self._normalize({ACTION_KEY: actions})[ACTION_KEY]

    def to_video(self, frames: Frames) -> torch.Tensor:
        """camera -> (B, T, H, W, 3) uint8 -> (B, V, 3, T, H, W) float in [-1, 1] on the model's device."""
        missing = [c for c in self.config.cameras if c not in frames]
        if missing:
            raise ValueError(f"frames are missing cameras {missing}; this model uses {list(self.config.cameras)}")
        views = []
        size = self.config.image_size
        for cam in self.config.cameras:
            x = torch.as_tensor(np.asarray(frames[cam]))
            if x.ndim != 5 or x.shape[-3:] != (size, size, 3) or x.dtype != torch.uint8:
                raise ValueError(f"frames[{cam!r}] must be (B, T, {size}, {size}, 3) uint8, got "
                                 f"{tuple(x.shape)} {x.dtype}")
            if views and x.shape[:2] != views[0].shape[:2]:
                raise ValueError(f"cameras disagree on (batch, frames): {self.config.cameras[0]!r} has "
                                 f"{tuple(views[0].shape[:2])}, {cam!r} has {tuple(x.shape[:2])}")
            views.append(x)
        views = [x.permute(0, 4, 1, 2, 3) for x in views]
        video = torch.stack(views, dim=1).to(self.device, torch.float32)
        return (video / 127.5 - 1.0).to(self.dtype)

    def to_frames(self, video: torch.Tensor) -> Frames:
        """(B, V, 3, T, H, W) in [-1, 1] -> camera -> (B, T, H, W, 3) uint8."""
        pixels = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        pixels = pixels.permute(0, 1, 3, 4, 5, 2).cpu().numpy()
        return {cam: pixels[:, i] for i, cam in enumerate(self.config.cameras)}

    @torch.no_grad()
    def through_codec(self, frames: dict[str, np.ndarray], batch: int = 64) -> dict[str, np.ndarray]:
        """camera -> (N, H, W, 3) uint8 frames as imagination renders them (e.g. to train a reward model that
        reads imagined frames): resized to the model's image size, encoded and decoded one by one, resized back
        to (H, W). Needs a frame-wise codec."""
        if self.codec.temporal_factor != 1:
            raise ValueError("through_codec needs a frame-wise codec; a causal video codec decodes clips")
        size = self.config.image_size
        frames = {c: np.asarray(frames[c]) for c in self.config.cameras}
        shapes = {c: v.shape[1:3] for c, v in frames.items()}
        frames = {c: resize_images(v, size, size) for c, v in frames.items()}
        n = len(next(iter(frames.values())))
        parts = []
        for lo in range(0, n, batch):
            video = self.to_video({c: v[lo:lo + batch, None] for c, v in frames.items()})
            parts.append(self.to_frames(self.codec.decode(self.codec.encode(video))))
        return {c: resize_images(np.concatenate([part[c][:, 0] for part in parts]), *shapes[c])
                for c in self.config.cameras}

    # ---- imagination ------------------------------------------------------------------------------------
    @torch.no_grad()
    def observe(self, context_frames: Frames, context_actions: np.ndarray | None = None) -> WorldState:
        """Start imagining from real frames.

        ``context_frames``: camera -> (B, T, H, W, 3) with T = 1 (a reset: o_0 alone, which fills the memory,
        as in training's reset clips) or T = 1 + memory_frames (``[o_0, last memory frames]``).
        ``context_actions``: (B, T, 7) actions that led to those frames (the first is the dummy action).
        """
        cfg = self.config
        context_frames = {c: np.asarray(v) for c, v in context_frames.items()}
        if not context_frames:
            raise ValueError(f"context_frames is empty; give frames of the cameras {list(cfg.cameras)}")
        first = next(iter(context_frames.values()))
        if first.ndim != 5:
            raise ValueError(f"context frames must be (B, T, H, W, 3) uint8 per camera, got shape {first.shape}")
        batch, t = first.shape[:2]
        if t not in (1, cfg.context_frames):
            raise ValueError(f"context must hold 1 frame (o_0) or {cfg.context_frames} ([o_0] + "
                             f"{cfg.memory_frames} memory frames), got {t}")
        if t == 1:
            context_frames = {c: np.repeat(v, cfg.context_frames, axis=1) for c, v in context_frames.items()}
            context_actions = np.broadcast_to(DUMMY_ACTION, (batch, cfg.context_frames, ACTION_DIM))
        elif context_actions is None:
            raise ValueError("context_actions are required with a multi-frame context")
        actions = np.asarray(context_actions, dtype=np.float32)
        if actions.shape != (batch, cfg.context_frames, ACTION_DIM):
            raise ValueError(f"context_actions must be ({batch}, {cfg.context_frames}, {ACTION_DIM}), got {actions.shape}")
        actions = actions.copy()
        actions[:, 0] = DUMMY_ACTION  # nothing led to o_0, whatever the caller passed
        latents = self.codec.encode(self.to_video(context_frames))
        norm = torch.as_tensor(self.normalize_actions(actions), device=self.device, dtype=self.dtype)
        return WorldState(latents.to(self.dtype), norm)

    @torch.no_grad()
    def imagine(self, state: WorldState, actions: np.ndarray) -> tuple[Frames, WorldState]:
        """The next ``chunk_frames`` frames under ``actions`` (B, chunk_frames, 7), and the new state."""
        cfg = self.config
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (state.batch_size, cfg.chunk_frames, ACTION_DIM):
            raise ValueError(f"actions must be ({state.batch_size}, {cfg.chunk_frames}, {ACTION_DIM}), got "
                             f"{actions.shape}")
        chunk_actions = torch.as_tensor(self.normalize_actions(actions), device=self.device, dtype=self.dtype)
        window_actions = torch.cat([state.actions, chunk_actions], dim=1)
        generated = self.sample(state.latents, window_actions)
        frames = self.to_frames(self.codec.decode_chunk(state.latents, generated))
        memory = self.context_latent_frames - 1
        # The anchor stays; the memory becomes the newest frames (old memory + chunk, for chunks shorter than it).
        recent = torch.cat([state.latents[:, :, 1:], generated], dim=2)[:, :, -memory:]
        new_state = WorldState(
            torch.cat([state.latents[:, :, :1], recent], dim=2),
            torch.cat([state.actions[:, :1], window_actions[:, -cfg.memory_frames:]], dim=1),
            state.frames_imagined + cfg.chunk_frames,
        )
        return frames, new_state

    def sample(self, context: torch.Tensor, window_actions: torch.Tensor, steps: int | None = None,
               seed: int | None = None) -> torch.Tensor:
        """Euler integration of the flow from noise (t = 1) to latents (t = 0) for one chunk."""
        cfg = self.config
        steps = steps or cfg.euler_steps
        b, c, n_ctx, h, w = context.shape
        n_gen = self.chunk_latent_frames
        generator = torch.Generator(device="cpu").manual_seed(cfg.seed if seed is None else seed)
        x = torch.randn((1, c, n_gen, h, w), generator=generator).to(context.device, context.dtype).expand(b, -1, -1, -1, -1)
        times = shifted(torch.linspace(1.0, 0.0, steps + 1), cfg.timestep_shift).tolist()
        zeros = torch.zeros(b, n_ctx, device=context.device)
        copies = 1 if cfg.action_guidance == 1.0 else 2
        if copies == 2:  # one call of twice the batch: the commanded actions, then no command
            context, zeros = torch.cat([context, context]), torch.cat([zeros, zeros])
            window_actions = torch.cat([window_actions, without_commands(window_actions, cfg.context_frames)])
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            inputs = torch.cat([context, x.repeat(copies, 1, 1, 1, 1)], dim=2)
            frame_t = torch.cat([zeros, torch.full((copies * b, n_gen), t, device=context.device)], dim=1)
            velocity = self._denoise(inputs, frame_t, window_actions)[:, :, n_ctx:]
            if copies == 2:
                commanded, uncommanded = velocity.chunk(2)
                velocity = uncommanded + cfg.action_guidance * (commanded - uncommanded)
            x = x + (t_next - t) * velocity.to(x.dtype)
        return x

    # ---- training ---------------------------------------------------------------------------------------
    def forward(self, latents: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None,
                contrast: ActionContrast | None = None) -> torch.Tensor:
        """The training loss (forward is what distributed wrappers hook into); see :meth:`loss`."""
        return self.loss(latents, actions, generator, contrast=contrast)

    def loss(self, latents: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None,
             noise_level: float | None = None, contrast: ActionContrast | None = None) -> torch.Tensor:
        """Rectified-flow loss of a batch of clip windows.

        ``latents`` (B, C, F, h, w): the clean latent window (context then chunk); ``actions`` (B, N, 7):
        normalized actions of the window's frames. ``generator`` fixes t and the noise (validation);
        ``noise_level`` sets every window's t (after the time warp) instead of drawing it (diagnostics).
        ``contrast`` adds its hinge, the altered actions denoised from the same noisy window.
        """
        action_sets = [actions] if contrast is None else [actions, contrast.actions]
        errors = self._denoising_errors(latents, action_sets, generator, noise_level)
        if contrast is None:
            return errors[0].mean()
        recorded, altered = errors
        # Relative to the recorded loss, so the margin means the same at every noise level and training stage.
        gap = (altered - recorded) / recorded.detach().clamp_min(1e-8)
        return recorded.mean() + contrast.weight * F.relu(contrast.margin - gap).mean()

    def _denoising_errors(self, latents: torch.Tensor, action_sets: list[torch.Tensor],
                          generator: torch.Generator | None, noise_level: float | None) -> list[torch.Tensor]:
        """Per-window mean squared velocity error on the generated frames, (B,) for each action set, all from
        the same t, noise and memory noise (one denoiser call over the stacked sets)."""
        b = latents.shape[0]
        n_ctx = self.context_latent_frames
        dev = latents.device

        def rand(*shape):
            return torch.rand(*shape, generator=generator, device="cpu").to(dev)

        def randn_like(x):
            return torch.randn(x.shape, generator=generator, device="cpu").to(dev, x.dtype)

        t = shifted(rand(b), self.config.timestep_shift).view(b, 1, 1, 1, 1)
        if noise_level is not None:  # t is still drawn above, so the noise that follows is the same at every level
            if not 0 < noise_level <= 1:
                raise ValueError(f"noise_level must be in (0, 1], got {noise_level}")
            t = torch.full_like(t, noise_level)
        anchor, memory, chunk = latents[:, :, :1], latents[:, :, 1:n_ctx], latents[:, :, n_ctx:]
        noise = randn_like(chunk)
        noisy_chunk = (1 - t) * chunk + t * noise
        sigma = (rand(b) * self.config.memory_noise_max).view(b, 1, 1, 1, 1)
        noisy_memory = (1 - sigma) * memory + sigma * randn_like(memory)
        frame_t = torch.cat([torch.zeros(b, n_ctx, device=dev), t.view(b, 1).expand(b, chunk.shape[2])], dim=1)
        copies = len(action_sets)
        window = torch.cat([anchor, noisy_memory, noisy_chunk], dim=2).repeat(copies, 1, 1, 1, 1)
        velocity = self.denoiser(window, frame_t.repeat(copies, 1), torch.cat(action_sets))
        error = (velocity[:, :, n_ctx:].float() - (noise - chunk).float().repeat(copies, 1, 1, 1, 1)) ** 2
        return list(error.flatten(1).mean(dim=1).split(b))


def codec_is_frame_wise(directory: str | Path) -> bool:
    """Whether the saved world model's codec encodes frames one by one (``through_codec`` works), read from its
    config and codec alone: a clip codec's world model (the paper's, billions of parameters) is never loaded."""
    directory = Path(directory).expanduser()
    config = _read_config(directory)
    return load_codec(config.codec, len(config.cameras), directory).temporal_factor == 1


def _read_config(directory: Path) -> WorldModelConfig:
    """The config of a saved world model (DataError naming the folder or file when it cannot be read)."""
    if not directory.is_dir():
        raise DataError(f"{directory}: world model checkpoint not found")
    try:
        return load_config(directory / CONFIG_FILE, WorldModelConfig)
    except ValueError as e:  # unparseable JSON or fields that do not fit (ConfigError names the file)
        raise DataError(f"{directory / CONFIG_FILE}: unreadable world model config ({e})") from None
