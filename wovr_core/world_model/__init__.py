"""Action-conditioned video world model: ``observe(context) -> state``, ``imagine(state, actions)``.

A diffusers ``WanTransformer3DModel`` over the latents of a pixel codec (a small frame autoencoder for the
``tiny`` preset, the Wan2.2 VAE for ``paper``), with actions in place of text. Heavy modules (torch,
diffusers) load on first use of an export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wovr_core.lazy import lazy_exports

_EXPORTS = {
    "WorldModel": "model", "WorldState": "model", "reward_view": "replay", "WorldModelConfig": "config",
    "WorldModelTrainConfig": "config", "train_world_model": "train", "evaluate_world_model": "evaluate",
}

if TYPE_CHECKING:
    from .config import WorldModelConfig, WorldModelTrainConfig
    from .evaluate import evaluate_world_model
    from .model import WorldModel, WorldState
    from .replay import reward_view
    from .train import train_world_model


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "WorldModel", "WorldModelConfig", "WorldModelTrainConfig", "WorldState", "reward_view",
    "evaluate_world_model", "train_world_model",
]
