"""Resumable training checkpoints with no pickle: a servable policy checkpoint plus the trainer's state.

::

    <run>/checkpoints/step-0000100/
        config.json, model.safetensors, norm_stats.json, tokenizer.json, ...   the policy (servable as is)
        training_state.safetensors   optimizer tensors (per parameter) and RNG states (as uint8 tensors)
        trainer_state.json           step, history, optimizer hyper-parameters, scheduler state, RNG metadata
    <run>/checkpoints/latest         name of the newest checkpoint (for people; loading scans the directories)

A checkpoint is written as ``.step-0000100.tmp`` and renamed when complete, so a process killed at any moment
leaves only whole checkpoints under their final names; leftovers of interrupted saves are deleted by the next save.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from wovr_core.errors import DataError
from wovr_core.optimizer_state import optimizer_from_tensors, optimizer_to_tensors

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
TENSORS_FILE = "training_state.safetensors"
STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


OPTIMIZER_PREFIX = "optimizer."  # the optimizer's tensors share training_state.safetensors with the RNG state


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


# ------------------------------------------------------------------------------------------------ state
def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).view(np.uint8).copy())
    version, py_state, gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, list(py_state), gauss]}
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().view(np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = meta["python"]
    random.setstate((version, tuple(py_state), gauss))


# ------------------------------------------------------------------------------------------- save / load
def save_training_checkpoint(run_dir: str | Path, step: int, write_policy: Callable[[Path], Any],
                             optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any],
                             keep: int = 2) -> Path:
    """Write ``<run>/checkpoints/step-N`` (``write_policy(dir)`` writes the policy files), then delete all but
    the newest ``keep`` checkpoints."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    final, tmp = root / name, root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    write_policy(tmp)
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer, OPTIMIZER_PREFIX)
    rng_tensors, rng_meta = _rng_state()
    save_file({**opt_tensors, **rng_tensors}, str(tmp / TENSORS_FILE), metadata={"format": "pt"})
    payload = {**state, "step": step, "optimizer": opt_meta, "rng": rng_meta,
               "scheduler": _json_ready(scheduler.state_dict()) if scheduler is not None else None}
    (tmp / STATE_FILE).write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    pointer = root / (LATEST_FILE + ".tmp")
    pointer.write_text(name + "\n")
    pointer.replace(root / LATEST_FILE)
    _prune(root, keep, protect=name)
    return final


def _json_ready(value: Any) -> Any:
    """Scheduler state minus what JSON cannot hold (LambdaLR keeps ``None`` for its functions)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a JSON trainer state")


def _prune(root: Path, keep: int, protect: str) -> None:
    for old in list_checkpoints(root.parent)[:-keep] if keep > 0 else []:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".*.tmp"):  # leftovers of a killed save
        shutil.rmtree(stale, ignore_errors=True)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    path = Path(checkpoint) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: trainer state not found (not a training checkpoint)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable trainer state: {e}") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise DataError(f"{path}: trainer state lacks an integer 'step'")
    return state


def restore_training_state(checkpoint: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Load the optimizer, scheduler and RNG states saved with ``checkpoint``; returns the trainer state."""
    state = read_trainer_state(checkpoint)
    path = Path(checkpoint) / TENSORS_FILE
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: optimizer and RNG state not found") from None
    except Exception as e:  # safetensors raises several error types for corrupt files
        raise DataError(f"{path}: unreadable training state ({type(e).__name__}: {e})") from None
    try:
        optimizer_from_tensors(optimizer, tensors, state["optimizer"], OPTIMIZER_PREFIX)
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        _restore_rng(tensors, state["rng"])
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise DataError(f"{path}: training state does not fit this model and optimizer ({e})") from None
    return state
