"""The policy checkpoint directory: what a trainer writes and what the server and evaluators load.

::

    <name>/
      config.json          {"policy_type": "stub" | "vla" | ..., "config": {...},
                            "transforms": {"inputs": [spec, ...], "outputs": [spec, ...]}}   (transforms optional)
      model.safetensors    weights (absent for weightless policies such as the stub)
      norm_stats.json      wovr_core.transforms statistics: {"action": {...}, "observation.state": {...}}
      example_obs.msgpack  one stored observation (msgpack-numpy) for warm-up and validation
      manifest.json        optional: {"id", "created", "data_hashes", ...}

``checkpoint_id`` = directory name + "@" + a short hash of every file's content, so two different
checkpoints never share an id even when their directories share a name. Nothing here is pickled and
nothing here needs torch: loaders of torch models import it themselves.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wovr_core import msgpack_numpy
from wovr_core.config import ConfigError
from wovr_core.errors import DataError
from wovr_core.policy.base import (
    POLICIES,
    STATE_KEY,
    TASK_KEY,
    ActionContract,
    Policy,
)
from wovr_core.transforms import Compose, NormStats, load_norm_stats, save_norm_stats, transforms_from_specs

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
NORM_STATS_FILE = "norm_stats.json"
EXAMPLE_OBS_FILE = "example_obs.msgpack"
MANIFEST_FILE = "manifest.json"
MAX_EXAMPLE_BYTES = 64 * 1024 * 1024


def _require_dir(directory: str | Path) -> Path:
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(f"{directory}: checkpoint directory not found")
    return directory


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: {what} is not readable JSON: {e}") from None


def _write_atomic(path: Path, data: bytes) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------------ reading
def read_checkpoint_config(directory: str | Path) -> dict:
    """``config.json`` with a string ``policy_type`` and a mapping ``config`` (DataError otherwise)."""
    path = _require_dir(directory) / CONFIG_FILE
    data = _read_json(path, "checkpoint config")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    if not isinstance(data.get("policy_type"), str) or not data["policy_type"]:
        raise DataError(f"{path}: missing a string 'policy_type' (registered: {POLICIES.names()})")
    if not isinstance(data.get("config"), dict):
        raise DataError(f"{path}: missing a 'config' object")
    transforms = data.get("transforms", {})
    if not isinstance(transforms, dict) or not all(isinstance(transforms.get(k, []), list)
                                                   for k in ("inputs", "outputs")):
        raise DataError(f"{path}: 'transforms' must be {{'inputs': [...], 'outputs': [...]}}")
    return data


def read_norm_stats(directory: str | Path) -> dict[str, NormStats]:
    return load_norm_stats(_require_dir(directory) / NORM_STATS_FILE)


def read_example_obs(directory: str | Path) -> dict:
    """The stored example observation (a dict of numpy arrays and the task string)."""
    path = _require_dir(directory) / EXAMPLE_OBS_FILE
    try:
        if path.stat().st_size > MAX_EXAMPLE_BYTES:
            raise DataError(f"{path}: example observation is larger than {MAX_EXAMPLE_BYTES} bytes")
        obs = msgpack_numpy.unpackb(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"{path}: example observation not found") from None
    except (OSError, msgpack_numpy.MsgpackNumpyError) as e:
        raise DataError(f"{path}: corrupt example observation: {e}") from None
    if not isinstance(obs, dict):
        raise DataError(f"{path}: expected a msgpack map of observation fields, got {type(obs).__name__}")
    return obs


def read_manifest(directory: str | Path) -> dict | None:
    path = _require_dir(directory) / MANIFEST_FILE
    if not path.exists():
        return None
    data = _read_json(path, "manifest")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def checkpoint_transforms(directory: str | Path, config: Mapping[str, Any] | None = None,
                          norm_stats: Mapping[str, NormStats] | None = None) -> tuple[Compose, Compose]:
    """(input, output) transforms declared in ``config.json``, built with the checkpoint's statistics."""
    directory = _require_dir(directory)
    config = config if config is not None else read_checkpoint_config(directory)
    specs = config.get("transforms", {})
    if not specs.get("inputs") and not specs.get("outputs"):
        return Compose(), Compose()
    stats = norm_stats if norm_stats is not None else read_norm_stats(directory)
    try:
        return (transforms_from_specs(specs.get("inputs"), stats), transforms_from_specs(specs.get("outputs"), stats))
    except ConfigError as e:
        raise DataError(f"{directory / CONFIG_FILE}: transforms: {e}") from None


