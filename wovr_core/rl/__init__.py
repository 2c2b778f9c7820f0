"""RL in imagination: the imagined environment (KIR starts), masked GRPO, rollouts and updates.

Coded against small protocols (:mod:`wovr_core.rl.protocols`) that the world model, the reward model and the
VLA (through :class:`~wovr_core.rl.vla_adapter.VLATokenPolicy`) satisfy. Heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wovr_core.lazy import lazy_exports

_EXPORTS = {
    "RLConfig": "config", "EnvConfig": "config", "GRPOConfig": "config", "KeyframeConfig": "config",
    "TrainerConfig": "config",
    "ImaginationModel": "protocols", "SuccessScorer": "protocols", "TokenPolicy": "protocols",
    "Observations": "protocols", "PolicySample": "protocols",
    "Start": "starts", "start_from_dataset": "starts", "starts_per_task": "starts", "resize_start": "starts",
    "WorldModelEnv": "env", "Trajectories": "env",
    "StartPoint": "keyframes", "KeyframeSampler": "keyframes", "mine_keyframes": "keyframes",
    "operator_keyframes": "keyframes", "load_starts": "keyframes",
    "RolloutBatch": "rollout", "collect_rollouts": "rollout", "imagined_success": "rollout",
    "GRPOTrainer": "trainer", "VLATokenPolicy": "vla_adapter", "pearson_r": "reliability",
    "ImaginationError": "errors", "PolicyError": "errors",
}

if TYPE_CHECKING:
    from .config import EnvConfig, GRPOConfig, KeyframeConfig, RLConfig, TrainerConfig
    from .env import Trajectories, WorldModelEnv
    from .errors import ImaginationError, PolicyError
    from .keyframes import KeyframeSampler, StartPoint, load_starts, mine_keyframes, operator_keyframes
    from .protocols import ImaginationModel, Observations, PolicySample, SuccessScorer, TokenPolicy
    from .reliability import pearson_r
    from .rollout import RolloutBatch, collect_rollouts, imagined_success
    from .starts import Start, resize_start, start_from_dataset, starts_per_task
    from .trainer import GRPOTrainer
    from .vla_adapter import VLATokenPolicy


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "EnvConfig", "GRPOConfig", "GRPOTrainer", "ImaginationError", "ImaginationModel", "KeyframeConfig",
    "KeyframeSampler", "Observations", "PolicySample", "PolicyError", "RLConfig", "RolloutBatch",
    "Start", "StartPoint", "SuccessScorer", "TokenPolicy", "TrainerConfig", "Trajectories", "VLATokenPolicy",
    "WorldModelEnv", "collect_rollouts", "imagined_success", "load_starts", "mine_keyframes", "operator_keyframes",
    "pearson_r", "resize_start", "start_from_dataset", "starts_per_task",
]
