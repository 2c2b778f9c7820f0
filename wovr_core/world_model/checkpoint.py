"""Resumable training checkpoints of a world-model run, with no pickle anywhere.

::

    <run>/checkpoints/step-0000250/     a complete world model (see WorldModel.save) plus
        optimizer.safetensors            the optimizer's tensors (exp_avg, exp_avg_sq, step per parameter)
        trainer_state.json               stage, step, best metric, patience, optimizer hyper-parameters
    <run>/checkpoints/latest             name of the newest complete checkpoint (written last)

A checkpoint directory is written under a temporary name and renamed when complete, then ``latest`` is
replaced atomically: a process killed at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from wovr_core.errors import DataError
from wovr_core.optimizer_state import optimizer_from_tensors, optimizer_to_tensors

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
OPTIMIZER_FILE = "optimizer.safetensors"
EMA_FILE = "ema.safetensors"  # the denoiser's weight average, when the trainer keeps one
STATE_FILE = "trainer_state.json"


def load_pretrained(cls, path: Path, what: str):
    """``cls.from_pretrained(path)`` for a diffusers model folder, with any failure (missing or truncated
    safetensors, a config.json that does not parse or fit) reported as a DataError naming the folder."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise DataError(f"{path}: {what} not found (a folder with config.json + safetensors weights)")
    try:
        return cls.from_pretrained(path)
    except Exception as e:  # diffusers/safetensors raise OSError, ValueError, SafetensorError, JSON errors...
        raise DataError(f"{path}: unreadable {what} ({type(e).__name__}: {e})") from None


def save_checkpoint(run_dir: Path, name: str, write_model, optimizer: torch.optim.Optimizer | None,
                    trainer_state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``<run>/checkpoints/<name>`` atomically (``write_model(dir)`` writes the model files), point
    ``latest`` at it, and delete all but the newest ``keep`` checkpoints."""
    from safetensors.torch import save_file

    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = root / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    write_model(tmp)
    state = dict(trainer_state)
    if optimizer is not None:
        tensors, meta = optimizer_to_tensors(optimizer)
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        state["optimizer"] = meta
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    pointer = root / (LATEST_FILE + ".tmp")
    pointer.write_text(name + "\n")
    pointer.replace(root / LATEST_FILE)
    _prune(root, keep, protect=name)
    return final


def _prune(root: Path, keep: int, protect: str) -> None:
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in names[:-keep]:
        if old != protect:
            shutil.rmtree(root / old, ignore_errors=True)
    for stale in root.glob(".*.tmp"):  # leftovers of a killed save
        shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None for a fresh run."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    pointer = root / LATEST_FILE
    if not pointer.exists():
        return None
    path = root / pointer.read_text().strip()
    if not (path / STATE_FILE).exists():
        raise DataError(f"{pointer}: points at {path.name}, which is not a complete checkpoint")
    return path


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable trainer state ({e})") from None
    if not isinstance(state, dict) or "stage" not in state or "step" not in state:
        raise DataError(f"{path}: trainer state lacks 'stage'/'step'")
    return state


def load_optimizer(checkpoint: Path, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> bool:
    """Restore the optimizer saved with a checkpoint; False when the checkpoint has none (new stage)."""
    from safetensors.torch import load_file

    path = checkpoint / OPTIMIZER_FILE
    if "optimizer" not in state or not path.exists():
        return False
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises several types for corrupt files
        raise DataError(f"{path}: unreadable optimizer state ({type(e).__name__}: {e})") from None
    try:
        optimizer_from_tensors(optimizer, tensors, state["optimizer"])
    except (ValueError, KeyError, RuntimeError) as e:
        raise DataError(f"{path}: optimizer state does not fit this model ({e})") from None
    return True
