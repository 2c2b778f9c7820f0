"""Pixel codecs: multi-camera uint8 video <-> one normalized latent video the transformer works on.

Conventions: a *video* is a float tensor (B, V, 3, T, H, W) in [-1, 1] for V cameras; a *latent video* is
(B, C, t, h, w). ``temporal_factor`` k: a causal video codec maps ``1 + k n`` frames to ``1 + n`` latent
frames (the first frame alone, then groups of k); a frame-wise codec has k = 1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from wovr_core.errors import DataError
from wovr_core.world_model.autoencoder import FrameAutoencoder
from wovr_core.world_model.checkpoint import load_pretrained
from wovr_core.world_model.config import CodecConfig, expand

log = logging.getLogger(__name__)


class Codec(nn.Module):
    """Base class: camera layout (stacked latent channels, or images side by side) around a codec of
    single-camera videos (``_encode``: (N, 3, T, H, W) -> (N, c, t, h, w), ``_decode`` the inverse)."""

    temporal_factor: int = 1
    spatial_factor: int = 8
    camera_latent_channels: int = 4
    trainable: bool = False

    def __init__(self, config: CodecConfig, num_cameras: int):
        super().__init__()
        self.config = config
        self.num_cameras = num_cameras

    @property
    def latent_channels(self) -> int:
        per_camera = self.camera_latent_channels
        return per_camera * self.num_cameras if self.config.camera_layout == "channels" else per_camera

    def latent_hw(self, image_size: int) -> tuple[int, int]:
        h = image_size // self.spatial_factor
        w = h * self.num_cameras if self.config.camera_layout == "width" else h
        return h, w

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a video of ``frames`` frames (first frame alone, then groups of k)."""
        k = self.temporal_factor
        if k == 1:
            return frames
        if (frames - 1) % k:
            raise ValueError(f"a causal codec with temporal factor {k} needs 1 + {k} n frames, got {frames}")
        return 1 + (frames - 1) // k

    # ---- layout ---------------------------------------------------------------------------------------
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        b, v, c, t, h, w = video.shape
        if self.config.camera_layout == "width":
            return self._encode(video.permute(0, 2, 3, 4, 1, 5).reshape(b, c, t, h, v * w))
        z = self._encode(video.reshape(b * v, c, t, h, w))
        return z.reshape(b, v * z.shape[1], *z.shape[2:])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b = latents.shape[0]
        v = self.num_cameras
        if self.config.camera_layout == "width":
            x = self._decode(latents)
            _, c, t, h, vw = x.shape
            return x.reshape(b, c, t, h, v, vw // v).permute(0, 4, 1, 2, 3, 5)
        z = latents.reshape(b * v, latents.shape[1] // v, *latents.shape[2:])
        x = self._decode(z)
        return x.reshape(b, v, *x.shape[1:])

    def decode_chunk(self, context: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        """Frames of the latent ``chunk`` that follows ``context`` (a causal decoder needs the context)."""
        return self.decode(chunk)

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        """Write the weights a checkpoint needs (nothing for a frozen pretrained codec)."""


class FrameAECodec(Codec):
    """:class:`FrameAutoencoder` applied frame by frame (temporal factor 1)."""

    trainable = True

    def __init__(self, config: CodecConfig, num_cameras: int, autoencoder: FrameAutoencoder | None = None):
        super().__init__(config, num_cameras)
        if autoencoder is None and config.pretrained_path:
            # An autoencoder trained in an earlier run (its <model>/codec folder): train-wm goes on training
            # it for ae_max_steps, or with ae_max_steps=0 reuses it as it is (one latent space for runs that
            # share it).
            path = expand(config.pretrained_path)
            if not path.is_dir():
                raise DataError(f"{path}: frame autoencoder folder not found (codec.pretrained_path)")
            autoencoder = load_pretrained(FrameAutoencoder, path, "frame autoencoder")
        # channels_last: oneDNN's CPU convolutions (transposed ones above all) are many times faster with it.
        self.autoencoder = (autoencoder or FrameAutoencoder(**config.frame_ae)).to(memory_format=torch.channels_last)
        self.spatial_factor = self.autoencoder.downsample_factor
        self.camera_latent_channels = int(self.autoencoder.config.latent_channels)

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = video.shape
        images = video.transpose(1, 2).reshape(n * t, c, h, w).contiguous(memory_format=torch.channels_last)
        z = self.autoencoder.encode(images)
        return z.reshape(n, t, *z.shape[1:]).transpose(1, 2)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = latents.shape
        z = latents.transpose(1, 2).reshape(n * t, c, h, w).contiguous(memory_format=torch.channels_last)
        x = self.autoencoder.decode(z)
        return x.reshape(n, t, *x.shape[1:]).transpose(1, 2)

    def save(self, directory: Path) -> None:
        self.autoencoder.save_pretrained(directory / "codec")

    @classmethod
    def load(cls, config: CodecConfig, num_cameras: int, directory: Path) -> FrameAECodec:
        return cls(config, num_cameras, load_pretrained(FrameAutoencoder, directory / "codec", "frame autoencoder"))


class WanVAECodec(Codec):
    """diffusers ``AutoencoderKLWan`` (Wan2.1/2.2 causal video VAE), frozen; latents normalized with the
    VAE's own ``latents_mean``/``latents_std``."""

    def __init__(self, config: CodecConfig, num_cameras: int, vae=None):
        from diffusers import AutoencoderKLWan

        super().__init__(config, num_cameras)
        if vae is None:
            if config.pretrained_path:
                path = expand(config.pretrained_path)
                if not path.is_dir():
                    raise DataError(f"{path}: Wan VAE folder not found (codec.pretrained_path; nothing is "
                                    f"downloaded: place a diffusers-format AutoencoderKLWan there)")
                vae = load_pretrained(AutoencoderKLWan, path, "Wan VAE")
            else:
                vae = AutoencoderKLWan(**config.wan_vae)
        self.vae = vae.eval().requires_grad_(False)
        cfg = vae.config
        self.temporal_factor = int(cfg.scale_factor_temporal or 2 ** sum(cfg.temperal_downsample))
        self.spatial_factor = int(cfg.scale_factor_spatial or 2 ** len(cfg.temperal_downsample))
        self.camera_latent_channels = int(cfg.z_dim)
        z = int(cfg.z_dim)
        mean = cfg.latents_mean if len(cfg.latents_mean or []) == z else [0.0] * z
        std = cfg.latents_std if len(cfg.latents_std or []) == z else [1.0] * z
        self.register_buffer("latents_mean", torch.tensor(mean).view(1, z, 1, 1, 1), persistent=False)
        self.register_buffer("latents_std", torch.tensor(std).view(1, z, 1, 1, 1), persistent=False)

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(video.to(self.vae.dtype)).latent_dist.mode().float()
        return (z - self.latents_mean) / self.latents_std

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents * self.latents_std + self.latents_mean
        return self.vae.decode(z.to(self.vae.dtype)).sample.float().clamp(-1, 1)

    def decode_chunk(self, context: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        # The causal decoder turns latent frame 0 into one frame and every later one into k frames, and each
        # depends on those before it: decode the whole window, keep the chunk's frames.
        frames = self.decode(torch.cat([context, chunk], dim=2))
        return frames[:, :, :, -chunk.shape[2] * self.temporal_factor:]

    def save(self, directory: Path) -> None:
        if not self.config.pretrained_path:  # built from kwargs (tests): its random weights must travel along
            self.vae.save_pretrained(directory / "codec")

    @classmethod
    def load(cls, config: CodecConfig, num_cameras: int, directory: Path) -> WanVAECodec:
        if config.pretrained_path:
            return cls(config, num_cameras)
        from diffusers import AutoencoderKLWan

        return cls(config, num_cameras, load_pretrained(AutoencoderKLWan, directory / "codec", "Wan VAE"))


def build_codec(config: CodecConfig, num_cameras: int) -> Codec:
    return FrameAECodec(config, num_cameras) if config.kind == "frame_ae" else WanVAECodec(config, num_cameras)


def load_codec(config: CodecConfig, num_cameras: int, directory: Path) -> Codec:
    cls = FrameAECodec if config.kind == "frame_ae" else WanVAECodec
    return cls.load(config, num_cameras, directory)
