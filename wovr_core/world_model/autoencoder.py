"""A small 2D convolutional frame autoencoder: the ``tiny`` world model's pixel codec.

Why not a tiny ``AutoencoderKLWan``: its causal 3D convolutions cost about 100x more per decoded frame than
this network at the same width on a CPU (measured: a 2-stage, base-16 Wan VAE took ~7 s per 8x8 frames at
128 px on 2 cores), and decoding is most of the imagination time. This codec keeps the Wan VAE's role
(frames -> a latent grid, per-channel normalized latents) with one latent frame per frame.

Subclasses diffusers' ``ModelMixin``/``ConfigMixin`` so it saves and loads like the diffusers models it sits
next to (``config.json`` + safetensors, no pickle).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn import functional as F


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class FrameAutoencoder(ModelMixin, ConfigMixin):
    """Images (N, 3, H, W) in [-1, 1] <-> latents (N, latent_channels, H / f, W / f), f = 2 ** len(blocks).

    ``latent_mean``/``latent_std`` (per channel, measured on training frames after fitting) make the latents
    roughly unit-variance for the diffusion model; :meth:`encode` returns normalized latents.
    """

    @register_to_config
    def __init__(self, block_channels: tuple[int, ...] = (16, 32, 64), latent_channels: int = 4,
                 mid_blocks: int = 1, decoder_block_channels: tuple[int, ...] | None = None,
                 decoder_mid_blocks: int | None = None, latent_mean: list[float] | None = None,
                 latent_std: list[float] | None = None):
        super().__init__()
        chans = list(block_channels)
        dec = list(decoder_block_channels or block_channels)
        if len(dec) != len(chans):
            raise ValueError(f"decoder_block_channels {dec} must have as many stages as block_channels {chans}")
        dec_mid = mid_blocks if decoder_mid_blocks is None else decoder_mid_blocks
        self.encoder_in = nn.Conv2d(3, chans[0], 3, padding=1)
        self.down = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1) for c_in, c_out in zip([chans[0]] + chans[:-1], chans, strict=True)
        )
        self.encoder_mid = nn.Sequential(*[_ResBlock(chans[-1]) for _ in range(mid_blocks)])
        self.encoder_out = nn.Conv2d(chans[-1], latent_channels, 1)

        # The decoder runs for every imagined frame, the encoder only on real context frames: the decoder can
        # be made narrower (decoder_block_channels) without slowing training's encoder down or vice versa.
        self.decoder_in = nn.Conv2d(latent_channels, dec[-1], 3, padding=1)
        self.decoder_mid = nn.Sequential(*[_ResBlock(dec[-1]) for _ in range(dec_mid)])
        # Transposed 2x2 convolutions upsample without overlap: cheap, and the 3x3 convolution after each
        # (at the lower widths) smooths the seams.
        outs = dec[-2::-1] + [3]
        self.up = nn.ModuleList(nn.ConvTranspose2d(c_in, c_out, 2, stride=2) for c_in, c_out in zip(dec[::-1], outs, strict=True))
        self.refine = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for c in outs[:-1])
        mean = torch.tensor(latent_mean if latent_mean is not None else [0.0] * latent_channels)
        std = torch.tensor(latent_std if latent_std is not None else [1.0] * latent_channels)
        self.register_buffer("latent_offset", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("latent_scale", std.view(1, -1, 1, 1), persistent=False)

    @property
    def downsample_factor(self) -> int:
        return 2 ** len(self.config.block_channels)

    def encode_raw(self, images: torch.Tensor) -> torch.Tensor:
        h = self.encoder_in(images)
        for down in self.down:
            h = down(F.silu(h))
        return self.encoder_out(self.encoder_mid(h))

    def decode_raw(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.decoder_mid(self.decoder_in(latents))
        for i, up in enumerate(self.up):
            h = up(F.silu(h))
            if i < len(self.refine):
                h = h + self.refine[i](F.silu(h))
        return h

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return (self.encode_raw(images) - self.latent_offset) / self.latent_scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decode_raw(latents * self.latent_scale + self.latent_offset)

    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel statistics of raw latents (config + buffers) so that encode() normalizes."""
        mean = mean.detach().float().flatten()
        std = std.detach().float().flatten().clamp_min(1e-4)
        self.register_to_config(latent_mean=mean.tolist(), latent_std=std.tolist())
        self.latent_offset.copy_(mean.view(1, -1, 1, 1))
        self.latent_scale.copy_(std.view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor, latent_noise: float = 0.0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and normalized latents. ``latent_noise`` perturbs the latents in training so the
        decoder tolerates the small errors of generated latents; ``generator`` (CPU) fixes that noise."""
        latents = self.encode(images)
        if latent_noise > 0:
            noise = torch.randn(latents.shape, generator=generator, device="cpu").to(latents.device, latents.dtype)
            latents_in = latents + latent_noise * noise
        else:
            latents_in = latents
        return self.decode(latents_in), latents
