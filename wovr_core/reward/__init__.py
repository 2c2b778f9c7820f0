"""Reward model: a success classifier on single frames (+ task), trained on episode outcome labels.

Heavy modules (torch, transformers) load on first use of an export.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "SuccessClassifier": "model", "RewardModelConfig": "config", "RewardTrainConfig": "config",
    "train_reward_model": "train", "evaluate_reward_model": "train", "load_frame_scorer": "model",
}

if TYPE_CHECKING:
    from .config import RewardModelConfig, RewardTrainConfig
    from .model import SuccessClassifier, load_frame_scorer
    from .train import evaluate_reward_model, train_reward_model


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "RewardModelConfig", "RewardTrainConfig", "SuccessClassifier", "evaluate_reward_model", "load_frame_scorer",
    "train_reward_model",
]
