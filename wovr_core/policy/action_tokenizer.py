"""Normalized action chunks <-> discrete action tokens: ``num_bins`` uniform bins over [-1, 1].

Normalization (q01/q99 -> [-1, 1], gripper passed through) is ``wovr_core.transforms.Normalize`` and runs
before this, so training and serving share it; this module only bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActionTokenizer:
    """A (chunk_size, action_dim) chunk in [-1, 1] <-> chunk_size * action_dim tokens in [0, num_bins).

    Tokens are flat, step-major: token ``t * action_dim + d`` is dim ``d`` of step ``t``. Values outside
    [-1, 1] (beyond the dataset's 1st/99th percentile) are clipped into the edge bins; decoding returns bin centres.
    """

    chunk_size: int = 8
    action_dim: int = 7
    num_bins: int = 256

    @property
    def num_tokens(self) -> int:
        return self.chunk_size * self.action_dim

    def bin_centers(self) -> np.ndarray:
        return (-1.0 + (2.0 * np.arange(self.num_bins) + 1.0) / self.num_bins).astype(np.float32)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """(..., chunk_size, action_dim) normalized actions -> (..., num_tokens) int64 tokens."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape[-2:] != (self.chunk_size, self.action_dim):
            raise ValueError(f"expected actions of shape (..., {self.chunk_size}, {self.action_dim}), "
                             f"got {actions.shape}")
        if not np.isfinite(actions).all():
            raise ValueError("actions hold NaN or inf")
        tokens = np.floor((np.clip(actions, -1.0, 1.0) + 1.0) / 2.0 * self.num_bins)
        tokens = np.minimum(tokens, self.num_bins - 1).astype(np.int64)  # +1.0 falls in the last bin
        return tokens.reshape(*actions.shape[:-2], self.num_tokens)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(..., num_tokens) integer tokens -> (..., chunk_size, action_dim) float32 normalized actions."""
        tokens = np.asarray(tokens)
        if tokens.shape[-1:] != (self.num_tokens,) or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"expected integer tokens of shape (..., {self.num_tokens}), "
                             f"got {tokens.dtype} {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.num_bins):
            raise ValueError(f"action tokens must lie in [0, {self.num_bins}), got [{tokens.min()}, {tokens.max()}]")
        return self.bin_centers()[tokens].reshape(*tokens.shape[:-1], self.chunk_size, self.action_dim)