# ---------------------------------------------------------------------------------------------- identity
_hash_cache: dict[tuple, str] = {}
_hash_lock = threading.Lock()


def _content_files(directory: Path) -> list[Path]:
    # Hidden and temporary files are not part of the checkpoint (editor swap files, interrupted writes).
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
                  and not p.name.endswith(".tmp"))


def content_hash(directory: str | Path) -> str:
    """SHA-256 over every file's relative path and bytes (cached while sizes and mtimes are unchanged)."""
    directory = _require_dir(directory).resolve()
    files = _content_files(directory)
    key = (str(directory), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        digest.update(b"\0")
    value = digest.hexdigest()
    with _hash_lock:
        if len(_hash_cache) > 256:
            _hash_cache.clear()
        _hash_cache[key] = value
    return value


def checkpoint_id(directory: str | Path) -> str:
    """``<directory name>@<first 8 hex digits of the content hash>``."""
    directory = _require_dir(directory)
    return f"{directory.resolve().name}@{content_hash(directory)[:8]}"


# ------------------------------------------------------------------------------------------------ loading
def load_policy(directory: str | Path) -> Policy:
    """Load the policy in ``directory`` through the loader registered for its ``policy_type``."""
    directory = _require_dir(directory)
    config = read_checkpoint_config(directory)
    try:
        loader = POLICIES.get(config["policy_type"])
    except ConfigError as e:
        raise DataError(f"{directory / CONFIG_FILE}: {e}") from None
    return loader(directory)


def warm_up(policy: Policy, example_obs: dict) -> dict:
    """Run one inference on the stored example and check the reply against the policy's contract.

    Returns ``{"actions": ..., "warmup_ms": ...}``; raises PolicyOutputError when the contract is broken.
    """
    t0 = time.perf_counter()
    reply = policy.infer(dict(example_obs))
    actions = policy.contract.check_actions(reply)
    return {"actions": actions, "warmup_ms": (time.perf_counter() - t0) * 1e3}


# ------------------------------------------------------------------------------------------------ writing
def make_example_observation(contract: ActionContract, task: str = "pick up the black bowl and place it on the plate",
                             seed: int = 0) -> dict:
    """A random observation that satisfies ``contract`` (for warm-up files, tests and benchmarks)."""
    rng = np.random.default_rng(seed)
    obs: dict[str, Any] = {key: rng.integers(0, 256, size=shape, dtype=np.uint8)
                           for key, shape in contract.image_shapes.items()}
    obs[STATE_KEY] = rng.normal(0, 0.1, size=contract.state_dim).astype(np.float32)
    obs[TASK_KEY] = task
    return obs


def write_checkpoint_files(directory: str | Path, *, policy_type: str, config: Mapping[str, Any],
                           norm_stats: Mapping[str, NormStats], example_obs: Mapping[str, Any],
                           transforms: Mapping[str, list] | None = None,
                           manifest: Mapping[str, Any] | None = None) -> Path:
    """Write everything but the weights, each file atomically; trainers add ``model.safetensors`` first.

    ``config.json`` is written last: a directory whose save was interrupted never looks like a checkpoint.
    """
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"policy_type": policy_type, "config": dict(config)}
    if transforms:
        payload["transforms"] = {"inputs": list(transforms.get("inputs", [])),
                                 "outputs": list(transforms.get("outputs", []))}
    save_norm_stats(norm_stats, directory / NORM_STATS_FILE)
    _write_atomic(directory / EXAMPLE_OBS_FILE, msgpack_numpy.packb(dict(example_obs)))
    manifest_data = {"id": directory.resolve().name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     **dict(manifest or {})}
    _write_atomic(directory / MANIFEST_FILE, (json.dumps(manifest_data, indent=2, sort_keys=True) + "\n").encode())
    _write_atomic(directory / CONFIG_FILE, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
    return directory
