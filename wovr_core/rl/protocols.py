"""The three things RL in imagination needs, as small protocols the real classes satisfy.

- :class:`ImaginationModel`: ``observe(context_frames, context_actions) -> state`` and
  ``imagine(state, actions) -> (frames, state)`` -- ``wovr_core.world_model.WorldModel`` as is; its
  ``WorldState`` is the :class:`ImaginedState` (``select`` keeps some rollouts of a batch).
- :class:`SuccessScorer`: ``success_probability(frames, tasks) -> p`` -- ``wovr_core.reward.SuccessClassifier``
  as is.
- :class:`TokenPolicy`: ``sample(observations, temperature, generator)`` and
  ``log_prob(observations, tokens, temperature)`` over discrete action tokens -- the VLA through
  :class:`wovr_core.rl.vla_adapter.VLATokenPolicy`.

Frames are numpy ``camera -> (B, T, H, W, 3) uint8``, actions ``(B, chunk, 7)`` float32 in robot units
(DESIGN.md section 3), so the environment never depends on a model's tensors or devices.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch

from wovr_core.policy.base import IMAGE_KEY_PREFIX, TASK_KEY

Frames = dict[str, np.ndarray]
"""camera -> (B, T, H, W, 3) uint8."""

StateT = TypeVar("StateT", bound="ImaginedState")


@runtime_checkable
class ImaginedState(Protocol):
    """A world model's memory for a batch of rollouts."""

    def select(self, index: Any) -> Any:
        """The states of the batch elements ``index`` (a list or array of ints, repeats allowed), in that order."""
        ...


@runtime_checkable
class ImaginationModel(Protocol[StateT]):
    """An action-conditioned video model used as a simulator."""

    def observe(self, context_frames: Frames, context_actions: np.ndarray | None = None) -> StateT:
        """Start from real frames: T = 1 (``o_0`` alone) or ``[o_0] + memory frames`` with the (B, T, 7) actions
        that led to them (the first is the dummy action)."""
        ...

    def imagine(self, state: StateT, actions: np.ndarray) -> tuple[Frames, StateT]:
        """The next chunk of frames, one per action of ``actions`` (B, chunk, 7), and the new state."""
        ...


@runtime_checkable
class SuccessScorer(Protocol):
    """p(task accomplished) of single frames."""

    def success_probability(self, frames: Frames, tasks: str | Sequence[str]) -> np.ndarray:
        """camera -> (N, H, W, 3) uint8 and one task or one per frame -> (N,) probabilities."""
        ...


@dataclass(frozen=True)
class Observations:
    """What the policy sees at one chunk step, for a batch of rollouts: the latest frame of each camera and
    the task. There is no proprio state: a world model imagines pixels, not robot state."""

    images: Mapping[str, np.ndarray]  # camera -> (B, H, W, 3) uint8
    tasks: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("observations need at least one camera")
        for camera, image in self.images.items():
            if image.ndim != 4 or image.shape[-1] != 3 or image.dtype != np.uint8:
                raise ValueError(f"images[{camera!r}] must be (B, H, W, 3) uint8, got {image.shape} {image.dtype}")
            if len(image) != len(self.tasks):
                raise ValueError(f"images[{camera!r}] holds {len(image)} frames for {len(self.tasks)} tasks")

    def __len__(self) -> int:
        return len(self.tasks)

    def select(self, index: Sequence[int] | np.ndarray) -> Observations:
        index = np.asarray(index, dtype=np.int64)
        return Observations({c: v[index] for c, v in self.images.items()}, tuple(self.tasks[i] for i in index))

    @staticmethod
    def concat(parts: Sequence[Observations]) -> Observations:
        if not parts:
            raise ValueError("cannot concatenate zero observation batches")
        cameras = list(parts[0].images)
        return Observations({c: np.concatenate([p.images[c] for p in parts]) for c in cameras},
                            tuple(t for p in parts for t in p.tasks))

    def to_policy_inputs(self) -> list[dict[str, Any]]:
        """One observation dict per rollout, with the keys of ``wovr_core.policy.base``."""
        return [{**{IMAGE_KEY_PREFIX + c: v[i] for c, v in self.images.items()}, TASK_KEY: task}
                for i, task in enumerate(self.tasks)]


class PolicySample(NamedTuple):
    """One chunk per observation: its tokens, their log-probs at sampling time, and the decoded actions."""

    tokens: torch.Tensor  # (B, K) int64, K = chunk * action_dim
    log_probs: torch.Tensor  # (B, K) float32, under softmax(logits / temperature)
    actions: np.ndarray  # (B, chunk, 7) float32, robot units


@runtime_checkable
class TokenPolicy(Protocol):
    """A policy over discrete action tokens with exact per-token log-probabilities.

    ``sample`` runs without gradient; ``log_prob`` is differentiable and, at unchanged weights, returns exactly
    the log-probs ``sample`` reported (the first PPO ratio is 1). Both use the same temperature, as the
    reference does (RLinf ``temperature_train``). The caller sets train/eval mode; sample and log_prob must
    agree (no dropout differences) for the ratio to be meaningful.
    """

    def sample(self, observations: Observations, temperature: float,
               generator: torch.Generator | None = None) -> PolicySample:
        ...

    def log_prob(self, observations: Observations, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
        """(B, K) log-probabilities of ``tokens`` (B, K)."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        ...
