"""Checkpoint directory contract, the stub policy, and the server's validated hot swap (in-process)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import msgpack
import numpy as np
import pytest

from policy_server.checkpoints import (
    ActivationBusy,
    CheckpointForbidden,
    CheckpointManager,
    CheckpointNotFound,
    CheckpointRejected,
    NoPreviousCheckpoint,
    load_checkpoint,
)
from wovr_core.errors import DataError
from wovr_core.policy.base import POLICIES, ActionContract, PolicyOutputError
from wovr_core.policy.checkpoint import (
    checkpoint_id,
    load_policy,
    make_example_observation,
    read_example_obs,
    warm_up,
)
from wovr_core.policy.stub import StubPolicy, write_stub_checkpoint

SMALL = {"observation.images.agentview": [32, 32, 3]}


@pytest.fixture()
def ckpt(tmp_path) -> Path:
    return write_stub_checkpoint(tmp_path / "ckpt-a", cost_ms=0, image_shapes=SMALL)


def test_stub_checkpoint_loads_with_contract_and_metadata(ckpt):
    policy = load_policy(ckpt)
    assert isinstance(policy, StubPolicy)
    meta = policy.metadata()
    assert meta["policy_type"] == "stub" and meta["checkpoint_id"] == checkpoint_id(ckpt)
    assert meta["action_contract"] == {"action_dim": 7, "chunk_length": 8, "state_dim": 8,
                                       "state_key": "observation.state", "task_key": "task",
                                       "image_keys": {"observation.images.agentview": [32, 32, 3]}}
    assert {p.name for p in ckpt.iterdir()} == {"config.json", "norm_stats.json", "example_obs.msgpack",
                                                "manifest.json"}
    assert "stub" in POLICIES.names()


def test_stub_is_deterministic_and_depends_on_every_input(ckpt):
    policy = load_policy(ckpt)
    obs = read_example_obs(ckpt)
    reply = policy.infer(obs)
    assert reply["actions"].shape == (8, 7) and reply["actions"].dtype == np.float32
    assert set(reply["policy_timing"]) == {"preprocess_ms", "infer_ms", "postprocess_ms"}
    np.testing.assert_array_equal(policy.infer(obs)["actions"], reply["actions"])
    changes = [
        {"observation.state": obs["observation.state"] + 0.1},
        {"task": obs["task"] + " now"},
        {"observation.images.agentview": 255 - obs["observation.images.agentview"]},
    ]
    for change in changes:
        assert not np.allclose(policy.infer(obs | change)["actions"], reply["actions"]), change


def test_shipped_norm_stats_drive_the_output(ckpt):
    obs = read_example_obs(ckpt)
    before = load_policy(ckpt).infer(obs)["actions"]
    stats_path = ckpt / "norm_stats.json"
    stats = json.loads(stats_path.read_text())
    stats["action"]["std"] = [2 * s for s in stats["action"]["std"]]
    stats_path.write_text(json.dumps(stats))
    after = load_policy(ckpt).infer(obs)["actions"]
    mean = np.array(stats["action"]["mean"], np.float32)
    np.testing.assert_allclose(after - mean, 2 * (before - mean), rtol=1e-5, atol=1e-6)


def test_checkpoint_id_is_name_plus_content_hash(ckpt, tmp_path):
    ident = checkpoint_id(ckpt)
    name, digest = ident.split("@")
    assert name == "ckpt-a" and len(digest) == 8
    copy = shutil.copytree(ckpt, tmp_path / "other-name")
    assert checkpoint_id(copy) == f"other-name@{digest}"
    (copy / "model.safetensors").write_bytes(b"weights")
    with_weights = checkpoint_id(copy)
    assert with_weights.split("@")[1] != digest
    (copy / ".editor-swap").write_bytes(b"ignored")  # hidden and temporary files are not part of it
    (copy / "config.json.tmp").write_bytes(b"half-written")
    assert checkpoint_id(copy) == with_weights


def _break(ckpt: Path, name: str, content: bytes | None) -> None:
    if content is None:
        (ckpt / name).unlink()
    else:
        (ckpt / name).write_bytes(content)


@pytest.mark.parametrize("name, content, match", [
    ("config.json", None, "config.json: checkpoint config not found"),
    ("config.json", b"{oops", "config.json: checkpoint config is not readable JSON"),
    ("config.json", b'{"config": {}}', "config.json: missing a string 'policy_type'"),
    ("config.json", b'{"policy_type": "stub"}', "config.json: missing a 'config' object"),
    ("config.json", b'{"policy_type": "stb", "config": {}}', "config.json: unknown policy type 'stb'.*'stub'"),
    ("config.json", b'{"policy_type": "stub", "config": {"chunk_lenght": 3}}', "config.json: unknown config key"),
    ("config.json", b'{"policy_type": "stub", "config": {}, "transforms": {"inputs": [{"type": "normalise"}]}}',
     "config.json: transforms: unknown transform type"),
    ("norm_stats.json", None, "norm_stats.json: normalization statistics file not found"),
    ("norm_stats.json", b"[1, 2]", "norm_stats.json: expected a mapping"),
])
def test_corrupt_checkpoints_fail_naming_the_file(ckpt, name, content, match):
    _break(ckpt, name, content)
    with pytest.raises(DataError, match=match):
        load_policy(ckpt)


@pytest.mark.parametrize("content, match", [
    (None, "example_obs.msgpack: example observation not found"),
    (b"\xc1\xc1", "example_obs.msgpack: corrupt example observation"),
    (msgpack.packb({"x": {"__ndarray__": True, "dtype": "|O", "shape": [1], "data": b"12345678"}}),
     "example_obs.msgpack: corrupt example observation.*not allowed"),
    (msgpack.packb([1, 2]), "example_obs.msgpack: expected a msgpack map"),
])
def test_corrupt_example_observation_is_a_data_error(ckpt, content, match):
    _break(ckpt, "example_obs.msgpack", content)
    with pytest.raises(DataError, match=match):
        read_example_obs(ckpt)


def test_missing_directory_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="checkpoint directory not found"):
        load_policy(tmp_path / "nope")


def test_warm_up_checks_the_contract(ckpt):
    policy = load_policy(ckpt)
    assert warm_up(policy, read_example_obs(ckpt))["actions"].shape == (8, 7)
    contract = policy.contract
    with pytest.raises(PolicyOutputError, match="shape"):
        contract.check_actions({"actions": np.zeros((4, 7))})
    with pytest.raises(PolicyOutputError, match="finite"):
        contract.check_actions({"actions": np.full((8, 7), np.nan)})
    with pytest.raises(PolicyOutputError, match="no 'actions'"):
        contract.check_actions({})


# ------------------------------------------------------------------------------ server-side validation
def test_load_checkpoint_validates_everything(ckpt):
    loaded = load_checkpoint(ckpt)
    assert loaded.checkpoint_id == checkpoint_id(ckpt) and loaded.warmup_ms >= 0
    assert loaded.contract.chunk_length == 8


def test_contract_mismatch_is_rejected(ckpt, tmp_path):
    other = write_stub_checkpoint(tmp_path / "chunk4", cost_ms=0, chunk_length=4, image_shapes=SMALL)
    with pytest.raises(CheckpointRejected, match="action contract differs.*chunk_length: 8 != 4"):
        load_checkpoint(other, expected_contract=load_checkpoint(ckpt).contract)
    bigger = write_stub_checkpoint(tmp_path / "big", cost_ms=0, image_shapes={"observation.images.agentview": [64, 64, 3]})
    with pytest.raises(CheckpointRejected, match=r"observation.images.agentview: \(32, 32, 3\) != \(64, 64, 3\)"):
        load_checkpoint(bigger, expected_contract=load_checkpoint(ckpt).contract)


def test_example_that_does_not_fit_is_rejected(ckpt):
    example = read_example_obs(ckpt) | {"observation.state": np.full(8, np.nan, np.float32)}
    from wovr_core import msgpack_numpy
    (ckpt / "example_obs.msgpack").write_bytes(msgpack_numpy.packb(example))
    with pytest.raises(CheckpointRejected, match="example observation does not fit.*observation.state.*NaN"):
        load_checkpoint(ckpt)


def test_warm_up_failure_is_rejected(ckpt):
    stats = json.loads((ckpt / "norm_stats.json").read_text())
    for key in ("mean", "std", "min", "max", "q01", "q99"):  # 5-D state stats for an 8-D state
        stats["observation.state"][key] = stats["observation.state"][key][:5]
    (ckpt / "norm_stats.json").write_text(json.dumps(stats))
    with pytest.raises(CheckpointRejected, match="warm-up inference failed.*observation.state"):
        load_checkpoint(ckpt)


def test_manager_activate_rollback_history(tmp_path):
    paths = [write_stub_checkpoint(tmp_path / name, cost_ms=0, action_bias=i, image_shapes=SMALL)
             for i, name in enumerate(["a", "b", "c"])]
    events = []
    manager = CheckpointManager(load_checkpoint(paths[0]), root=tmp_path, keep_previous=2,
                                on_change=lambda c, e: events.append((e, c.checkpoint_id)))
    ids = [checkpoint_id(p) for p in paths]
    try:
        assert manager.start_activation(manager.resolve("b")).result(10)["previous_checkpoint_id"] == ids[0]
        manager.start_activation(manager.resolve(str(paths[2]))).result(10)
        assert manager.active.checkpoint_id == ids[2]
        assert [c["checkpoint_id"] for c in manager.status()["previous"]] == [ids[1], ids[0]]
        assert manager.rollback() == {"checkpoint_id": ids[1], "rolled_back_from": ids[2]}
        assert manager.rollback()["checkpoint_id"] == ids[0]
        with pytest.raises(NoPreviousCheckpoint):
            manager.rollback()
        assert events == [("activated", ids[1]), ("activated", ids[2]), ("rollback", ids[1]), ("rollback", ids[0])]
        assert manager.status()["available"] == ["a", "b", "c"]
    finally:
        manager.close()


def test_manager_keeps_old_model_when_validation_fails(tmp_path):
    good = write_stub_checkpoint(tmp_path / "good", cost_ms=0, image_shapes=SMALL)
    bad = write_stub_checkpoint(tmp_path / "bad", cost_ms=0, image_shapes=SMALL)
    (bad / "config.json").write_text("{")
    manager = CheckpointManager(load_checkpoint(good), root=tmp_path)
    try:
        with pytest.raises(CheckpointRejected, match="config.json"):
            manager.start_activation(manager.resolve("bad")).result(10)
        assert manager.active.checkpoint_id == checkpoint_id(good)
        assert manager.status()["activation"]["state"] == "rejected"
        # the failed activation released the slot
        manager.start_activation(manager.resolve("good")).result(10)
    finally:
        manager.close()


def test_manager_resolve_guards_the_root(tmp_path):
    root = tmp_path / "root"
    good = write_stub_checkpoint(root / "good", cost_ms=0, image_shapes=SMALL)
    outside = write_stub_checkpoint(tmp_path / "outside", cost_ms=0, image_shapes=SMALL)
    manager = CheckpointManager(load_checkpoint(good), root=root)
    try:
        assert manager.resolve("good") == good.resolve()
        with pytest.raises(CheckpointForbidden, match="outside the checkpoint root"):
            manager.resolve(str(outside))
        with pytest.raises(CheckpointForbidden):
            manager.resolve("../outside")
        with pytest.raises(CheckpointNotFound, match="no config.json"):
            manager.resolve("missing")
    finally:
        manager.close()
    no_root = CheckpointManager(load_checkpoint(good))
    try:
        with pytest.raises(CheckpointNotFound, match="absolute path"):
            no_root.resolve("good")
        assert no_root.resolve(str(outside)) == outside.resolve()
    finally:
        no_root.close()


def test_one_activation_at_a_time(tmp_path):
    fast = write_stub_checkpoint(tmp_path / "fast", cost_ms=0, image_shapes=SMALL)
    slow = write_stub_checkpoint(tmp_path / "slow", cost_ms=300, image_shapes=SMALL)  # warm-up takes 300 ms
    manager = CheckpointManager(load_checkpoint(fast), root=tmp_path)
    try:
        future = manager.start_activation(manager.resolve("slow"))
        with pytest.raises(ActivationBusy):
            manager.start_activation(manager.resolve("fast"))
        future.result(10)
        assert manager.active.checkpoint_id == checkpoint_id(slow)
    finally:
        manager.close()


def test_example_observation_matches_contract():
    contract = ActionContract(chunk_length=2, image_shapes={"observation.images.wrist": (5, 6, 3)}, state_dim=3)
    obs = make_example_observation(contract, task="t")
    assert obs["observation.images.wrist"].shape == (5, 6, 3) and obs["observation.state"].shape == (3,)
    assert obs["task"] == "t"


def test_policies_used_from_many_threads_stay_consistent(ckpt):
    policy = load_policy(ckpt)
    obs = read_example_obs(ckpt)
    expected = policy.infer(obs)["actions"]
    results = []
    threads = [threading.Thread(target=lambda: results.append(policy.infer(obs)["actions"])) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, expected) for r in results)
