"""The policy interface every model implements and the server serves (model: openpi's ``infer(obs) -> dict``).

Observation (one control step, numpy, as it arrives from the robot or the sim):

- ``"observation.images.agentview"``: (H, W, 3) uint8; optional ``"observation.images.wrist"``
- ``"observation.state"``: (8,) float32 proprio (see ``wovr_core.types.STATE_DIM``)
- ``"task"``: str, the language instruction

Reply: ``{"actions": (chunk_length, 7) float32, ...}`` in robot units (unnormalized), optionally
``"policy_timing": {"preprocess_ms", "infer_ms", "postprocess_ms"}``.

Loaders are registered in :data:`POLICIES` under a checkpoint's ``policy_type``:
``load(checkpoint_dir: Path) -> Policy``. This module must not need torch.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wovr_core.registry import Registry
from wovr_core.transforms import Compose, DataTransform
from wovr_core.types import ACTION_DIM, STATE_DIM

IMAGE_KEY_PREFIX = "observation.images."
AGENTVIEW_KEY = "observation.images.agentview"
WRIST_KEY = "observation.images.wrist"
STATE_KEY = "observation.state"
TASK_KEY = "task"
ACTIONS_KEY = "actions"


class PolicyOutputError(ValueError):
    """A policy returned something that breaks the action contract (wrong shape, NaN...)."""


@dataclass(frozen=True)
class ActionContract:
    """What a policy reads and writes; a client and a hot-swapped checkpoint must agree on all of it."""

    chunk_length: int
    image_shapes: Mapping[str, tuple[int, int, int]] = field(
        default_factory=lambda: {AGENTVIEW_KEY: (224, 224, 3)})
    action_dim: int = ACTION_DIM
    state_dim: int = STATE_DIM

    def __post_init__(self) -> None:
        if self.chunk_length < 1 or self.action_dim < 1 or self.state_dim < 0:
            raise ValueError(f"invalid action contract {self}")
        if not self.image_shapes:
            raise ValueError("an action contract needs at least one image key")
        for key, shape in self.image_shapes.items():
            if not key.startswith(IMAGE_KEY_PREFIX) or len(shape) != 3 or shape[2] != 3 or min(shape) < 1:
                raise ValueError(f"image {key!r}: expected an observation.images.* key with shape (H, W, 3), "
                                 f"got {shape}")

    def to_dict(self) -> dict:
        return {
            "action_dim": self.action_dim,
            "chunk_length": self.chunk_length,
            "state_dim": self.state_dim,
            "state_key": STATE_KEY,
            "task_key": TASK_KEY,
            "image_keys": {k: list(v) for k, v in sorted(self.image_shapes.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActionContract:
        return cls(chunk_length=int(data["chunk_length"]), action_dim=int(data["action_dim"]),
                   state_dim=int(data["state_dim"]),
                   image_shapes={k: tuple(int(n) for n in v) for k, v in data["image_keys"].items()})

    def differences(self, other: ActionContract) -> list[str]:
        """Human-readable mismatches between two contracts (empty when they agree)."""
        diffs = [f"{name}: {getattr(self, name)} != {getattr(other, name)}"
                 for name in ("chunk_length", "action_dim", "state_dim")
                 if getattr(self, name) != getattr(other, name)]
        for key in sorted(set(self.image_shapes) | set(other.image_shapes)):
            mine, theirs = self.image_shapes.get(key), other.image_shapes.get(key)
            if tuple(mine or ()) != tuple(theirs or ()):
                diffs.append(f"{key}: {mine or 'absent'} != {theirs or 'absent'}")
        return diffs

    def check_actions(self, reply: Mapping[str, Any]) -> np.ndarray:
        """The reply's actions as float32 (chunk_length, action_dim), or PolicyOutputError."""
        if not isinstance(reply, Mapping) or ACTIONS_KEY not in reply:
            raise PolicyOutputError(f"policy reply has no {ACTIONS_KEY!r}")
        actions = np.asarray(reply[ACTIONS_KEY])
        expected = (self.chunk_length, self.action_dim)
        if actions.shape != expected:
            raise PolicyOutputError(f"policy actions have shape {actions.shape}, the contract says {expected}")
        if actions.dtype.kind not in "fiu" or not np.all(np.isfinite(actions)):
            raise PolicyOutputError("policy actions are not all finite numbers")
        return actions.astype(np.float32, copy=False)


class Policy(abc.ABC):
    """Maps one observation to a chunk of actions."""

    @abc.abstractmethod
    def infer(self, obs: dict) -> dict:
        """``obs`` as in the module docstring -> ``{"actions": (chunk_length, 7) float32, ...}``."""

    @abc.abstractmethod
    def metadata(self) -> dict:
        """``{"policy_type", "checkpoint_id", "action_contract": ActionContract.to_dict(), ...}``."""

    @property
    def contract(self) -> ActionContract:
        return ActionContract.from_dict(self.metadata()["action_contract"])

    def reset(self) -> None:  # noqa: B027 - optional hook, stateless policies need nothing
        """Start of a new episode (policies with internal state clear it)."""

    def close(self) -> None:  # noqa: B027 - optional hook, numpy policies hold nothing to release
        """Release memory/devices; the policy is not used afterwards."""


class TransformedPolicy(Policy):
    """A model wrapped in the checkpoint's input and output transforms, each stage timed.

    Subclasses implement :meth:`predict` in model space (normalized inputs -> normalized ``actions``).
    """

    def __init__(self, *, policy_type: str, checkpoint_id: str, contract: ActionContract,
                 input_transform: DataTransform | None = None, output_transform: DataTransform | None = None,
                 extra_metadata: Mapping[str, Any] | None = None):
        self.policy_type = policy_type
        self.checkpoint_id = checkpoint_id
        self._contract = contract
        self.input_transform = input_transform if input_transform is not None else Compose()
        self.output_transform = output_transform if output_transform is not None else Compose()
        self._extra_metadata = dict(extra_metadata or {})

    @abc.abstractmethod
    def predict(self, inputs: dict) -> dict:
        """Transformed observation -> ``{"actions": ...}`` before the output transforms."""

    @property
    def contract(self) -> ActionContract:
        return self._contract

    def metadata(self) -> dict:
        return {**self._extra_metadata, "policy_type": self.policy_type, "checkpoint_id": self.checkpoint_id,
                "action_contract": self._contract.to_dict()}

    def infer(self, obs: dict) -> dict:
        t0 = time.perf_counter()
        inputs = self.input_transform(dict(obs))
        t1 = time.perf_counter()
        raw = self.predict(inputs)
        t2 = time.perf_counter()
        # Output transforms see the inputs too (e.g. AbsoluteActions needs the state).
        out = self.output_transform({**inputs, **raw})
        reply = {k: out[k] for k in raw}
        reply[ACTIONS_KEY] = self._contract.check_actions(reply)
        t3 = time.perf_counter()
        reply["policy_timing"] = {"preprocess_ms": (t1 - t0) * 1e3, "infer_ms": (t2 - t1) * 1e3,
                                  "postprocess_ms": (t3 - t2) * 1e3}
        return reply


POLICIES: Registry[Policy] = Registry("policy")
"""policy_type -> ``load(checkpoint_dir: Path) -> Policy``; lazy "module:function" entries."""

POLICIES.register("stub", "wovr_core.policy.stub:load_stub_policy")
POLICIES.register("vla", "wovr_core.policy.vla_policy:load_vla_policy")

