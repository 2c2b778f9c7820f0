"""Reward model: a success classifier on single frames (+ task), trained on episode outcome labels.

Heavy modules (torch, transformers) load on first use of an export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wovr_core.lazy import lazy_exports

_EXPORTS = {
    "SuccessClassifier": "model", "RewardModelConfig": "config", "RewardTrainConfig": "config",
    "train_reward_model": "train", "evaluate_reward_model": "train", "load_frame_scorer": "model",
}

if TYPE_CHECKING:
    from .config import RewardModelConfig, RewardTrainConfig
    from .model import SuccessClassifier, load_frame_scorer
    from .train import evaluate_reward_model, train_reward_model


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "RewardModelConfig", "RewardTrainConfig", "SuccessClassifier", "evaluate_reward_model", "load_frame_scorer",
    "train_reward_model",
]
