"""``wovr train-policy`` end to end on real twin episodes: outputs, a SIGKILLed run resumed to the same
parameters, serving the result, and clear errors for bad runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from vla_helpers import build_pretrained, demo_dataset, micro_cli_args

from wovr_core.config import ConfigError, make_config
from wovr_core.errors import DataError
from wovr_core.policy.checkpoint import load_policy, read_example_obs
from wovr_core.train import checkpoint as ckpt
from wovr_core.train.policy_config import PolicyTrainConfig
from wovr_core.train.policy_data import hold_still_chunk
from wovr_core.train.policy_trainer import lr_factor, train_policy

pytestmark = pytest.mark.sim
STEPS = 40  # long enough that a SIGKILL after the second checkpoint lands mid-run


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return demo_dataset(tmp_path_factory.getbasetemp())


def overrides() -> list[str]:
    # Episodes of 30 steps never finish the task: imitate them anyway (success_only=false).
    sets = micro_cli_args()[1::2]
    return [*sets, f"max_steps={STEPS}", "batch_size=4", "success_only=false", "checkpoint_every=1",
            "val_every=20", "threads=1", "optim.warmup_steps=5",
            # the periodic LIBERO evaluation, once at the end: one short episode of task 0
            f"eval.every={STEPS}", "eval.tasks=[0]", "eval.episodes_per_task=1", "eval.workers=1", "eval.max_steps=8"]


def train_command(dataset: Path, out: Path) -> list[str]:
    sets = [arg for item in overrides() for arg in ("--set", item)]
    return [sys.executable, "-m", "wovr_core.cli", "train-policy", "--data", str(dataset), "--out", str(out),
            "--no-progress", *sets]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, **kwargs)


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    result = run(train_command(dataset, out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"trained {STEPS} steps" in result.stdout
    return out


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def test_a_run_writes_a_servable_policy_checkpoints_and_logs(uninterrupted):
    policy_dir = uninterrupted / "policy"
    policy = load_policy(policy_dir)
    obs = read_example_obs(policy_dir)
    # The contract is the dataset's camera size (what the twin sends); the model resizes to its own.
    assert policy.contract.image_shapes["observation.images.agentview"] == (64, 64, 3)
    assert obs["observation.images.agentview"].shape == (64, 64, 3)
    reply = policy.infer(obs)
    assert reply["actions"].shape == (8, 7) and np.isfinite(reply["actions"]).all()
    checkpoints = ckpt.list_checkpoints(uninterrupted)
    assert [c.name for c in checkpoints] == [f"step-{STEPS - 1:07d}", f"step-{STEPS:07d}"]  # keep_checkpoints=2
    state = ckpt.read_trainer_state(checkpoints[-1])
    assert state["step"] == STEPS and [h["step"] for h in state["history"]] == [20, 40]
    for name, tensor in weights(policy_dir).items():
        assert torch.equal(tensor, weights(checkpoints[-1])[name]), name
    assert list((uninterrupted / "tb").glob("events.out.tfevents.*"))
    summary = json.loads((uninterrupted / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["train_episodes"] == 2
    assert summary["eval"] == [{"step": STEPS, "success": 0.0}]
    evaluation = json.loads((uninterrupted / "eval" / f"step-{STEPS:07d}" / "results.json").read_text())
    assert evaluation["episodes"] == 1 and evaluation["episode_records"][0]["steps"] == 8
    assert (uninterrupted / "split.json").exists() and (uninterrupted / "train_config.json").exists()


def test_training_fits_the_demonstrations(uninterrupted):
    """With no episode held out (one per task), validation runs on fixed training frames: the fit improves."""
    summary = json.loads((uninterrupted / "summary.json").read_text())
    assert summary["validation_on"] == "training_episodes"
    first, last = ckpt.read_trainer_state(ckpt.latest_checkpoint(uninterrupted))["history"]
    assert last["loss"] < first["loss"] < np.log(256)
    assert 0 <= first["token_accuracy"] <= last["token_accuracy"] <= 1


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for_checkpoint_after(proc: subprocess.Popen, out: Path, step: int) -> None:
    deadline = time.monotonic() + 240
    while not any(int(p.name.split("-")[1]) > step for p in ckpt.list_checkpoints(out)):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no new checkpoint appeared"
        time.sleep(0.01)


def test_stopped_and_sigkilled_runs_resume_to_the_parameters_of_an_uninterrupted_one(dataset, uninterrupted,
                                                                                      tmp_path):
    out = tmp_path / "run"
    cmd = train_command(dataset, out)
    # 1. SIGTERM (a scheduler's polite stop): the run checkpoints where it is and exits like Ctrl-C.
    proc = _start(cmd)
    try:
        _wait_for_checkpoint_after(proc, out, 1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in stderr, stderr[-3000:]
    stopped_at = int(ckpt.latest_checkpoint(out).name.split("-")[1])
    assert 2 <= stopped_at < STEPS
    # 2. Resume, then SIGKILL right after its first new checkpoint (no chance to clean up).
    proc = _start(cmd)
    try:
        _wait_for_checkpoint_after(proc, out, stopped_at)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "policy").exists(), "the run finished before the kill"
    # 3. Resume to the end: the same parameters as the run that was never interrupted.
    resumed = run(cmd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    for name, tensor in weights(uninterrupted / "policy").items():
        assert torch.equal(weights(out / "policy")[name], tensor), f"{name} differs after resuming"
    # Rerunning the finished run changes nothing.
    before = weights(out / "policy")
    train_policy(make_config(PolicyTrainConfig, "tiny", overrides()), [dataset], out, progress=False)
    for name, tensor in weights(out / "policy").items():
        assert torch.equal(tensor, before[name])


def test_the_trained_policy_is_served_by_wovr_serve(uninterrupted, tmp_path):
    from server_harness import running_server

    policy_dir = uninterrupted / "policy"
    obs = read_example_obs(policy_dir)
    expected = load_policy(policy_dir).infer(obs)["actions"]
    with running_server(policy_dir, tmp_path) as server, server.client() as client:
        assert client.metadata["policy_type"] == "vla"
        reply = client.infer(obs)
    np.testing.assert_allclose(reply["actions"], expected, atol=1e-6)
    assert reply["action_tokens"].shape == (56,)


def test_a_run_refuses_to_resume_with_other_settings(dataset, uninterrupted):
    cfg = make_config(PolicyTrainConfig, "tiny", [*overrides(), "optim.lr=0.5"])
    with pytest.raises(ConfigError, match="optim.*differ"):
        train_policy(cfg, [dataset], uninterrupted, progress=False)


def test_bad_data_gives_clear_errors(dataset, tmp_path):
    cfg = make_config(PolicyTrainConfig, "tiny", ["max_steps=1"])
    with pytest.raises(DataError, match="successful episodes"):  # the demo episodes all fail
        train_policy(cfg, [dataset], tmp_path / "a", progress=False)
    with pytest.raises(DataError, match="not an episode dataset"):
        train_policy(cfg, [tmp_path / "nowhere"], tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="at least one dataset"):
        train_policy(cfg, [], tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="cameras"):
        make_config(PolicyTrainConfig, "tiny", ["model.cameras=[agentview,top]"])


def test_a_corrupt_checkpoint_is_named_when_resuming(dataset, uninterrupted, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    (ckpt.latest_checkpoint(out) / ckpt.TENSORS_FILE).write_bytes(b"garbage")
    cfg = make_config(PolicyTrainConfig, "tiny", [*overrides(), f"max_steps={STEPS + 1}"])
    with pytest.raises(DataError, match=ckpt.TENSORS_FILE):
        train_policy(cfg, [dataset], out, progress=False)
    (ckpt.latest_checkpoint(out) / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="model.safetensors"):
        train_policy(cfg, [dataset], out, progress=False)


def test_the_paper_preset_fine_tunes_pretrained_backbones_in_bfloat16(dataset, tmp_path):
    """``--preset paper`` with tiny pretrained models of the paper's classes (SigLIP + Qwen2), on the CPU."""
    models = build_pretrained(tmp_path / "models")
    cfg = make_config(PolicyTrainConfig, "paper", [
        f"model.pretrained_vision={models['vision']}", f"model.pretrained_language={models['language']}",
        "max_steps=2", "batch_size=2", "success_only=false", "num_workers=0", "threads=1", "val_every=2"])
    assert cfg.mixed_precision == "bf16" and cfg.model.dtype == "bfloat16"
    summary = train_policy(cfg, [dataset], tmp_path / "run", preset="paper", progress=False)
    assert summary["steps"] == 2 and np.isfinite(summary["validation"]["loss"])
    policy = load_policy(tmp_path / "run" / "policy")
    assert policy.metadata()["language_model"] == "qwen2" and policy.metadata()["dtype"] == "bfloat16"
    assert policy.infer(read_example_obs(tmp_path / "run" / "policy"))["actions"].shape == (8, 7)


def test_action_chunks_follow_the_observation_and_hold_still_past_the_end():
    actions = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    actions[:, 6] = [-1, -1, 1, 1, 1]
    chunk = hold_still_chunk(actions, 1, 8)
    np.testing.assert_array_equal(chunk[:3], actions[2:5])  # action[t+1] is the first after o[t]
    np.testing.assert_array_equal(chunk[3:, :6], 0.0)
    np.testing.assert_array_equal(chunk[3:, 6], 1.0)


def test_learning_rate_warms_up_then_decays_to_its_floor():
    cfg = make_config(PolicyTrainConfig, "tiny", ["max_steps=100", "optim.warmup_steps=10",
                                                   "optim.min_lr_ratio=0.1"])
    factors = [lr_factor(s, cfg) for s in range(101)]
    assert factors[0] < factors[5] < factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[100] == pytest.approx(0.1)
