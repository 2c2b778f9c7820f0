"""train-reward end to end on real dataset files: success frames recognised on held-out episodes."""

from __future__ import annotations

import json

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


def test_a_frame_degrader_trains_the_model_to_read_degraded_frames_too(tmp_path):
    """Imagined frames are the world model's decoded latents: a reward model for imagination trains on frames
    through its codec as well. Here the 'codec' inverts colours, which a camera-only model never saw."""
    from wovr_core.config import make_config
    from wovr_core.reward.config import RewardTrainConfig
    from wovr_core.reward.train import train_reward_model

    write_synthetic_dataset(tmp_path / "ds", n_episodes=8, length=24)
    seen = []

    def invert(frames):
        seen.append(len(next(iter(frames.values()))))
        return {c: 255 - v for c, v in frames.items()}

    cfg = make_config(RewardTrainConfig, "tiny", ["model.image_size=32", "max_steps=160", "val_every=40",
                                                  "batch_size=32", "test_fraction=0.25", "threads=1"])
    report = train_reward_model(cfg, [tmp_path / "ds"], tmp_path / "rm", degrade=invert)
    assert 0.3 < sum(seen[:cfg.max_steps]) / (32 * min(len(seen), cfg.max_steps)) < 0.7  # about half of each batch
    assert report["balanced_accuracy"] >= 0.9 and report["recall"] >= 0.8  # camera frames
    assert report["degraded"]["balanced_accuracy"] >= 0.9 and report["degraded"]["recall"] >= 0.8
    assert json.loads((tmp_path / "rm" / "metrics.json").read_text())["degraded"] == report["degraded"]
