"""Wire protocol between the robot and the policy server. Torch-free: numpy + msgpack only.

WebSocket ``/ws`` (binary msgpack-numpy frames):

- server -> client, once on connect: ``{"type": "metadata", "metadata": {...}}``
- client -> server: ``{"type": "infer", "id": 7, "obs": {...}}`` or ``{"type": "metadata", "id": 8}``
- server -> client: ``{"type": "result", "id": 7, "actions": (T, 7) float32, "checkpoint_id": str,
  "server_timing": {...}, "policy_timing": {...}}``
  or ``{"type": "error", "id": 7, "status": 422, "detail": "...", "field": "observation.state"}``

HTTP ``POST /infer`` takes ``{"obs": {...}}`` as msgpack (``application/msgpack``) or JSON (nested lists) and
returns the ``result`` fields (JSON or msgpack, following the request's content type).

The same :func:`validate_observation` checks a request on the server and, optionally, on the client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from wovr_core import msgpack_numpy

PROTOCOL_VERSION = 1
MSGPACK_CONTENT_TYPE = "application/msgpack"
IMAGE_KEY_PREFIX = "observation.images."
STATE_KEY = "observation.state"
TASK_KEY = "task"
MAX_TASK_CHARS = 2000

# server_timing keys, in pipeline order
TIMING_KEYS = ("decode_ms", "queue_ms", "preprocess_ms", "infer_ms", "postprocess_ms", "policy_ms", "total_ms")


class ProtocolError(ValueError):
    """A request the server refuses; ``status`` is the HTTP status, ``field`` the offending field."""

    status = 400

    def __init__(self, detail: str, field: str | None = None, status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if status is not None:
            self.status = status

    def to_dict(self) -> dict:
        return {"status": self.status, "detail": self.detail, "field": self.field}


class MalformedMessage(ProtocolError):
    status = 400


class PayloadTooLarge(ProtocolError):
    status = 413


class InvalidObservation(ProtocolError):
    status = 422


def encode(message: Any) -> bytes:
    return msgpack_numpy.packb(message)


def decode(data: bytes, max_bytes: int | None = None) -> Any:
    """Bytes -> message; MalformedMessage / PayloadTooLarge on bad input (never pickle, no object arrays)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        return msgpack_numpy.unpackb(data)
    except msgpack_numpy.MsgpackNumpyError as e:
        raise MalformedMessage(str(e)) from None


def _field_array(obs: Mapping[str, Any], key: str) -> np.ndarray:
    if key not in obs:
        raise InvalidObservation(f"{key}: missing (observation keys: {sorted(map(str, obs))})", key)
    value = obs[key]
    if not isinstance(value, np.ndarray):
        raise InvalidObservation(f"{key}: expected a numpy array, got {type(value).__name__}", key)
    return value


def validate_observation(obs: Any, contract: Mapping[str, Any]) -> dict:
    """Check ``obs`` against an action contract (``metadata["action_contract"]``) and return the clean copy.

    Images must be uint8 with exactly the contract's (H, W, 3); the state any real dtype of the contract's
    length, finite, returned as float32; the task a string. Unknown keys are dropped.
    """
    if not isinstance(obs, Mapping):
        raise InvalidObservation(f"obs: expected a map of observation fields, got {type(obs).__name__}", "obs")
    clean: dict[str, Any] = {}
    for key, shape in contract["image_keys"].items():
        image = _field_array(obs, key)
        if image.dtype != np.uint8:
            raise InvalidObservation(f"{key}: expected dtype uint8, got {image.dtype}", key)
        if tuple(image.shape) != tuple(shape):
            raise InvalidObservation(f"{key}: expected shape {tuple(shape)}, got {tuple(image.shape)}", key)
        clean[key] = image
    state_key = contract.get("state_key", STATE_KEY)
    state = _field_array(obs, state_key)
    if state.dtype.kind not in "fiu":
        raise InvalidObservation(f"{state_key}: expected a float array, got dtype {state.dtype}", state_key)
    if state.shape != (contract["state_dim"],):
        raise InvalidObservation(f"{state_key}: expected shape ({contract['state_dim']},), got {state.shape}",
                                 state_key)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes inf and is refused just below
        state = state.astype(np.float32)
    if not np.all(np.isfinite(state)):
        raise InvalidObservation(f"{state_key}: contains NaN or infinity (or overflows float32)", state_key)
    clean[state_key] = state
    task_key = contract.get("task_key", TASK_KEY)
    if task_key not in obs:
        raise InvalidObservation(f"{task_key}: missing (the language instruction, a string)", task_key)
    task = obs[task_key]
    if not isinstance(task, str):
        raise InvalidObservation(f"{task_key}: expected a string instruction, got {type(task).__name__}", task_key)
    if len(task) > MAX_TASK_CHARS:
        raise InvalidObservation(f"{task_key}: instruction longer than {MAX_TASK_CHARS} characters", task_key)
    clean[task_key] = task
    return clean


def observation_from_json(obs: Any, contract: Mapping[str, Any]) -> dict:
    """Turn a JSON observation (nested lists) into the arrays :func:`validate_observation` expects."""
    if not isinstance(obs, Mapping):
        raise InvalidObservation(f"obs: expected a JSON object, got {type(obs).__name__}", "obs")
    out = dict(obs)
    for key in contract["image_keys"]:
        if key in obs:
            out[key] = _json_array(obs[key], key, np.uint8)
    state_key = contract.get("state_key", STATE_KEY)
    if state_key in obs:
        out[state_key] = _json_array(obs[state_key], state_key, np.float64)
    return out


def _json_array(value: Any, key: str, dtype: type) -> np.ndarray:
    if not isinstance(value, list):
        raise InvalidObservation(f"{key}: expected a (nested) JSON array, got {type(value).__name__}", key)
    try:
        array = np.array(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidObservation(f"{key}: expected a rectangular array of numbers", key) from None
    if dtype is np.uint8:
        if array.size and (not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 255
                           or not np.all(array == np.round(array))):
            raise InvalidObservation(f"{key}: image values must be integers in [0, 255]", key)
        return array.astype(np.uint8)
    return array


def to_jsonable(value: Any) -> Any:
    """Reply -> JSON-ready (arrays become lists, non-finite floats become None)."""
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
