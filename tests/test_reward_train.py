"""train-reward end to end on real dataset files: success frames recognised on held-out episodes."""

from __future__ import annotations

import json

import pytest
from wm_helpers import write_synthetic_dataset

from wovr_core.cli import build_parser
from wovr_core.reward.model import SuccessClassifier
from wovr_core.reward.train_cli import COMMAND


def test_training_learns_the_success_frames_and_reports_on_held_out_episodes(tmp_path, capsys):
    write_synthetic_dataset(tmp_path / "ds", n_episodes=8, length=24)
    args = build_parser({COMMAND.name: COMMAND}).parse_args([
        COMMAND.name, "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "rm"),
        "--set", "model.image_size=32", "--set", "max_steps=120", "--set", "val_every=40",
        "--set", "batch_size=32", "--set", "test_fraction=0.25", "--set", "threads=1"])
    assert COMMAND.run(args) == 0
    assert "balanced accuracy" in capsys.readouterr().out
    report = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    split = json.loads((tmp_path / "rm" / "split.json").read_text())
    parts = [set(map(tuple, split[k])) for k in ("train", "val", "test")]
    assert report["held_out_episodes"] == split["test"] and all(parts)
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert report["positives"] > 0 and report["frames"] > report["positives"]
    assert report["balanced_accuracy"] >= 0.9 and report["recall"] >= 0.8
    assert len(report["calibration"]["bins"]) == 10 and 0 <= report["calibration"]["ece"] <= 1
    model = SuccessClassifier.load(tmp_path / "rm")
    assert len(model.config.tasks) == 2 and model.config.task_conditioning


def test_an_episode_view_trains_the_model_to_read_viewed_frames_too(tmp_path):
    """Imagined frames are the world model's: a reward model for imagination trains on its view of each episode
    (wovr_core.world_model.replay) as well. Here the 'view' inverts colours, which a camera-only model never saw."""
    from wovr_core.config import make_config
    from wovr_core.reward.config import RewardTrainConfig
    from wovr_core.reward.train import train_reward_model

    meta = write_synthetic_dataset(tmp_path / "ds", n_episodes=8, length=24)
    calls = []

    def invert(frames, actions):
        calls.append((len(actions), {len(v) for v in frames.values()}))
        return {c: 255 - v for c, v in frames.items()}

    cfg = make_config(RewardTrainConfig, "tiny", ["model.image_size=32", "max_steps=160", "val_every=40",
                                                  "batch_size=32", "test_fraction=0.25", "threads=1"])
    report = train_reward_model(cfg, [tmp_path / "ds"], tmp_path / "rm", view=invert)
    split = json.loads((tmp_path / "rm" / "split.json").read_text())
    # Whole episodes with their actions, once each: training bank, validation (early stopping) and report.
    assert len(calls) == len(split["train"]) + len(split["val"]) + len(split["test"])
    assert all(sizes == {n} and n == meta[0]["length"] for n, sizes in calls)
    assert report["balanced_accuracy"] >= 0.9 and report["recall"] >= 0.8  # camera frames
    assert report["viewed"]["balanced_accuracy"] >= 0.9 and report["viewed"]["recall"] >= 0.8
    metrics = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    assert metrics["viewed"] == report["viewed"]
    last = metrics["history"][-1]  # early stopping weighs camera and viewed frames alike
    assert last["bce"] == pytest.approx((last["camera_bce"] + last["viewed_bce"]) / 2)


def test_without_viewed_frames_in_training_the_view_is_not_read(tmp_path):
    """The same run with viewed_fraction 0: the model never sees inverted frames and cannot read them, which is
    what the view is for (and what happened to a camera-only reward model in imagination)."""
    from wovr_core.config import make_config
    from wovr_core.reward.config import RewardTrainConfig
    from wovr_core.reward.train import train_reward_model

    write_synthetic_dataset(tmp_path / "ds", n_episodes=8, length=24)
    cfg = make_config(RewardTrainConfig, "tiny", ["model.image_size=32", "max_steps=160", "val_every=40",
                                                  "batch_size=32", "test_fraction=0.25", "threads=1",
                                                  "viewed_fraction=0"])
    report = train_reward_model(cfg, [tmp_path / "ds"], tmp_path / "rm",
                                view=lambda frames, actions: {c: 255 - v for c, v in frames.items()})
    assert report["balanced_accuracy"] >= 0.9
    assert report["viewed"]["balanced_accuracy"] < 0.8


def test_train_reward_reads_a_world_models_imagined_replay(tmp_path, capsys):
    """``--world-model``: the command trains on that model's imagined replay of the episodes too and reports
    held-out accuracy on it (the frames RL in imagination shows the reward model)."""
    import torch
    from wm_helpers import tiny_model_config

    from wovr_core.world_model.model import WorldModel

    torch.manual_seed(0)
    WorldModel.build(tiny_model_config()).save(tmp_path / "wm")
    write_synthetic_dataset(tmp_path / "ds", n_episodes=8, length=24)
    args = build_parser({COMMAND.name: COMMAND}).parse_args([
        COMMAND.name, "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "rm"), "--world-model",
        str(tmp_path / "wm"), "--set", "model.image_size=32", "--set", "max_steps=40", "--set", "val_every=20",
        "--set", "batch_size=16", "--set", "threads=1"])
    assert COMMAND.run(args) == 0
    assert "through the world model (imagined)" in capsys.readouterr().out
    report = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    assert 0 <= report["viewed"]["accuracy"] <= 1 and "viewed_bce" in report["history"][-1]
