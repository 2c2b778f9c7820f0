"""A numpy-only stand-in policy with a fixed cost, for testing and benchmarking the serving stack.

Its actions are a deterministic function of the whole observation (state, images, task) and of the
checkpoint's ``action_bias``, so a test can tell which request and which checkpoint produced a reply.
It runs through the same transforms as a real checkpoint (state normalized in, actions unnormalized out).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from wovr_core.config import ConfigError, from_dict, to_dict
from wovr_core.errors import DataError
from wovr_core.policy.base import (
    AGENTVIEW_KEY,
    STATE_KEY,
    TASK_KEY,
    WRIST_KEY,
    ActionContract,
    TransformedPolicy,
)
from wovr_core.policy.checkpoint import (
    CONFIG_FILE,
    checkpoint_id,
    checkpoint_transforms,
    make_example_observation,
    read_checkpoint_config,
    write_checkpoint_files,
)
from wovr_core.transforms import NormStats
from wovr_core.types import ACTION_DIM, STATE_DIM

POLICY_TYPE = "stub"


def _default_images() -> dict:
    return {AGENTVIEW_KEY: [224, 224, 3], WRIST_KEY: [224, 224, 3]}


@dataclass
class StubPolicyConfig:
    PRESETS: ClassVar[dict] = {"tiny": {}}

    chunk_length: int = 8
    cost_ms: float = 10.0  # fixed wall time of one inference, like a model's forward pass
    action_bias: float = 0.0  # added to every (normalized) action: tells checkpoints apart
    image_shapes: dict = field(default_factory=_default_images)
    state_dim: int = STATE_DIM

    def validate(self) -> None:
        if self.chunk_length < 1:
            raise ConfigError(f"chunk_length must be >= 1, got {self.chunk_length}")
        if self.cost_ms < 0:
            raise ConfigError(f"cost_ms must be >= 0, got {self.cost_ms}")

    def contract(self) -> ActionContract:
        return ActionContract(chunk_length=self.chunk_length, state_dim=self.state_dim,
                              image_shapes={k: tuple(v) for k, v in self.image_shapes.items()})


class StubPolicy(TransformedPolicy):
    """Deterministic, input-dependent actions after a fixed ``cost_ms`` sleep."""

    def __init__(self, config: StubPolicyConfig, checkpoint_id: str = "stub", **kwargs):
        super().__init__(policy_type=POLICY_TYPE, checkpoint_id=checkpoint_id, contract=config.contract(),
                         **kwargs)
        self.config = config

    def predict(self, inputs: dict) -> dict:
        start = time.perf_counter()
        state = np.asarray(inputs[STATE_KEY], dtype=np.float32)
        features = np.zeros(ACTION_DIM, dtype=np.float32)
        n = min(ACTION_DIM, state.shape[0])
        features[:n] = state[:n]
        image_term = sum(float(np.mean(inputs[k])) / 255.0 for k in sorted(self.config.image_shapes))
        task_term = (zlib.crc32(str(inputs.get(TASK_KEY, "")).encode()) % 1000) / 1000.0
        base = np.tanh(features + 0.1 * image_term + 0.1 * task_term + self.config.action_bias)
        actions = base[None, :] + 0.01 * np.arange(self.config.chunk_length, dtype=np.float32)[:, None]
        remaining = self.config.cost_ms / 1e3 - (time.perf_counter() - start)
        if remaining > 0:
            time.sleep(remaining)
        return {"actions": actions.astype(np.float32)}


def load_stub_policy(directory: Path) -> StubPolicy:
    """The POLICIES loader for ``policy_type == "stub"``."""
    directory = Path(directory)
    raw = read_checkpoint_config(directory)
    try:
        config = from_dict(StubPolicyConfig, raw["config"])
    except (ConfigError, TypeError) as e:
        raise DataError(f"{directory / CONFIG_FILE}: {e}") from None
    inputs, outputs = checkpoint_transforms(directory, raw)
    return StubPolicy(config, checkpoint_id=checkpoint_id(directory), input_transform=inputs,
                      output_transform=outputs, extra_metadata={"cost_ms": config.cost_ms})


def stub_norm_stats(state_dim: int = STATE_DIM) -> dict[str, NormStats]:
    """Fixed, plausible statistics (robot-unit actions around 0 with std 0.5; gripper in [-1, 1])."""
    def stats(dim: int, mean: float, std: float) -> NormStats:
        m, s = np.full(dim, mean, np.float32), np.full(dim, std, np.float32)
        return NormStats(mean=m, std=s, min=m - 3 * s, max=m + 3 * s, q01=m - 2 * s, q99=m + 2 * s, count=1000)

    return {"action": stats(ACTION_DIM, 0.0, 0.5), STATE_KEY: stats(state_dim, 0.1, 0.2)}


STUB_TRANSFORMS = {
    "inputs": [{"type": "normalize", "keys": [STATE_KEY], "mode": "mean_std"}],
    "outputs": [{"type": "unnormalize", "keys": {"actions": "action"}, "mode": "mean_std"}],
}


def write_stub_checkpoint(directory: str | Path, *, cost_ms: float = 10.0, chunk_length: int = 8,
                          action_bias: float = 0.0, image_shapes: dict | None = None,
                          state_dim: int = STATE_DIM, task: str = "pick up the black bowl") -> Path:
    """Write a complete stub checkpoint (config, norm stats, example observation, manifest)."""
    config = StubPolicyConfig(chunk_length=chunk_length, cost_ms=cost_ms, action_bias=action_bias,
                              image_shapes={k: list(v) for k, v in (image_shapes or _default_images()).items()},
                              state_dim=state_dim)
    config.validate()
    return write_checkpoint_files(
        directory, policy_type=POLICY_TYPE, config=to_dict(config), norm_stats=stub_norm_stats(state_dim),
        example_obs=make_example_observation(config.contract(), task=task), transforms=STUB_TRANSFORMS,
        manifest={"data_hashes": {}, "note": "stub policy for serving tests and benchmarks"})
