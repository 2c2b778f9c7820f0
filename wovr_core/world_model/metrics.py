"""Frame fidelity metrics: PSNR and SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5), on uint8
frames (..., H, W, 3), one value per frame."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB of uint8 frames (..., H, W, 3); identical frames give 100 dB (not inf), so
    means stay finite."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"shapes differ: {a64.shape} vs {b64.shape}")
    mse = ((a64 - b64) ** 2).reshape(*a64.shape[:-3], -1).mean(-1)
    return np.where(mse == 0, 100.0, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12)))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame SSIM of uint8 frames (..., H, W, 3), averaged over channels and valid window positions."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"shapes differ: {np.shape(a)} vs {np.shape(b)}")
    lead = np.shape(a)[:-3]
    h, w = np.shape(a)[-3:-1]
    x = torch.as_tensor(np.asarray(a, np.float32)).reshape(-1, h, w, 3).permute(0, 3, 1, 2)
    y = torch.as_tensor(np.asarray(b, np.float32)).reshape(-1, h, w, 3).permute(0, 3, 1, 2)
    size = min(11, h, w)
    window = _gaussian_window(size).expand(3, 1, size, size)

    def blur(z):
        return F.conv2d(z, window, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _SSIM_C1) * (2 * sxy + _SSIM_C2)
    den = (mu_x**2 + mu_y**2 + _SSIM_C1) * (sxx + syy + _SSIM_C2)
    values = (num / den).mean(dim=(1, 2, 3)).double().numpy()
    return values.reshape(lead)


def horizon_means(per_frame: np.ndarray, horizons: tuple[int, ...]) -> dict[int, float]:
    """Mean of a per-frame curve (..., T) over the first h frames, for each horizon h <= T."""
    per_frame = np.asarray(per_frame, np.float64)
    return {h: float(per_frame[..., :h].mean()) for h in horizons if h <= per_frame.shape[-1]}
