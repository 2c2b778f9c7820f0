"""train-wm: a tiny end-to-end run on real dataset files; resuming after a stop or a kill -9 gives the same
model as an uninterrupted run; clear errors for bad runs and inputs."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from wm_helpers import tiny_train_config, tiny_train_overrides, wovr_argv, write_synthetic_dataset

from wovr_core.config import ConfigError
from wovr_core.errors import DataError
from wovr_core.world_model import checkpoint as ckpt
from wovr_core.world_model.model import WorldModel, without_commands
from wovr_core.world_model.train import (
    WeightAverage,
    drop_commands,
    reverse_chunk_translation,
    train_world_model,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wm_train") / "ds"
    write_synthetic_dataset(root, n_episodes=3, length=30)
    return root


def _weights(checkpoint: Path) -> dict[str, np.ndarray]:
    """Every trained tensor of a world-model checkpoint (codec, transformer, action encoder)."""
    out = {}
    for path in sorted(checkpoint.rglob("*.safetensors")):
        if path.name != ckpt.OPTIMIZER_FILE:
            out.update({f"{path.relative_to(checkpoint)}:{k}": v for k, v in load_file(path).items()})
    return out


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and wa
    for key in wa:
        np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)


def test_a_short_run_writes_a_loadable_model_logs_and_videos(tmp_path, data):
    out = tmp_path / "run"
    summary = train_world_model(tiny_train_config(), [data], out)
    stages = [h["stage"] for h in summary["history"]]
    assert "autoencoder" in stages and "denoiser" in stages
    assert all(np.isfinite(h.get("val_loss", h.get("val_l1"))) for h in summary["history"])
    assert any("val_psnr_8" in h for h in summary["history"])  # open-loop validation rollouts
    model = WorldModel.load(out / "model")
    assert model.codec.autoencoder.config.latent_std is not None  # latents normalized after stage 1
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert list((out / "videos").glob("val-step-*.mp4"))
    split = json.loads((out / "split.json").read_text())
    assert split["val"] and set(map(tuple, split["val"])).isdisjoint(map(tuple, split["train"]))
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert manifest["datasets"][0]["fingerprint"] == split["fingerprints"][0]
    state = ckpt.read_trainer_state(ckpt.latest_checkpoint(out))
    assert state["stage"] == "done"
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl")) and not list(out.rglob("*.bin"))


def test_the_stopping_rule_ends_a_stage_on_a_plateau(tmp_path, data):
    # min_delta = 1: only halving the validation loss counts as progress, so the stage stops after `patience`.
    summary = train_world_model(tiny_train_config(ae_max_steps=1, max_steps=50, val_every=1, patience=2,
                                                  min_delta=1.0, checkpoint_every=100), [data], tmp_path / "run")
    denoiser = [h for h in summary["history"] if h["stage"] == "denoiser"]
    assert len(denoiser) == 3 and denoiser[-1]["step"] == 3


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, data):
    settings = {"ae_max_steps": 2, "max_steps": 4, "checkpoint_every": 1, "keep_checkpoints": 20}
    full = tmp_path / "full"
    train_world_model(tiny_train_config(**settings), [data], full)
    final = ckpt.latest_checkpoint(full)
    # What a stop right after the checkpoint of denoiser step 2 leaves on disk: checkpoints up to it, `latest`
    # pointing at it, and a half-written next checkpoint.
    stopped = tmp_path / "stopped"
    shutil.copytree(full, stopped)
    names = sorted(p.name for p in (stopped / "checkpoints").iterdir() if p.name.startswith("step-"))
    at = next(n for n in names if ckpt.read_trainer_state(stopped / "checkpoints" / n)["step"] == 2
              and ckpt.read_trainer_state(stopped / "checkpoints" / n)["stage"] == "denoiser")
    for later in names[names.index(at) + 1:]:
        shutil.rmtree(stopped / "checkpoints" / later)
    (stopped / "checkpoints" / "latest").write_text(at + "\n")
    (stopped / "checkpoints" / ".step-9999999.tmp").mkdir()
    summary = train_world_model(tiny_train_config(**settings), [data], stopped)
    assert summary["global_step"] == ckpt.read_trainer_state(final)["global_step"]
    _assert_same_weights(final, ckpt.latest_checkpoint(stopped))
    assert not (stopped / "checkpoints" / ".step-9999999.tmp").exists()


def test_a_finished_run_trains_on_when_max_steps_is_raised(tmp_path, data):
    settings = {"ae_max_steps": 2, "checkpoint_every": 100, "val_every": 2}
    extended = tmp_path / "extended"
    train_world_model(tiny_train_config(max_steps=3, **settings), [data], extended)
    again = train_world_model(tiny_train_config(max_steps=3, **settings), [data], extended)
    assert again["global_step"] == 2 + 3  # finished: a rerun with the same settings trains nothing
    summary = train_world_model(tiny_train_config(max_steps=5, **settings), [data], extended)
    assert summary["global_step"] == 2 + 5
    assert ckpt.read_trainer_state(ckpt.latest_checkpoint(extended))["stage"] == "done"

    uninterrupted = tmp_path / "uninterrupted"
    train_world_model(tiny_train_config(max_steps=5, **settings), [data], uninterrupted)
    _assert_same_weights(ckpt.latest_checkpoint(uninterrupted), ckpt.latest_checkpoint(extended))
    _assert_same_weights(uninterrupted / "model", extended / "model")  # the weight average went on too


def test_the_weight_average_follows_its_decay_swaps_in_and_out_and_round_trips(tmp_path):
    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    average = WeightAverage(layer, decay=0.9)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    average.update(step=1)  # warm-up: decay min(0.9, 2 / 11)
    torch.testing.assert_close(average.average[0], torch.full((1, 2), 1 - 2 / 11))
    average.update(step=1000)  # decay 0.9
    torch.testing.assert_close(average.average[0], torch.full((1, 2), 0.9 * (1 - 2 / 11) + 0.1))
    with average.swapped():
        torch.testing.assert_close(layer.weight.detach(), average.average[0])
    assert torch.equal(layer.weight.detach(), torch.ones(1, 2))  # the trained weights are back
    average.save(tmp_path / "ema.safetensors")
    restored = WeightAverage(layer, decay=0.9)
    restored.load(tmp_path / "ema.safetensors")
    torch.testing.assert_close(restored.average[0], average.average[0])
    with pytest.raises(DataError, match="does not match"):
        WeightAverage(torch.nn.Linear(3, 1), decay=0.9).load(tmp_path / "ema.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="unreadable weight average"):
        restored.load(tmp_path / "bad.safetensors")


def test_a_run_reuses_or_goes_on_training_the_autoencoder_of_an_earlier_run(tmp_path, data):
    first = tmp_path / "first"
    train_world_model(tiny_train_config(ae_max_steps=2, max_steps=1), [data], first)
    codec = str(first / "model" / "codec")
    reused = tmp_path / "reused"
    summary = train_world_model(tiny_train_config(**{"ae_max_steps": 0, "max_steps": 1,
                                                     "model.codec.pretrained_path": codec}), [data], reused)
    assert [h["stage"] for h in summary["history"]] == ["denoiser"]
    _assert_same_weights(first / "model" / "codec", reused / "model" / "codec")  # latent statistics too
    assert (json.loads((first / "model" / "codec" / "config.json").read_text())["latent_std"]
            == json.loads((reused / "model" / "codec" / "config.json").read_text())["latent_std"])
    trained = tmp_path / "trained"
    summary = train_world_model(tiny_train_config(**{"ae_max_steps": 2, "max_steps": 1,
                                                     "model.codec.pretrained_path": codec}), [data], trained)
    assert [h["stage"] for h in summary["history"]][0] == "autoencoder"
    before, after = _weights(first / "model" / "codec"), _weights(trained / "model" / "codec")
    assert any(not np.array_equal(before[k], after[k]) for k in before)


def test_action_dropout_replaces_the_commands_of_about_its_share_of_windows():
    actions = torch.randn(4000, 13, 7)
    assert torch.equal(drop_commands(actions, np.random.default_rng(0), 0.0, 5), actions)
    dropped = drop_commands(actions, np.random.default_rng(0), 0.1, 5)
    nulls = without_commands(actions, 5)
    is_dropped = (dropped == nulls).flatten(1).all(dim=1)
    assert torch.equal(dropped[~is_dropped], actions[~is_dropped])  # the others untouched
    assert 0.08 < is_dropped.float().mean() < 0.12
    assert torch.equal(dropped, drop_commands(actions, np.random.default_rng(0), 0.1, 5))  # a function of the rng


def test_a_run_with_action_dropout_trains_a_model_that_imagines_with_action_guidance(tmp_path, data):
    with pytest.raises(ConfigError, match="action_dropout"):
        tiny_train_config(action_dropout=1.0)
    out = tmp_path / "run"
    train_world_model(tiny_train_config(ae_max_steps=1, max_steps=2, action_dropout=0.5), [data], out)
    model = WorldModel.load(out / "model").prepare_for_inference().use_action_guidance(2.5)
    assert model.config.action_guidance == 2.5
    size = model.config.image_size
    frames = {c: np.full((2, 1, size, size, 3), 128, np.uint8) for c in model.config.cameras}
    chunk = np.zeros((2, model.config.chunk_frames, 7), np.float32)
    imagined, _ = model.imagine(model.observe(frames), chunk)
    assert all(v.shape == (2, model.config.chunk_frames, size, size, 3) for v in imagined.values())
    with pytest.raises(ConfigError, match="action_guidance"):
        model.use_action_guidance(-1.0)



def test_action_contrast_reverses_only_the_generated_chunks_translation():
    actions = torch.randn(3, 13, 7)
    reversed_actions = reverse_chunk_translation(actions, 5)
    torch.testing.assert_close(reversed_actions[:, 5:, :3], -actions[:, 5:, :3], rtol=0, atol=0)
    torch.testing.assert_close(reversed_actions[:, :5], actions[:, :5], rtol=0, atol=0)  # context: as recorded
    torch.testing.assert_close(reversed_actions[:, :, 3:], actions[:, :, 3:], rtol=0, atol=0)  # rotation, gripper
    assert not torch.equal(reversed_actions, actions)


def test_a_run_with_action_contrast_trains_and_checks_its_settings(tmp_path, data):
    with pytest.raises(ConfigError, match="action_contrast"):
        tiny_train_config(action_contrast=-1.0)
    with pytest.raises(ConfigError, match="action_contrast_margin"):
        tiny_train_config(action_contrast=1.0, action_contrast_margin=0.0)
    summary = train_world_model(tiny_train_config(ae_max_steps=1, max_steps=2, action_contrast=1.0), [data],
                                tmp_path / "run")
    assert summary["history"][-1]["stage"] == "denoiser" and np.isfinite(summary["history"][-1]["val_loss"])
    assert (tmp_path / "run" / "model" / "config.json").exists()


def test_resuming_with_a_different_config_is_refused(tmp_path, data):
    out = tmp_path / "run"
    train_world_model(tiny_train_config(ae_max_steps=1, max_steps=1), [data], out)
    with pytest.raises(ConfigError, match="lr"):
        train_world_model(tiny_train_config(ae_max_steps=1, max_steps=1, lr=1e-2), [data], out)


def test_a_broken_latest_pointer_is_reported(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step-0000042\n")
    with pytest.raises(DataError, match="step-0000042"):
        ckpt.latest_checkpoint(tmp_path)


def _train_wm(data: Path, out: Path, **overrides) -> list[str]:
    args = ["train-wm", "--data", str(data), "--out", str(out)]
    for item in tiny_train_overrides(**overrides):
        args += ["--set", item]
    return wovr_argv(*args)


def test_missing_data_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        train_world_model(tiny_train_config(), [tmp_path / "nowhere"], tmp_path / "run")


def test_the_cli_reports_a_damaged_run_in_one_line(tmp_path, data):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step-0000007\n")
    broken = subprocess.run(_train_wm(data, tmp_path / "run"), capture_output=True, text=True, timeout=120)
    assert broken.returncode == 2 and "step-0000007" in broken.stderr and "Traceback" not in broken.stderr


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint_and_ends_as_an_uninterrupted_run(tmp_path, data):
    out = tmp_path / "run"
    settings = {"ae_max_steps": 2, "ae_val_every": 2, "checkpoint_every": 1, "val_every": 1000}
    proc = subprocess.Popen(_train_wm(data, out, max_steps=100_000, **settings), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "checkpoints" / "latest").exists():
                state = ckpt.read_trainer_state(ckpt.latest_checkpoint(out))
                if state["stage"] == "denoiser" and state["step"] >= 2:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError(f"no denoiser checkpoint in time; stderr:\n{proc.stderr.read()[-3000:]}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = ckpt.read_trainer_state(ckpt.latest_checkpoint(out))  # the newest complete one after the kill
    assert killed_at["stage"] == "denoiser"
    target = killed_at["step"] + 2
    done = subprocess.run(_train_wm(data, out, max_steps=target, **settings), cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from step-{killed_at['global_step']:07d} (stage denoiser, step {killed_at['step']})" in done.stderr
    assert f"optimizer state restored (step {killed_at['step']})" in done.stderr
    final = ckpt.read_trainer_state(ckpt.latest_checkpoint(out))
    assert final["stage"] == "done" and final["global_step"] == killed_at["global_step"] + 2  # continued

    uninterrupted = tmp_path / "uninterrupted"
    train_world_model(tiny_train_config(max_steps=target, **settings), [data], uninterrupted)
    _assert_same_weights(ckpt.latest_checkpoint(uninterrupted), ckpt.latest_checkpoint(out))
    # The saved model holds the weight average, which the resumed run restored rather than restarted.
    _assert_same_weights(uninterrupted / "model", out / "model")


@pytest.mark.slow
def test_the_paper_code_path_trains_on_pixel_windows_without_an_autoencoder_stage(tmp_path):
    """A causal AutoencoderKLWan codec: windows are encoded on the fly, the codec stays frozen."""
    write_synthetic_dataset(tmp_path / "ds", n_episodes=3, length=30, size=16)
    vae = {"base_dim": 4, "z_dim": 4, "dim_mult": [1, 1], "num_res_blocks": 0, "temperal_downsample": [True],
           "scale_factor_temporal": 2, "scale_factor_spatial": 2}
    cfg = tiny_train_config(**{"model.image_size": 16, "model.codec.kind": "wan_vae",
                               "model.codec.camera_layout": "width", "model.codec.wan_vae": vae, "max_steps": 2,
                               "batch_size": 2, "val_clips": 2})
    summary = train_world_model(cfg, [tmp_path / "ds"], tmp_path / "run")
    assert [h["stage"] for h in summary["history"]] == ["denoiser"]
    assert WorldModel.load(tmp_path / "run" / "model").codec.temporal_factor == 2
