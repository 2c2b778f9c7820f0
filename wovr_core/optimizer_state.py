"""An optimizer's state as safetensors tensors plus JSON metadata: how every trainer checkpoints it, no pickle."""

from __future__ import annotations

from typing import Any

import torch


def optimizer_to_tensors(optimizer: torch.optim.Optimizer, prefix: str = ""
                         ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-ready metadata; keys are
    ``<prefix><param id>.<name>`` (a prefix lets the tensors share a file with others, as the policy trainer's do)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for param_id, entries in state["state"].items():
        for name, value in entries.items():
            key = f"{prefix}{param_id}.{name}"
            if torch.is_tensor(value):
                tensors[key] = value.detach().cpu().contiguous()
            else:
                scalars[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           meta: dict[str, Any], prefix: str = "") -> None:
    """Inverse of :func:`optimizer_to_tensors` (tensors without ``prefix`` are someone else's)."""
    state: dict[int, dict[str, Any]] = {}
    items = [(k, v) for k, v in tensors.items() if k.startswith(prefix)] + list(meta.get("scalars", {}).items())
    for key, value in items:
        param_id, name = key[len(prefix):].split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
