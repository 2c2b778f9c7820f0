"""Keyframes for KIR: operator marks and mined keyframes read from a real recorded dataset, the mining rules
on hand-made curves, starts decoded from episodes, and the seeded sampler's share and source weights."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from rl_helpers import CAMERA, TASKS, DotScorer, dot_episode, render

from wovr_core.config import ConfigError, make_config
from wovr_core.data import EpisodeDataset, EpisodeWriter, WriterConfig
from wovr_core.rl.config import KeyframeConfig
from wovr_core.rl.keyframes import (
    KeyframeSampler,
    StartPoint,
    drop_peaks,
    grasp_frames,
    intervention_onsets,
    load_starts,
    mine_episode,
    mine_keyframes,
    operator_keyframes,
    stall_onset,
)
from wovr_core.rl.starts import starts_per_task
from wovr_core.types import DUMMY_ACTION

RIGHT = TASKS[0]


def _write(root, episodes):
    """episodes: (positions (L, 2), gripper (L,), source, success, keyframes, interventions) per episode."""
    with EpisodeWriter(root, fps=10, cameras={CAMERA: (16, 16)},
                       config=WriterConfig(durable=False, update_stats_on_close=False)) as writer:
        for positions, gripper, source, success, keyframes, interventions in episodes:
            frames, actions = dot_episode(positions, gripper)
            writer.start_episode(RIGHT, source=source, success=success, success_source="sim_predicate")
            for t in range(len(positions)):
                action = None if t == 0 else actions[t]
                writer.add_frame({CAMERA: frames[CAMERA][t]}, np.zeros(8, np.float32), action,
                                 is_keyframe=t in keyframes, is_intervention=t in interventions)
            writer.end_episode()


def _line(x0, x1, n):
    return np.stack([np.linspace(x0, x1, n), np.full(n, 0.5)], 1)


def test_grasps_interventions_drops_and_stalls_on_hand_made_signals():
    gripper = np.array([-1, -1, 1, 1, -1, -1, 1, 1], np.float32)
    actions = np.zeros((8, 7), np.float32)
    actions[:, 6] = gripper
    # action[2] closes -> decided on o[1]; action[6] closes -> decided on o[5].
    assert grasp_frames(actions).tolist() == [1, 5]
    assert intervention_onsets(np.array([0, 0, 1, 1, 0, 1, 1, 0], bool)).tolist() == [2, 5]
    # Rises to 0.8 at t = 3, falls to 0.2 (one long fall), recovers to 0.7 at t = 9, falls again.
    probs = np.array([0.1, 0.3, 0.6, 0.8, 0.6, 0.4, 0.2, 0.1, 0.5, 0.7, 0.3])
    assert drop_peaks(probs, 0.3).tolist() == [3, 9]
    assert drop_peaks(np.linspace(0, 1, 10), 0.3).tolist() == []
    cfg = KeyframeConfig(stall_frames=5, stall_tolerance=0.05, stall_floor=0.1)
    # Rises to 0.3 by t = 3 and stays: the plateau starts at t = 3. Below the floor nothing counts as a stall.
    assert stall_onset(np.array([0.0, 0.1, 0.2, 0.3, 0.31, 0.3, 0.32, 0.3, 0.3, 0.3]), cfg) == 3
    assert stall_onset(np.full(20, 0.05), cfg) is None
    assert stall_onset(np.linspace(0.1, 0.45, 20), cfg) is None


def test_mining_places_keyframes_before_the_events():
    cfg = KeyframeConfig(lead_frames=2, min_gap_frames=3, stall_frames=5)
    actions = np.zeros((20, 7), np.float32)
    actions[:, 6] = -1
    actions[12:, 6] = 1  # closes: decided on o[11]
    # Rises to 0.45 at t = 7 (never a success), falls to 0.1, then stays: drop and closest approach at 7,
    # the running max stops growing at 7 (stall, no lead).
    probs = np.concatenate([np.linspace(0.0, 0.45, 8), np.linspace(0.4, 0.1, 6), np.full(6, 0.1)])
    interventions = np.zeros(20, bool)
    interventions[15:] = True
    points = mine_episode(3, actions, success=False, probs=probs, is_intervention=interventions, config=cfg)
    by_source = {p.source: p.frame_index for p in points}
    assert by_source == {"grasp": 11, "intervention": 13, "drop": 5, "failure": 5, "stall": 7}
    assert all(p.episode_index == 3 for p in points)
    # A successful episode has no failure or stall keyframes; without probabilities a failure is placed
    # lead_frames before the end.
    assert {p.source for p in mine_episode(0, actions, success=True, probs=probs, config=cfg)} == {"grasp", "drop"}
    assert StartPoint(0, 17, "failure") in mine_episode(0, actions, success=False, config=cfg)
    with pytest.raises(ValueError, match="NaN"):
        mine_episode(0, actions, success=False, probs=np.full(20, np.nan), config=cfg)


def test_operator_and_mined_keyframes_from_a_recorded_dataset(tmp_path):
    gripper = np.where(np.arange(30) >= 20, 1.0, -1.0).astype(np.float32)
    _write(tmp_path, [
        (_line(0.3, 0.8, 30), None, "teleop", True, {12, 25}, set()),
        # A policy rollout that gets close (x = 0.78 at t = 15), then drifts back: failed.
        (np.concatenate([_line(0.3, 0.78, 16), _line(0.76, 0.4, 14)]), gripper, "policy", False, set(), {24}),
    ])
    with EpisodeDataset(tmp_path) as ds:
        assert operator_keyframes(ds) == [StartPoint(0, 12, "operator"), StartPoint(0, 25, "operator")]
        cfg = KeyframeConfig(lead_frames=4)
        points = mine_keyframes(ds, cfg, scorer=DotScorer())
        by_source = {p.source: p.frame_index for p in points}
        assert all(p.episode_index == 1 for p in points)  # teleop episodes are not mined
        assert by_source["grasp"] == 19 and by_source["intervention"] == 20
        assert by_source["failure"] == 15 - 4 and by_source["drop"] == 15 - 4
        # The keyframe start decoded from the dataset: o_0 + frames 8..11, actions exact.
        start = load_starts(ds, [StartPoint(1, 11, "failure")], memory_frames=4)[0]
        frames, actions = dot_episode(np.concatenate([_line(0.3, 0.78, 16), _line(0.76, 0.4, 14)]), gripper)
        assert start.source == "failure" and start.frame_index == 11 and start.task == RIGHT
        assert np.abs(start.frames[CAMERA].astype(int) - frames[CAMERA][[0, 8, 9, 10, 11]]).mean() < 6  # H.264
        np.testing.assert_allclose(start.actions, np.concatenate([DUMMY_ACTION[None], actions[8:12]]), atol=1e-6)
        assert load_starts(ds, [StartPoint(0, 0)])[0].context_length == 1


def test_starts_per_task_pick_episodes_by_task_and_outcome_in_index_order(tmp_path):
    left = TASKS[1]
    episodes = [(RIGHT, True), (left, False), (RIGHT, False), (RIGHT, True), (left, True)]
    with EpisodeWriter(tmp_path, fps=10, cameras={CAMERA: (16, 16)},
                       config=WriterConfig(durable=False, update_stats_on_close=False)) as writer:
        for index, (task, success) in enumerate(episodes):
            frames, actions = dot_episode(_line(0.1 + 0.1 * index, 0.5, 12))
            writer.start_episode(task, source="policy", success=success, success_source="sim_predicate")
            for t in range(12):
                writer.add_frame({CAMERA: frames[CAMERA][t]}, np.zeros(8, np.float32), None if t == 0 else actions[t])
            writer.end_episode()
    with EpisodeDataset(tmp_path) as ds:
        firsts = starts_per_task(ds, 2, [CAMERA], image_size=32)
        # Sorted by task, each task's first episodes in index order, from their first frame, resized.
        assert [(s.task, s.episode_index, s.frame_index) for s in firsts] == [
            (left, 1, 0), (left, 4, 0), (RIGHT, 0, 0), (RIGHT, 2, 0)]
        assert all(s.frames[CAMERA].shape == (1, 32, 32, 3) for s in firsts)
        ends = starts_per_task(ds, 1, [CAMERA], image_size=16, frames_before_end=3, success=True)
        assert [(s.task, s.episode_index, s.frame_index, s.context_length) for s in ends] == [
            (left, 4, 8, 5), (RIGHT, 0, 8, 5)]
        assert [s.episode_index for s in starts_per_task(ds, 5, [CAMERA], 16, success=False)] == [1, 2]
        with pytest.raises(ValueError, match="per_task"):
            starts_per_task(ds, 0, [CAMERA], 16)


def test_the_sampler_keeps_the_kir_share_and_the_source_weights():
    keyframes = [StartPoint(e, 10 + e, "failure") for e in range(3)] + [StartPoint(5, 3, "grasp")]
    cfg = KeyframeConfig(kir_share=0.25, source_weights={"failure": 3.0, "grasp": 1.0, "operator": 5.0}, seed=7)
    sampler = KeyframeSampler(range(10), keyframes, cfg)
    # "operator" has weight but no keyframes: it is skipped and the others renormalized.
    assert sampler.source_probabilities["failure"] == pytest.approx(0.75)
    assert sampler.source_probabilities["operator"] == 0
    draws = [sampler.sample(8) for _ in range(400)]
    assert all(sum(p.source != "episode" for p in d) == 2 for d in draws)  # round(0.25 * 8), every draw
    counts = Counter(p.source for d in draws for p in d if p.source != "episode")
    assert counts["failure"] / (counts["failure"] + counts["grasp"]) == pytest.approx(0.75, abs=0.04)
    assert {p.frame_index for d in draws for p in d if p.source == "episode"} == {0}
    # Seeded: the same config draws the same starts.
    first, second = (KeyframeSampler(range(10), keyframes, cfg).sample(8) for _ in range(2))
    assert first == second
    # Without keyframes every group starts from an episode; a zero share never uses keyframes.
    assert all(p.source == "episode" for p in KeyframeSampler(range(3), [], cfg).sample(6))
    zero = KeyframeConfig(kir_share=0.0)
    assert all(p.source == "episode" for p in KeyframeSampler(range(3), keyframes, zero).sample(6))


def test_sampler_and_config_errors():
    with pytest.raises(ConfigError, match="unknown sources"):
        make_config(KeyframeConfig, "tiny", ["source_weights={failures: 1.0}"])
    with pytest.raises(ConfigError, match="kir_share"):
        make_config(KeyframeConfig, "tiny", {"kir_share": 1.5})
    with pytest.raises(ValueError, match="unknown sources"):
        KeyframeSampler([0], [StartPoint(0, 1, "magic")])
    with pytest.raises(ValueError, match="no episodes and no keyframes"):
        KeyframeSampler([], []).sample(2)
    # Only keyframes and no episodes: every group starts from a keyframe.
    assert all(p.source == "grasp" for p in KeyframeSampler([], [StartPoint(0, 4, "grasp")]).sample(3))


def test_rendered_frames_are_scored_as_expected():
    # Sanity of the helper the dataset test relies on: the scorer finds the dot the writer stored.
    p = DotScorer().success_probability({CAMERA: render(np.array([[0.78, 0.5], [0.3, 0.5]]))}, RIGHT)
    assert p[0] > 0.5 > p[1]
