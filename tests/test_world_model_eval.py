"""eval-wm: fidelity metrics, open-loop replay report, reward agreement, controllability, videos."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from wm_helpers import TASKS, tiny_train_config, wovr_argv, write_synthetic_dataset

from wovr_core.cli import build_parser
from wovr_core.config import ConfigError, make_config
from wovr_core.reward.config import RewardModelConfig
from wovr_core.reward.model import SuccessClassifier
from wovr_core.world_model.config import WorldModelEvalConfig
from wovr_core.world_model.data import load_episode, open_datasets
from wovr_core.world_model.eval_cli import COMMAND
from wovr_core.world_model.evaluate import (
    direction_tracking,
    episode_outcomes,
    evaluate_world_model,
    format_controllability,
    measure_controllability,
)
from wovr_core.world_model.metrics import horizon_means, psnr, ssim
from wovr_core.world_model.model import WorldModel
from wovr_core.world_model.train import train_world_model


def test_psnr_and_ssim_score_identical_frames_best():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:32]
    a = np.stack([np.repeat(((np.sin(x / 4 + k) + 1) * 100 + y)[..., None], 3, axis=2) for k in range(4)]).astype(np.uint8)
    noisy = np.clip(a.astype(int) + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert np.all(psnr(a, a) == 100.0) and np.allclose(ssim(a, a), 1.0)
    assert np.all(psnr(a, noisy) < 30) and np.all(ssim(a, noisy) < 0.9)
    assert psnr(a, noisy).shape == (4,)
    assert horizon_means(np.arange(10.0), (2, 8, 32)) == {2: 0.5, 8: 3.5}


def test_direction_tracking_cancels_common_drift_and_scales_by_the_real_response():
    rng = np.random.default_rng(0)
    still = rng.normal(0, 0.1, (4, 3))
    drift = np.array([0.02, -0.03, 0.01])  # what every command does alike: towards the typical demonstration
    step = np.array([0.1, 0.0, 0.0])
    follows = direction_tracking(still + drift + step, still + drift - step, still, axis=0, expected_m=0.1)
    assert follows["gain"] == pytest.approx(1.0) and follows["contrast_accuracy"] == 1.0
    assert np.allclose(follows["common_drift_m"], drift, atol=1e-4)
    # Direction-blind: both commands drift the same way. A "displacement from still" reading would see the
    # +x command move +x (and call it a hit); the paired contrast sees nothing.
    blind = direction_tracking(still + drift, still + drift, still, axis=0, expected_m=0.1)
    assert blind["gain"] == 0.0 and blind["contrast_accuracy"] == 0.0
    half = direction_tracking(still + step / 2, still - step / 2, still, axis=0, expected_m=0.1)
    assert half["gain"] == pytest.approx(0.5)
    wrong = direction_tracking(still - step, still + step, still, axis=0, expected_m=0.1)
    assert wrong["gain"] == pytest.approx(-1.0) and wrong["contrast_accuracy"] == 0.0
    # An axis whose + command moves the real arm the negative way: following it is still a gain of 1.
    flipped = direction_tracking(still - step, still + step, still, axis=0, expected_m=-0.1)
    assert flipped["gain"] == pytest.approx(1.0) and flipped["contrast_accuracy"] == 1.0
    with pytest.raises(ValueError, match="never moves"):
        direction_tracking(still, still, still, axis=2, expected_m=0.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wm_eval")
    write_synthetic_dataset(root / "ds", n_episodes=3, length=40)
    train_world_model(tiny_train_config(ae_max_steps=2, max_steps=2), [root / "ds"], root / "run")
    return root / "run"


def test_open_loop_report_covers_horizons_reward_agreement_and_controllability(tmp_path, run):
    model = WorldModel.load(run / "model").prepare_for_inference()
    split = json.loads((run / "split.json").read_text())
    datasets = open_datasets(split["datasets"], model.config.cameras)
    cfg = WorldModelEvalConfig(horizons=(8, 32, 128), probe_steps=20, probe_frames=100)

    def brightness(frames, task):  # any frame -> probability function will do for the plumbing
        return frames["agentview"].mean(axis=(1, 2, 3)) / 255.0

    report = evaluate_world_model(model, datasets, [tuple(k) for k in split["val"]], cfg, tmp_path / "eval",
                                  scorer=brightness, probe_keys=[tuple(k) for k in split["train"]])
    # 40-frame episodes: 32 frames of replay fit, 128 do not and are not reported as if they did.
    assert set(report["psnr"]) == {"8", "32"} and set(report["ssim"]) == {"8", "32"}
    assert len(report["psnr_per_frame"]) == 32
    assert 0 < report["psnr"]["8"]["mean"] < 100 and -1 <= report["ssim"]["32"]["mean"] <= 1
    # Baselines on the same frames: the codec's reconstruction, and the first frame held still.
    baselines = report["psnr_baselines"]
    assert set(baselines) == {"codec", "hold"} and all(set(b) == {"8", "32"} for b in baselines.values())
    assert all(0 < b["32"]["mean"] < 100 for b in baselines.values())
    held = []
    for key in report["episodes"]:
        ep = load_episode(datasets, tuple(key), model.config.cameras, model.config.image_size)
        held.append(np.mean([psnr(ep.frames[c][1:9], np.repeat(ep.frames[c][:1], 8, axis=0))
                             for c in model.config.cameras]))
    assert baselines["hold"]["8"]["mean"] == pytest.approx(np.mean(held), rel=1e-5)
    assert set(report["reward_agreement"]) >= {"mean_abs_prob_diff", "label_agreement"}
    assert report["outcomes"]["episodes"] == len(report["episodes"]) and report["outcomes"]["threshold"] == 0.5
    control = report["controllability"]
    # The synthetic scene moves in x and y only: z cannot be checked and is left out, not counted wrong.
    assert 0 <= control["direction_accuracy"] <= 1 and set(control["per_command"]) == {"+x", "-x", "+y", "-y"}
    # Every evaluated episode is a start (control_starts 16 > the episodes here), imagined batch_size at a time.
    assert control["starts"] == len(report["episodes"])
    assert set(control["per_axis"]) == {"x", "y"} and np.isfinite(control["tracking_gain"])
    assert 0 <= control["contrast_accuracy"] <= 1
    response = control["probe"]["real_response_m_per_step"]
    assert control["per_axis"]["x"]["expected_m"] == pytest.approx(response["x"] * cfg.control_magnitude * 16)
    assert format_controllability(control).startswith(f"tracking gain {control['tracking_gain']:.2f}")
    assert "r2_eef_x" in control["probe"]["held_out"]
    # The probe also reads the same frames after the codec (the state the denoiser can see at best).
    through_codec = control["probe"]["held_out_through_codec"]
    assert set(through_codec) == set(control["probe"]["held_out"]) and np.isfinite(through_codec["mae_eef_x"])
    assert report["lpips"] is None and "not computed" in report["lpips_fvd_note"]
    assert (tmp_path / "eval" / "report.json").exists() and (tmp_path / "eval" / "grid.png").exists()
    assert list((tmp_path / "eval" / "videos").glob("episode-*.mp4"))


def test_controllability_imagines_more_starts_than_one_batch(run):
    model = WorldModel.load(run / "model").prepare_for_inference()
    split = json.loads((run / "split.json").read_text())
    datasets = open_datasets(split["datasets"], model.config.cameras)
    episodes = [load_episode(datasets, (0, i), model.config.cameras, model.config.image_size) for i in range(3)]
    cfg = WorldModelEvalConfig(batch_size=2, control_starts=3, probe_steps=5, probe_frames=60)
    control = measure_controllability(model, datasets, episodes, [], cfg)
    assert control["starts"] == 3  # two batches, 2 + 1
    assert all(len(row["mean_displacement_m"]) == 3 for row in control["per_command"].values())
    assert all(np.isfinite(t["contrast_m"]) for t in control["per_axis"].values())
    with pytest.raises(ConfigError, match="control_starts"):
        make_config(WorldModelEvalConfig, "tiny", ["control_starts=0"])


def test_whole_episode_outcomes_separate_reward_errors_from_world_model_errors(run):
    model = WorldModel.load(run / "model").prepare_for_inference()
    split = json.loads((run / "split.json").read_text())
    datasets = open_datasets(split["datasets"], model.config.cameras)
    episodes = [load_episode(datasets, (0, i), model.config.cameras, model.config.image_size) for i in range(3)]
    assert [e.success for e in episodes] == [True, False, True]
    scored = []

    def marker(frames, task):  # the synthetic scene's success marker: a green square in the corner
        scored.append(frames)
        patch = frames["agentview"][:, 1:9, 1:9].astype(np.float64)
        return np.clip((patch[..., 1] - patch[..., 0]).mean(axis=(1, 2)) / 150, 0, 1)

    out = episode_outcomes(model, episodes, marker, threshold=0.5)
    assert out["episodes"] == 3 and out["successes"] == 2
    # On the recorded frames the scorer is right; the 2-step model draws no marker.
    assert out["real_frames_success_given_success"] == 1.0 and out["real_frames_success_given_failure"] == 0.0
    assert out["imagined_success_given_success"] == 0.0 and out["agreement"] == pytest.approx(1 / 3)
    # Scored per episode: first the imagined frames after o_0 (not the recorded ones), then the recorded ones.
    imagined, real = scored[0]["agentview"], scored[1]["agentview"]
    assert len(imagined) == len(episodes[0]) - 1 and np.array_equal(real, episodes[0].frames["agentview"][1:])
    assert not np.array_equal(imagined, real)

    def always(frames, task):
        return np.ones(len(frames["agentview"]))

    everything = episode_outcomes(model, episodes, always, threshold=0.5)
    assert everything["imagined_success_given_failure"] == 1.0 and everything["agreement"] == pytest.approx(2 / 3)
    only_failures = episode_outcomes(model, episodes[1:2], always, threshold=0.5)
    assert only_failures["imagined_success_given_success"] is None  # no successes to condition on


def test_the_cli_uses_the_runs_held_out_episodes_and_a_saved_reward_model(tmp_path, run, capsys):
    SuccessClassifier(RewardModelConfig(image_size=32, tasks=TASKS)).save(tmp_path / "rm")
    parser = build_parser({COMMAND.name: COMMAND})
    args: argparse.Namespace = parser.parse_args(
        [COMMAND.name, "--model", str(run), "--out", str(tmp_path / "e"), "--reward-model", str(tmp_path / "rm"),
         "--set", "controllability=false", "--set", "horizons=[8]"])
    assert COMMAND.run(args) == 0
    out = capsys.readouterr().out
    assert "horizon    8: PSNR" in out and "reward agreement" in out
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    split = json.loads((run / "split.json").read_text())
    assert report["episodes"] == split["val"]
    assert 0 <= report["reward_agreement"]["label_agreement"] <= 1
    assert (tmp_path / "e" / "grid.png").exists() and list((tmp_path / "e" / "videos").glob("*.mp4"))
    assert report["action_guidance"] == 1.0  # the model's own: none
    guided = parser.parse_args([COMMAND.name, "--model", str(run), "--out", str(tmp_path / "g"), "--set",
                                "controllability=false", "--set", "horizons=[8]", "--set", "action_guidance=2.5"])
    assert COMMAND.run(guided) == 0
    assert json.loads((tmp_path / "g" / "report.json").read_text())["action_guidance"] == 2.5


def test_a_bad_model_directory_is_one_clear_line(tmp_path):
    (tmp_path / "wm").mkdir()
    (tmp_path / "wm" / "config.json").write_text("{not json")
    done = subprocess.run(wovr_argv("eval-wm", "--model", str(tmp_path / "wm"), "--data", str(tmp_path),
                                    "--out", str(tmp_path / "e")), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "config.json" in done.stderr and "Traceback" not in done.stderr
