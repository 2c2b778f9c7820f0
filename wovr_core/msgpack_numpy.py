"""msgpack with numpy arrays and never pickle: the wire format of the policy server and of stored observations.

An array travels as a map ``{"__ndarray__": True, "dtype": "<f4", "shape": [8], "data": <raw bytes>}``.
Only plain numeric and bool dtypes are accepted in either direction, so a message can never smuggle Python
objects, and the byte count is checked against dtype and shape before a single array is built.
Depends on numpy and msgpack only: the robot side imports it without the rest of ``wovr_core``.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

NDARRAY_MARK = "__ndarray__"
ALLOWED_DTYPE_KINDS = "biuf"  # bool, signed int, unsigned int, float
MAX_NDIM = 32


class MsgpackNumpyError(ValueError):
    """A message is not valid msgpack-numpy (bad bytes, forbidden dtype, inconsistent array header)."""


def packb(obj: Any) -> bytes:
    """Serialize dicts/lists/scalars/strings/bytes and numeric numpy arrays."""
    try:
        return msgpack.packb(obj, default=_encode, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise MsgpackNumpyError(f"cannot encode message: {e}") from None


def unpackb(data: bytes) -> Any:
    """Inverse of :func:`packb`. Arrays are read-only views of the message bytes (no copy)."""
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=True)
    except MsgpackNumpyError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as e:
        # msgpack reports truncation, extra bytes and bad types through several exception classes.
        raise MsgpackNumpyError(f"not a valid msgpack message: {type(e).__name__}: {e}") from None


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in ALLOWED_DTYPE_KINDS or obj.dtype.hasobject:
            raise TypeError(f"arrays of dtype {obj.dtype} are not allowed (only bool, int, uint, float)")
        array = np.ascontiguousarray(obj)
        return {NDARRAY_MARK: True, "dtype": array.dtype.str, "shape": list(array.shape), "data": array.tobytes()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot serialize an object of type {type(obj).__name__}")


def _decode(obj: dict) -> Any:
    if NDARRAY_MARK not in obj:
        return obj
    try:
        dtype = np.dtype(obj["dtype"])
    except (KeyError, TypeError, ValueError) as e:
        raise MsgpackNumpyError(f"array header has an invalid dtype: {e}") from None
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.hasobject or dtype.fields is not None:
        raise MsgpackNumpyError(f"arrays of dtype {dtype} are not allowed (only bool, int, uint, float)")
    shape = obj.get("shape")
    if (not isinstance(shape, list) or len(shape) > MAX_NDIM
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise MsgpackNumpyError(f"array header has an invalid shape: {shape!r}")
    data = obj.get("data")
    if not isinstance(data, bytes):
        raise MsgpackNumpyError("array header has no 'data' bytes")
    expected = math.prod(shape) * dtype.itemsize
    if expected != len(data):
        raise MsgpackNumpyError(f"array of shape {tuple(shape)} and dtype {dtype} needs {expected} bytes, "
                                f"got {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)
