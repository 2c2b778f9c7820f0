"""A state probe: a small CNN that reads the end-effector position and gripper opening off the frames.

Used to *measure* action controllability of imagined videos (does the imagined gripper move where the
actions say?). It is fitted on real frames and their recorded robot state, and its held-out error is
reported with every measurement so a bad probe cannot pass for a good world model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

PROBE_TARGETS = ("eef_x", "eef_y", "eef_z", "gripper_opening")


def probe_targets(states: np.ndarray) -> np.ndarray:
    """(N, 8) proprio (eef pos, axis-angle, finger qpos) -> (N, 4): eef xyz and finger opening."""
    states = np.asarray(states, np.float32)
    return np.concatenate([states[:, :3], (states[:, 6] - states[:, 7])[:, None]], axis=1)


class StateProbe(nn.Module):
    """Frames of all cameras (stacked as channels) -> normalized probe targets."""

    def __init__(self, num_cameras: int, width: int = 32, outputs: int = len(PROBE_TARGETS)):
        super().__init__()
        layers, c = [], 3 * num_cameras
        for w in (width, width, 2 * width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GroupNorm(8, w), nn.SiLU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, outputs)
        self.register_buffer("mean", torch.zeros(outputs))
        self.register_buffer("std", torch.ones(outputs))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).mean(dim=(2, 3)))

    @staticmethod
    def to_images(frames: dict[str, np.ndarray], cameras: Sequence[str]) -> torch.Tensor:
        x = np.concatenate([np.asarray(frames[c]) for c in cameras], axis=-1)  # (N, H, W, 3 V)
        return torch.as_tensor(x).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    @torch.no_grad()
    def predict(self, frames: dict[str, np.ndarray], cameras: Sequence[str], batch: int = 256) -> np.ndarray:
        """(N, 4) in physical units (metres; finger opening in joint units)."""
        self.eval()
        n = len(frames[cameras[0]])
        out = [self(self.to_images({c: frames[c][i:i + batch] for c in cameras}, cameras))
               for i in range(0, n, batch)]
        return (torch.cat(out) * self.std + self.mean).numpy() if out else np.zeros((0, len(PROBE_TARGETS)))


def fit_state_probe(frames: dict[str, np.ndarray], targets: np.ndarray, cameras: Sequence[str], steps: int = 600,
                    batch_size: int = 64, seed: int = 0) -> StateProbe:
    """Regress ``targets`` (N, 4) from frames (camera -> (N, H, W, 3)) with small random shifts."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    probe = StateProbe(len(cameras))
    t = torch.as_tensor(targets, dtype=torch.float32)
    probe.mean.copy_(t.mean(0))
    probe.std.copy_(t.std(0).clamp_min(1e-4))
    y_all = (t - probe.mean) / probe.std
    optimizer = torch.optim.AdamW(probe.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=max(1, steps))
    n = len(targets)
    probe.train()
    for _ in range(steps):
        idx = rng.integers(0, n, batch_size)
        images = StateProbe.to_images({c: frames[c][idx] for c in cameras}, cameras)
        images = torch.roll(images, shifts=(int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), dims=(2, 3))
        loss = F.smooth_l1_loss(probe(images), y_all[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return probe.eval()


def probe_quality(probe: StateProbe, frames: dict[str, np.ndarray], targets: np.ndarray,
                  cameras: Sequence[str]) -> dict[str, float]:
    """Held-out R^2 and mean absolute error per target."""
    pred = probe.predict(frames, cameras)
    err = pred - targets
    var = targets.var(0)
    out = {}
    for k, name in enumerate(PROBE_TARGETS):
        out[f"r2_{name}"] = float(1 - (err[:, k] ** 2).mean() / var[k]) if var[k] > 0 else float("nan")
        out[f"mae_{name}"] = float(np.abs(err[:, k]).mean())
    return out
