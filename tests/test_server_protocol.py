"""Wire format (msgpack-numpy, never pickle) and observation validation shared by server and client."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import numpy as np
import pytest

from policy_server import protocol
from policy_server.protocol import InvalidObservation, MalformedMessage, PayloadTooLarge
from wovr_core import msgpack_numpy
from wovr_core.policy.base import ActionContract
from wovr_core.policy.checkpoint import make_example_observation

CONTRACT = ActionContract(chunk_length=8, image_shapes={"observation.images.agentview": (32, 32, 3),
                                                       "observation.images.wrist": (16, 24, 3)}).to_dict()


def obs() -> dict:
    return make_example_observation(ActionContract.from_dict(CONTRACT))


def test_round_trip_keeps_dtype_shape_and_values():
    message = {"a": np.arange(12, dtype="<f8").reshape(3, 4), "b": np.array([True, False]), "s": "x", "n": None,
               "scalar": np.float32(1.5), "t": (1, 2), "empty": np.zeros((0, 3), np.int16), "big": np.arange(3, dtype=">i4")}
    out = protocol.decode(protocol.encode(message))
    for key in ("a", "b", "empty", "big"):
        assert out[key].dtype == message[key].dtype and out[key].shape == message[key].shape
        np.testing.assert_array_equal(out[key], message[key])
    assert out["s"] == "x" and out["n"] is None and out["scalar"] == 1.5 and out["t"] == [1, 2]


def test_non_contiguous_arrays_are_encoded_by_value():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    np.testing.assert_array_equal(protocol.decode(protocol.encode(a)), a)


@pytest.mark.parametrize("value", [np.array([object()], dtype=object), np.array(["a"]), {"x": {1, 2}}, object()])
def test_encoding_refuses_objects(value):
    with pytest.raises(msgpack_numpy.MsgpackNumpyError):
        protocol.encode(value)


def _raw_array(dtype: str, shape: list, data: bytes) -> bytes:
    return msgpack.packb({"__ndarray__": True, "dtype": dtype, "shape": shape, "data": data}, use_bin_type=True)


@pytest.mark.parametrize("payload, match", [
    (_raw_array("|O", [1], b"\0" * 8), "not allowed"),
    (_raw_array("<U4", [1], b"\0" * 16), "not allowed"),
    (_raw_array("V8", [1], b"\0" * 8), "not allowed"),
    (_raw_array("i4,f4", [1], b"\0" * 8), "not allowed"),
    (_raw_array("not-a-dtype", [1], b"\0"), "invalid dtype"),
    (_raw_array("<f4", [3], b"\0" * 8), "needs 12 bytes, got 8"),
    (_raw_array("<f4", [-1], b""), "invalid shape"),
    (_raw_array("<f4", "3", b""), "invalid shape"),
    (msgpack.packb({"__ndarray__": True, "dtype": "<f4", "shape": [1]}), "no 'data'"),
    (b"\xc1garbage", "not a valid msgpack"),
    (msgpack.packb([1, 2])[:-1], "not a valid msgpack"),
    (msgpack.packb({1: 2}), "not a valid msgpack"),  # non-string map keys
    (msgpack.packb(msgpack.ExtType(1, b"x")) + b"", None),
])
def test_decoding_rejects_bad_arrays_and_bytes(payload, match):
    if match is None:  # ext types decode to an inert ExtType, which validation then refuses
        assert isinstance(protocol.decode(payload), msgpack.ExtType)
        return
    with pytest.raises(MalformedMessage, match=match):
        protocol.decode(payload)


def test_decode_enforces_size_limit():
    with pytest.raises(PayloadTooLarge, match="limit of 10 bytes"):
        protocol.decode(b"x" * 11, max_bytes=10)


def test_decoded_arrays_are_read_only_views():
    out = protocol.decode(protocol.encode(np.zeros(4, np.float32)))
    assert not out.flags.writeable


def test_valid_observation_is_cleaned():
    raw = obs() | {"extra": 1, "observation.state": np.arange(8, dtype=np.float64)}
    clean = protocol.validate_observation(raw, CONTRACT)
    assert set(clean) == {"observation.images.agentview", "observation.images.wrist", "observation.state", "task"}
    assert clean["observation.state"].dtype == np.float32


@pytest.mark.parametrize("mutate, field, match", [
    (lambda o: o.pop("observation.images.wrist"), "observation.images.wrist", "missing"),
    (lambda o: o.update({"observation.images.agentview": np.zeros((32, 31, 3), np.uint8)}),
     "observation.images.agentview", r"expected shape \(32, 32, 3\), got \(32, 31, 3\)"),
    (lambda o: o.update({"observation.images.agentview": np.zeros((32, 32, 3), np.float32)}),
     "observation.images.agentview", "uint8"),
    (lambda o: o.update({"observation.images.agentview": [[0]]}), "observation.images.agentview", "numpy array"),
    (lambda o: o.update({"observation.state": np.zeros(7, np.float32)}), "observation.state", r"\(8,\)"),
    (lambda o: o.update({"observation.state": np.full(8, np.nan, np.float32)}), "observation.state", "NaN"),
    (lambda o: o.update({"observation.state": np.full(8, 1e300)}), "observation.state", "overflows"),
    (lambda o: o.update({"observation.state": np.zeros(8, bool)}), "observation.state", "float"),
    (lambda o: o.pop("observation.state"), "observation.state", "missing"),
    (lambda o: o.update({"task": 3}), "task", "string"),
    (lambda o: o.update({"task": "x" * 5000}), "task", "longer"),
    (lambda o: o.pop("task"), "task", "missing"),
])
def test_invalid_observations_name_the_field(mutate, field, match):
    o = obs()
    mutate(o)
    with pytest.raises(InvalidObservation, match=match) as info:
        protocol.validate_observation(o, CONTRACT)
    assert info.value.field == field and info.value.status == 422
    assert field in info.value.detail


def test_observation_must_be_a_map():
    with pytest.raises(InvalidObservation, match="obs"):
        protocol.validate_observation([1, 2], CONTRACT)


def test_json_observation_conversion():
    o = obs()
    as_json = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in o.items()}
    clean = protocol.validate_observation(protocol.observation_from_json(as_json, CONTRACT), CONTRACT)
    np.testing.assert_array_equal(clean["observation.images.agentview"], o["observation.images.agentview"])
    for bad, match in (([[[300]]], r"\[0, 255\]"), ([[[1.5]]], "integers"), ([[1], [1, 2]], "rectangular"),
                       ("img", "JSON array")):
        with pytest.raises(InvalidObservation, match=match):
            protocol.observation_from_json(as_json | {"observation.images.agentview": bad}, CONTRACT)


def test_to_jsonable_handles_arrays_and_non_finite():
    assert protocol.to_jsonable({"a": np.array([1.0, np.nan]), "b": np.int64(3)}) == {"a": [1.0, None], "b": 3}


def test_robot_side_modules_import_without_torch_fastapi_or_uvicorn():
    blocked = ["torch", "transformers", "diffusers", "fastapi", "starlette", "uvicorn", "pydantic", "cv2",
               "pyarrow", "av", "yaml"]
    code = ("import sys\n"
            f"for name in {blocked!r}: sys.modules[name] = None\n"
            "import policy_server.client, policy_server.broker, policy_server.protocol\n"
            "bad = [m for m in " + repr(blocked) + " if sys.modules.get(m) is not None]\n"
            "assert not bad, bad\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
