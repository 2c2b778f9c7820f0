"""Small real implementations of the RL protocols for the ``test_rl_*`` tests.

``DotWorld``: a world model whose "physics" is a dot moving by the x/y actions, rendered as images (it reads
the dot back from the context frames, like a model encoding its context). ``DotScorer``: a reward model that
finds the dot in a frame and scores how far it is toward the task's side. ``TaskTablePolicy``: a token policy
with a learnable table of logits per task (the smallest policy whose success depends on its tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from wovr_core.rl.protocols import Observations, PolicySample
from wovr_core.types import ACTION_DIM, DUMMY_ACTION

SIZE = 16
CAMERA = "agentview"
TASKS = ("push the dot right", "push the dot left")


def render(positions: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(n, 2) positions in [0, 1] -> (n, size, size, 3) uint8 frames with a Gaussian dot."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    px = np.asarray(positions, np.float64) * (size - 1)
    d2 = (x[None] - px[:, 0, None, None]) ** 2 + (y[None] - px[:, 1, None, None]) ** 2
    intensity = np.round(255 * np.exp(-d2 / (2 * 1.2**2))).astype(np.uint8)
    return np.repeat(intensity[..., None], 3, axis=-1)


def locate(frames: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) frames -> (..., 2) dot positions in [0, 1] (intensity centroid)."""
    img = frames[..., 0].astype(np.float64)
    size = img.shape[-1]
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    total = img.sum(axis=(-2, -1))
    return np.stack([(img * x).sum(axis=(-2, -1)) / total, (img * y).sum(axis=(-2, -1)) / total], -1) / (size - 1)


@dataclass
class DotState:
    positions: torch.Tensor  # (B, 2)

    def select(self, index) -> DotState:
        return DotState(self.positions[torch.as_tensor(np.asarray(index), dtype=torch.long)])


class DotWorld:
    """ImaginationModel: x/y actions move the dot by ``speed`` per control step, one frame per action."""

    def __init__(self, speed: float = 0.03, chunk: int = 8):
        self.speed = speed
        self.chunk = chunk
        self.observed: list[tuple[dict, np.ndarray | None]] = []
        self.fail_next = False

    def observe(self, context_frames, context_actions=None) -> DotState:
        self.observed.append((context_frames, context_actions))
        return DotState(torch.as_tensor(locate(context_frames[CAMERA][:, -1])))

    def imagine(self, state: DotState, actions: np.ndarray):
        assert actions.shape == (state.positions.shape[0], self.chunk, ACTION_DIM)
        steps = torch.as_tensor(actions[..., :2], dtype=torch.float64) * self.speed
        path = (state.positions[:, None] + torch.cumsum(steps, dim=1)).clamp(0.1, 0.9)
        frames = render(path.reshape(-1, 2).numpy()).reshape(len(path), self.chunk, SIZE, SIZE, 3)
        new = DotState(path[:, -1].clone())
        if self.fail_next:
            new.positions[:] = float("nan")
        return {CAMERA: frames}, new


class DotScorer:
    """SuccessScorer: p = sigmoid((x - 0.75) / 0.04) for "right", mirrored for "left"."""

    def __init__(self):
        self.return_nan = False

    def success_probability(self, frames, tasks):
        x = locate(frames[CAMERA])[:, 0]
        tasks = [tasks] * len(x) if isinstance(tasks, str) else list(tasks)
        sign = np.array([1.0 if "right" in t else -1.0 for t in tasks])
        margin = np.where(sign > 0, x - 0.75, 0.25 - x)
        p = 1.0 / (1.0 + np.exp(-margin / 0.04))
        if self.return_nan:
            p[0] = np.nan
        return p


def dot_episode(positions: np.ndarray, gripper: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Frames and actions of a recorded episode that visits ``positions`` (L, 2)."""
    frames = {CAMERA: render(positions)}
    actions = np.zeros((len(positions), ACTION_DIM), np.float32)
    actions[1:, :2] = np.diff(positions, axis=0)
    actions[:, 6] = -1.0 if gripper is None else gripper
    actions[0] = DUMMY_ACTION
    return frames, actions


class TaskTablePolicy(nn.Module):
    """TokenPolicy: logits (task, K tokens, bins) from a table, plus a dependence on the dot's position so the
    observation matters; tokens decode to bin centres in [-1, 1]."""

    def __init__(self, tasks=TASKS, chunk: int = 8, num_bins: int = 8):
        super().__init__()
        self.tasks = list(tasks)
        self.chunk, self.num_bins = chunk, num_bins
        self.num_tokens = chunk * ACTION_DIM
        self.table = nn.Parameter(torch.zeros(len(self.tasks), self.num_tokens, num_bins))
        self.position_gain = nn.Parameter(torch.zeros(self.num_tokens, num_bins))

    def logits(self, observations: Observations) -> torch.Tensor:
        task = torch.tensor([self.tasks.index(t) for t in observations.tasks])
        x = torch.as_tensor(locate(observations.images[CAMERA])[:, 0], dtype=torch.float32)
        return self.table[task] + (x - 0.5)[:, None, None] * self.position_gain

    def sample(self, observations, temperature, generator=None) -> PolicySample:
        with torch.no_grad():
            log_p = torch.log_softmax(self.logits(observations) / temperature, dim=-1)
            flat = log_p.exp().reshape(-1, self.num_bins)
            tokens = torch.multinomial(flat, 1, generator=generator).view(log_p.shape[:2])
            chosen = log_p.gather(-1, tokens[..., None]).squeeze(-1)
        centres = -1 + (2 * tokens.float() + 1) / self.num_bins
        actions = centres.view(-1, self.chunk, ACTION_DIM).numpy().astype(np.float32)
        return PolicySample(tokens, chosen, actions)

    def log_prob(self, observations, tokens, temperature) -> torch.Tensor:
        log_p = torch.log_softmax(self.logits(observations) / temperature, dim=-1)
        return log_p.gather(-1, tokens[..., None].long()).squeeze(-1)
