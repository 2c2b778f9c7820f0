"""Reward model: labels from episode outcomes, metrics, the classifier's contract and checkpoint files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from wm_helpers import SUCCESS_TAIL, TASKS, render, write_synthetic_dataset

from wovr_core.data import EpisodeDataset
from wovr_core.errors import DataError
from wovr_core.reward.config import RewardModelConfig
from wovr_core.reward.data import frame_labels, frames_to_keep, split_episodes
from wovr_core.reward.metrics import binary_metrics, calibration_curve, episode_metrics
from wovr_core.reward.model import SuccessClassifier


def _tiny_config(**kw) -> RewardModelConfig:
    return RewardModelConfig(image_size=32, tasks=TASKS, **kw)


def test_labels_come_from_the_per_frame_predicate_when_recorded(tmp_path):
    write_synthetic_dataset(tmp_path / "a", n_episodes=2, length=20, per_frame_success=True)
    write_synthetic_dataset(tmp_path / "b", n_episodes=2, length=20)
    with_column, without = EpisodeDataset(tmp_path / "a"), EpisodeDataset(tmp_path / "b")
    for ds in (with_column, without):
        success = frame_labels(ds.episode(0), "success", SUCCESS_TAIL)
        failure = frame_labels(ds.episode(1), "success", SUCCESS_TAIL)
        assert success.tolist() == [False] * (20 - SUCCESS_TAIL) + [True] * SUCCESS_TAIL
        assert not failure.any()


def test_training_frames_keep_the_near_misses_and_every_frame_of_a_failure():
    success = np.zeros(100, bool)
    success[-6:] = True
    keep = frames_to_keep(success, n_negatives=10, hard=5)
    assert set(range(89, 100)) <= set(keep) and len(keep) == 6 + 5 + 10  # positives, the 5 before, 10 spread
    assert frames_to_keep(np.zeros(50, bool), n_negatives=10, hard=5).tolist() == list(range(50))


def test_the_held_out_split_contains_successes_and_failures(tmp_path):
    write_synthetic_dataset(tmp_path / "ds", n_episodes=8, length=12)
    ds = EpisodeDataset(tmp_path / "ds")
    train, val = split_episodes([ds], 0.5, seed=0)
    assert set(train).isdisjoint(val)
    assert {ds.meta(i).success for _, i in val} == {True, False}
    with pytest.raises(DataError, match="held-out"):
        split_episodes([ds.select([0])], 0.5, seed=0)


def test_binary_metrics_and_calibration():
    labels = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    probs = np.array([0.9, 0.4, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    m = binary_metrics(probs, labels)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 1, 1, 7)
    assert m["accuracy"] == 0.8 and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 7 / 8) / 2)
    perfect = calibration_curve(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0, 0, 1, 1]), bins=4)
    assert perfect["ece"] == 0 and sum(b["count"] for b in perfect["bins"]) == 4
    bad = calibration_curve(np.full(4, 0.9), np.array([0, 0, 0, 1]), bins=10)
    assert bad["ece"] == pytest.approx(0.65)
    ep = episode_metrics([(np.array([0.1, 0.95]), np.array([False, True]), True),
                          (np.array([0.2, 0.6]), np.array([False, False]), False)], 0.5, 0.9)
    assert ep["episode_agreement"] == 0.5 and ep["mean_abs_done_offset_frames"] == 0


def test_the_classifier_scores_frames_per_task_and_round_trips(tmp_path):
    model = SuccessClassifier(_tiny_config())
    with torch.no_grad():
        model.logit_offset.fill_(-2.0)  # what training sets: success frames are rarer than in its batches
    pos = np.array([16.0, 16.0])
    views = [render(pos, 32, s, 0.0) for s in (False, True)]
    frames = {cam: np.stack([v[cam] for v in views]) for cam in ("agentview", "wrist")}
    p = model.success_probability(frames, TASKS[0])
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))
    with torch.no_grad():
        balanced = torch.sigmoid(model.eval().balanced_logits(model.to_images(frames), model.task_indices(TASKS[0], 2)))
    np.testing.assert_allclose(p, torch.sigmoid(torch.logit(balanced) - 2.0).numpy(), rtol=1e-4)
    q = model.success_probability(frames, [TASKS[0], TASKS[1]])
    assert q[0] == pytest.approx(p[0]) and q[1] != pytest.approx(p[1])  # the task changes the prediction
    model.save(tmp_path / "rm")
    loaded = SuccessClassifier.load(tmp_path / "rm")
    np.testing.assert_allclose(loaded.success_probability(frames, TASKS[0]), p, rtol=1e-5)
    with pytest.raises(ValueError, match="not seen in training"):
        model.success_probability(frames, "stack the blocks")
    with pytest.raises(ValueError, match="missing camera"):
        model.success_probability({"agentview": frames["agentview"]}, TASKS[0])
    (tmp_path / "rm" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(DataError, match="model.safetensors"):
        SuccessClassifier.load(tmp_path / "rm")
    (tmp_path / "rm" / "config.json").write_text("{")
    with pytest.raises(DataError, match="config.json"):
        SuccessClassifier.load(tmp_path / "rm")
