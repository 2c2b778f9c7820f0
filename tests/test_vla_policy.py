"""The tiny VLA as a served policy: infer contract, shared transforms, checkpoint round trip, bad input."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from vla_helpers import (
    TASKS,
    libero_like_stats,
    micro_config,
    observation,
    single_torch_thread,  # noqa: F401  (autouse fixture)
)

from wovr_core.config import make_config
from wovr_core.errors import DataError
from wovr_core.policy.checkpoint import read_example_obs, warm_up
from wovr_core.policy.vla_config import VLAConfig
from wovr_core.policy.vla_inputs import ObservationError, collate
from wovr_core.policy.vla_policy import VLAPolicy, load_vla_policy


@pytest.fixture(scope="module")
def stats():
    return libero_like_stats()


@pytest.fixture(scope="module")
def policy(stats) -> VLAPolicy:
    """The tiny preset with proprio, served 128 px cameras (what the twin renders); the model sees 64 px."""
    config = dataclasses.replace(make_config(VLAConfig, "tiny", {"use_state": True}),
                                 input_images={"agentview": [128, 128], "wrist": [128, 128]})
    return VLAPolicy.create(config, stats, tasks=TASKS, device="cpu")


@pytest.fixture(scope="module")
def saved(policy, tmp_path_factory):
    return policy.save(tmp_path_factory.mktemp("ckpt") / "vla-tiny")


def test_infer_returns_a_chunk_of_robot_actions(policy, stats):
    reply = policy.infer(observation())
    actions = reply["actions"]
    assert actions.shape == (8, 7) and actions.dtype == np.float32
    # Bin centres map inside the data's 1st..99th percentiles; the gripper stays a command in [-1, 1].
    assert (actions[:, :6] >= stats["action"].q01[:6] - 1e-6).all()
    assert (actions[:, :6] <= stats["action"].q99[:6] + 1e-6).all()
    assert (np.abs(actions[:, 6]) <= 1).all()
    assert reply["action_tokens"].shape == (56,) and reply["token_log_probs"].shape == (56,)
    assert (reply["token_log_probs"] <= 0).all()
    assert set(reply["policy_timing"]) == {"preprocess_ms", "infer_ms", "postprocess_ms"}
    meta = policy.metadata()
    assert meta["policy_type"] == "vla" and meta["temperature"] == 0.0
    assert meta["action_contract"]["chunk_length"] == 8
    # The contract is what clients send; the model's own input size is internal.
    assert meta["action_contract"]["image_keys"] == {"observation.images.agentview": [128, 128, 3],
                                                     "observation.images.wrist": [128, 128, 3]}
    assert meta["image_size"] == 64
    assert 1e6 < meta["num_parameters"] < 3e6


def test_infer_is_deterministic_by_default_and_seeded_when_sampling(policy, saved):
    obs = observation(seed=4)
    np.testing.assert_array_equal(policy.infer(obs)["actions"], policy.infer(obs)["actions"])
    a = load_vla_policy(saved, device="cpu", temperature=1.6, seed=11)
    b = load_vla_policy(saved, device="cpu", temperature=1.6, seed=11)
    first_a, first_b = a.infer(obs), b.infer(obs)
    np.testing.assert_array_equal(first_a["action_tokens"], first_b["action_tokens"])
    assert not np.array_equal(a.infer(obs)["action_tokens"], first_a["action_tokens"])
    # The reported log-probs are those of the reported tokens at the sampling temperature.
    batch = a.prepare_batch([obs])
    with torch.no_grad():
        expected = a.model.log_prob(batch, torch.from_numpy(first_a["action_tokens"])[None], 1.6)[0].numpy()
    np.testing.assert_allclose(first_a["token_log_probs"], expected, atol=1e-5)


def test_infer_and_the_batched_rollout_path_agree(policy):
    observations = [observation(seed=i, task=TASKS[i % 3]) for i in range(3)]
    with torch.no_grad():
        tokens, _ = policy.model.sample(policy.prepare_batch(observations), temperature=0.0)
    batched = policy.tokens_to_actions(tokens)
    assert batched.shape == (3, 8, 7)
    for i, obs in enumerate(observations):
        np.testing.assert_allclose(policy.infer(obs)["actions"], batched[i], atol=1e-6)


def test_other_image_sizes_go_through_the_resize_transform(policy):
    obs = observation(size=256, seed=2)
    size = policy.model.image_size
    resized = {**obs, **{k: cv2.resize(v, (size, size), interpolation=cv2.INTER_AREA)
                         for k, v in obs.items() if k.startswith("observation.images.")}}
    np.testing.assert_array_equal(policy.infer(obs)["actions"], policy.infer(resized)["actions"])
    wide = {**obs, "observation.images.agentview": np.zeros((120, 160, 3), np.uint8)}
    assert policy.infer(wide)["actions"].shape == (8, 7)


def test_training_samples_share_the_serving_transforms(policy, stats):
    rng = np.random.default_rng(0)
    chunk = rng.uniform(stats["action"].q01, stats["action"].q99, size=(8, 7)).astype(np.float32)
    chunk[:, 6] = rng.choice([-1.0, 1.0], size=8)
    samples = [{**observation(seed=i), "action": chunk} for i in range(2)]
    transform = policy.sample_transform()
    batch, tokens = collate([transform(s) for s in samples])
    assert tokens.shape == (2, 56) and tokens.dtype == torch.int64
    # Tokens decode back to the chunk within half a bin (in robot units).
    half_bin = (stats["action"].q99 - stats["action"].q01) / 256
    half_bin[6] = 1 / 256
    assert (np.abs(policy.tokens_to_actions(tokens)[0] - chunk) <= half_bin + 1e-6).all()
    # Observations are featurized exactly as for serving.
    served = policy.prepare_batch([samples[0]])
    assert torch.equal(served.images[0], batch.images[0]) and torch.equal(served.state[0], batch.state[0])
    assert torch.isfinite(policy.model.sft_loss(batch.augmented(torch.Generator().manual_seed(0)), tokens))
    with pytest.raises(ObservationError, match="'action'"):
        transform(observation())


def test_sample_actions_is_the_batched_rollout_step_with_exact_log_probs(policy):
    observations = [observation(seed=i, task=TASKS[i % 3]) for i in range(4)]
    out = policy.sample_actions(observations, temperature=1.6, generator=torch.Generator().manual_seed(3))
    assert out["actions"].shape == (4, 8, 7) and out["actions"].dtype == np.float32
    assert out["action_tokens"].shape == (4, 56) and out["token_log_probs"].shape == (4, 56)
    np.testing.assert_allclose(out["actions"], policy.tokens_to_actions(out["action_tokens"]), atol=0)
    with torch.no_grad():
        again = policy.model.log_prob(out["batch"], out["action_tokens"], 1.6)
    torch.testing.assert_close(out["token_log_probs"], again, rtol=0, atol=1e-6)
    same = policy.sample_actions(observations, temperature=1.6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(same["action_tokens"], out["action_tokens"])
    assert policy.model.training is False


def test_save_and_load_round_trip_gives_identical_outputs(policy, saved):
    assert {p.name for p in saved.iterdir()} >= {"config.json", "model.safetensors", "norm_stats.json",
                                                "tokenizer.json", "example_obs.msgpack", "manifest.json"}
    config = json.loads((saved / "config.json").read_text())
    assert config["policy_type"] == "vla" and config["config"]["language"]["model_type"] == "llama"
    loaded = load_vla_policy(saved, device="cpu")
    assert loaded.checkpoint_id.startswith("vla-tiny@")
    observations = [observation(seed=i, task=TASKS[i % 3]) for i in range(3)]
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(loaded.prepare_batch(observations)),
                                   policy.model(policy.prepare_batch(observations)), rtol=0, atol=0)
    for obs in observations:
        np.testing.assert_array_equal(loaded.infer(obs)["actions"], policy.infer(obs)["actions"])
    # The stored example observation warms the loaded policy up within its contract.
    assert warm_up(loaded, read_example_obs(saved))["actions"].shape == (8, 7)


@pytest.mark.parametrize("bad, message", [
    ({"observation.images.wrist": None}, "observation.images.wrist"),
    ({"observation.images.agentview": np.zeros((128, 128, 3), np.float32)}, "uint8"),
    ({"observation.images.agentview": np.zeros((128, 128, 4), np.uint8)}, r"\(\.\.\., H, W, 3\)"),
    ({"observation.images.wrist": np.zeros((128, 128), np.uint8)}, "observation.images.wrist"),
    ({"observation.state": np.array([0, 0, 0, np.inf, 0, 0, 0, 0], np.float32)}, "NaN or inf"),
    ({"observation.state": np.full(8, np.nan, np.float32)}, "NaN"),
    ({"observation.state": np.zeros(7, np.float32)}, "shape"),
    ({"task": None}, "task"),
])
def test_bad_observations_raise_clear_errors_and_change_nothing(policy, bad, message):
    obs = observation(seed=9)
    before = policy.infer(obs)["actions"]
    broken = {k: v for k, v in {**obs, **bad}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        policy.infer(broken)
    np.testing.assert_array_equal(policy.infer(obs)["actions"], before)


def _copy(saved, tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    for f in saved.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    return target


def test_corrupt_checkpoints_raise_data_errors_naming_the_file(saved, tmp_path):
    ckpt = _copy(saved, tmp_path)
    weights = ckpt / "model.safetensors"
    tensors = {k: v.clone() for k, v in load_file(weights).items()}  # not backed by the file we overwrite

    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(DataError, match="model.safetensors"):
        load_vla_policy(ckpt, device="cpu")

    save_file({**tensors, "action_queries": torch.full_like(tensors["action_queries"], float("nan"))}, weights)
    with pytest.raises(DataError, match="NaN"):
        load_vla_policy(ckpt, device="cpu")

    save_file({k: v for k, v in tensors.items() if k != "action_head.bias"}, weights)
    with pytest.raises(DataError, match="action_head.bias"):
        load_vla_policy(ckpt, device="cpu")

    save_file(tensors, weights)
    (ckpt / "tokenizer.json").unlink()
    with pytest.raises(DataError, match="tokenizer.json"):
        load_vla_policy(ckpt, device="cpu")

    config_file = ckpt / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "config": {**config["config"], "num_binz": 3}}))
    with pytest.raises(DataError, match="num_binz"):
        load_vla_policy(ckpt, device="cpu")
    config_file.write_text(json.dumps({**config, "policy_type": "stub"}))
    with pytest.raises(DataError, match="policy_type"):
        load_vla_policy(ckpt, device="cpu")


def test_creation_checks_its_inputs(stats):
    with pytest.raises(ValueError, match="task strings"):
        VLAPolicy.create(micro_config(), stats)
    with pytest.raises(DataError, match="observation.state"):
        VLAPolicy.create(micro_config(), {"action": stats["action"]}, tasks=TASKS)
    no_state = VLAPolicy.create(micro_config(use_state=False, cameras=("agentview",)),
                                {"action": stats["action"]}, tasks=TASKS, device="cpu")
    obs = observation(size=32, wrist=False)
    del obs["observation.state"]
    assert no_state.infer(obs)["actions"].shape == (8, 7)


def test_the_presets_act_from_images_and_language_only(stats):
    """RL in the world model has no robot state, so the presets leave proprio out: the state is not read."""
    assert make_config(VLAConfig, "tiny").use_state is False and make_config(VLAConfig, "paper").use_state is False
    policy = VLAPolicy.create(make_config(VLAConfig, "tiny"), {"action": stats["action"]}, tasks=TASKS, device="cpu")
    obs = observation(seed=5)
    nan_state = {**obs, "observation.state": np.full(8, np.nan, np.float32)}
    np.testing.assert_array_equal(policy.infer(nan_state)["actions"], policy.infer(obs)["actions"])
    # The server still expects the robot's state in every request (the contract is the robot's, not the model's).
    assert policy.contract.state_dim == 8 and policy.metadata()["use_state"] is False
