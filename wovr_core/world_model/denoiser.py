"""The action-conditioned denoiser: diffusers' ``WanTransformer3DModel`` with actions in place of text.

Actions enter twice (DESIGN.md section 4, as in the WoVR reference):

1. as cross-attention tokens: one MLP-embedded token per action (plus a learned position per frame of the
   window), fed through Wan's own text projection where the T5 text embeddings used to go;
2. added to the timestep embedding of each latent frame, so every token's AdaLN modulation carries the
   action that produced its frame. Wan2.2-TI2V already modulates per token (a timestep per token: context
   frames get t = 0, generated frames the current t); we add the action embedding at the same place.

Our addition, not the reference's (``denoiser.displacement_embedding``): the second path may also read the
arm command summed since the last context frame, so each generated frame is told where its arm should be.

The forward pass reuses the transformer's own submodules (patch embedding, RoPE, condition embedder, blocks,
output head), so a pretrained Wan2.2 checkpoint loads unchanged and only the action encoder is new.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from wovr_core.errors import DataError
from wovr_core.types import ACTION_DIM
from wovr_core.world_model.checkpoint import load_pretrained
from wovr_core.world_model.config import DenoiserConfig, expand

WAN_TIMESTEP_SCALE = 1000.0  # Wan was trained with timesteps in [0, 1000]
ARM_DIMS = ACTION_DIM - 1  # the delta end-effector dims; the gripper command is absolute


class ActionEncoder(nn.Module):
    """Per-action cross-attention tokens and a per-latent-frame addition to the timestep embedding.

    With ``context_frames`` set, each frame's embedding also reads the arm command summed from the last
    context frame to that frame (negative sums for earlier memory frames, zero for the anchor): the
    displacement the frame should show. A frame's own action says only how it differs from the frame
    before, and the transformer would otherwise have to integrate the chunk's actions itself.
    """

    def __init__(self, token_dim: int, time_dim: int, hidden: int, frames_per_latent: int, max_frames: int,
                 action_dim: int = ACTION_DIM, context_frames: int = 0):
        super().__init__()
        self.frames_per_latent = frames_per_latent
        self.context_frames = context_frames
        self.token_mlp = nn.Sequential(nn.Linear(action_dim, hidden), nn.SiLU(), nn.Linear(hidden, token_dim))
        self.token_position = nn.Parameter(torch.randn(max_frames, token_dim) * 0.02)
        per_frame = action_dim + (ARM_DIMS if context_frames else 0)
        self.frame_mlp = nn.Sequential(nn.Linear(per_frame * frames_per_latent, hidden), nn.SiLU(),
                                       nn.Linear(hidden, time_dim))
        # Zero at the start: a pretrained transformer begins with its own timestep modulation untouched.
        nn.init.zeros_(self.frame_mlp[-1].weight)
        nn.init.zeros_(self.frame_mlp[-1].bias)

    def tokens(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, N, action_dim) normalized actions of the window's frames -> (B, N, token_dim)."""
        n = actions.shape[1]
        if n > self.token_position.shape[0]:
            raise ValueError(f"{n} actions, the action encoder was built for at most {self.token_position.shape[0]}")
        return self.token_mlp(actions) + self.token_position[:n]

    def per_latent_frame(self, actions: torch.Tensor, latent_frames: int) -> torch.Tensor:
        """Group the window's actions by latent frame: (B, N, A) -> (B, F, k A). Latent frame 0 is the first
        frame alone (causal codecs), so its action is repeated k times."""
        k = self.frames_per_latent
        if k == 1:
            return actions
        first = actions[:, :1].expand(-1, k, -1)
        rest = actions[:, 1:1 + (latent_frames - 1) * k]
        return torch.cat([first, rest], dim=1).reshape(actions.shape[0], latent_frames, -1)

    def displacement(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, N, A) window actions -> (B, N, ARM_DIMS): each frame's arm command summed since the last context
        frame, divided by the number of frames after it (so a chunk of full-scale commands sums to about 1)."""
        total = actions[..., :ARM_DIMS].cumsum(dim=1)
        last_context = self.context_frames - 1
        scale = max(actions.shape[1] - self.context_frames, 1)
        offset = (total - total[:, last_context:last_context + 1]) / scale
        # The anchor o_0 may lie any time back: its displacement is unknown, not part of the recent motion.
        return torch.cat([torch.zeros_like(offset[:, :1]), offset[:, 1:]], dim=1)

    def frame_embedding(self, actions: torch.Tensor, latent_frames: int) -> torch.Tensor:
        if self.context_frames:
            actions = torch.cat([actions, self.displacement(actions)], dim=-1)
        return self.frame_mlp(self.per_latent_frame(actions, latent_frames))


class ActionConditionedWan(nn.Module):
    """Predicts the rectified-flow velocity of a latent window given per-frame timesteps and actions."""

    def __init__(self, config: DenoiserConfig, latent_channels: int, frames_per_latent: int, max_frames: int,
                 transformer=None, context_frames: int = 0):
        from diffusers import WanTransformer3DModel

        super().__init__()
        if transformer is None:
            if config.pretrained_path:
                path = expand(config.pretrained_path)
                if not path.is_dir():
                    raise DataError(f"{path}: Wan transformer folder not found (denoiser.pretrained_path; nothing "
                                    f"is downloaded: place a diffusers-format WanTransformer3DModel there)")
                transformer = load_pretrained(WanTransformer3DModel, path, "Wan transformer")
            else:
                transformer = WanTransformer3DModel(**{**config.transformer, "in_channels": latent_channels,
                                                       "out_channels": latent_channels,
                                                       "text_dim": config.action_token_dim})
        cfg = transformer.config
        if cfg.in_channels != latent_channels or cfg.out_channels != latent_channels:
            raise ValueError(f"the Wan transformer takes {cfg.in_channels} latent channels, the codec makes "
                             f"{latent_channels} (check codec.camera_layout: 'width' keeps a pretrained model's)")
        if cfg.patch_size[0] != 1:
            raise ValueError("the world model needs a temporal patch size of 1 (one action embedding per latent frame)")
        if cfg.image_dim is not None:
            raise ValueError("image-embedding (I2V) Wan variants are not supported; use a T2V/TI2V transformer")
        # RoPE tables are built in float64 on CPU; float64 rotary math is several times slower than the rest.
        transformer.rope.freqs_cos = transformer.rope.freqs_cos.float()
        transformer.rope.freqs_sin = transformer.rope.freqs_sin.float()
        self.transformer = transformer
        inner_dim = cfg.num_attention_heads * cfg.attention_head_dim
        if config.displacement_embedding and not context_frames:
            raise ValueError("denoiser.displacement_embedding needs the window's number of context frames")
        self.action_encoder = ActionEncoder(cfg.text_dim, inner_dim, config.action_hidden, frames_per_latent,
                                            max_frames,
                                            context_frames=context_frames if config.displacement_embedding else 0)

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(self.transformer.config.patch_size)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """latents (B, C, F, h, w); timesteps (B, F) in [0, 1] per latent frame; actions (B, N, 7) normalized
        actions of the window's frames -> velocity (B, C, F, h, w)."""
        tr = self.transformer
        b, _, f, h, w = latents.shape
        _, ph, pw = self.patch_size
        if h % ph or w % pw:
            raise ValueError(f"latent size {h}x{w} is not divisible by the patch size {ph}x{pw}")
        gh, gw = h // ph, w // pw
        dtype = tr.patch_embedding.weight.dtype

        rotary = tr.rope(latents)
        tokens = tr.patch_embedding(latents.to(dtype)).flatten(2).transpose(1, 2).contiguous()

        # Timestep embedding per latent frame (all tokens of a frame share it), plus that frame's action.
        ce = tr.condition_embedder
        t_proj = ce.timesteps_proj(timesteps.flatten() * WAN_TIMESTEP_SCALE).unflatten(0, (b, f))
        temb = ce.time_embedder(t_proj.to(next(ce.time_embedder.parameters()).dtype))
        temb = temb + self.action_encoder.frame_embedding(actions.to(temb.dtype), f)
        modulation = ce.time_proj(ce.act_fn(temb)).unflatten(2, (6, -1))  # (B, F, 6, D)
        per_token = gh * gw
        modulation = modulation.repeat_interleave(per_token, dim=1)  # (B, S, 6, D): Wan2.2's per-token form
        temb = temb.repeat_interleave(per_token, dim=1)

        context = ce.text_embedder(self.action_encoder.tokens(actions.to(dtype)).to(dtype))
        for block in tr.blocks:
            if torch.is_grad_enabled() and tr.gradient_checkpointing:
                tokens = tr._gradient_checkpointing_func(block, tokens, context, modulation, rotary)
            else:
                tokens = block(tokens, context, modulation, rotary)

        shift, scale = (tr.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
        tokens = (tr.norm_out(tokens.float()) * (1 + scale.squeeze(2)) + shift.squeeze(2)).type_as(tokens)
        out = tr.proj_out(tokens)
        out = out.reshape(b, f, gh, gw, 1, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return out.flatten(6, 7).flatten(4, 5).flatten(2, 3).float()


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe(module: nn.Module) -> str:
    n = parameter_count(module)
    return f"{n / 1e6:.2f}M parameters" if n >= 1e5 else f"{n} parameters"


def shifted(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Rectified-flow time warp: more weight on high noise for shift > 1."""
    return t if math.isclose(shift, 1.0) else shift * t / (1 + (shift - 1) * t)
