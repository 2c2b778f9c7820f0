"""World-model training data: windows and augmentations, episode splits, episodes read from real files."""

from __future__ import annotations

import numpy as np
import pytest
from wm_helpers import CAMERAS, write_synthetic_dataset

from wovr_core.data import EpisodeDataset
from wovr_core.types import DUMMY_ACTION
from wovr_core.world_model.data import ClipSampler, EpisodePool, load_episode, split_episodes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("wm_data") / "ds"
    write_synthetic_dataset(root, n_episodes=6, length=30)
    return EpisodeDataset(root)


def _actions(n: int = 30) -> np.ndarray:
    a = np.random.default_rng(0).uniform(-1, 1, (n, 7)).astype(np.float32)
    a[:, 0] = np.arange(n) / 100  # encodes the frame index, so misalignment shows
    a[0] = DUMMY_ACTION
    return a


def test_a_window_is_the_first_frame_then_consecutive_frames_with_their_actions():
    sampler = ClipSampler(4, 8)
    actions = _actions()
    spec = sampler.clip((0, 0), actions, start=10)
    assert spec.frames.tolist() == [0] + list(range(10, 22))
    np.testing.assert_array_equal(spec.actions[0], DUMMY_ACTION)
    # actions[k] led to frame k: the window's action k is the episode's action at frame frames[k].
    np.testing.assert_array_equal(spec.actions[1:], actions[10:22])


def test_static_and_reset_windows_follow_the_reference_augmentations():
    sampler = ClipSampler(4, 8)
    actions = _actions()
    static = sampler.static((0, 0), actions, t=7)
    assert static.frames.tolist() == [0] + [7] * 12
    assert np.all(static.actions[1:, :6] == 0) and np.all(static.actions[1:, 6] == actions[7, 6])
    reset = sampler.reset((0, 0), actions)
    assert reset.frames.tolist() == [0] * 5 + list(range(1, 9))
    np.testing.assert_array_equal(reset.actions[:5], np.broadcast_to(DUMMY_ACTION, (5, 7)))
    np.testing.assert_array_equal(reset.actions[5:], actions[1:9])


def test_augmentations_are_sampled_at_their_rates_and_windows_stay_inside_the_episode():
    sampler = ClipSampler(4, 8, static_prob=0.05, reset_prob=0.05)
    rng = np.random.default_rng(0)
    actions = _actions()
    kinds = [sampler.sample(rng, (0, 0), actions) for _ in range(4000)]
    share = {k: np.mean([s.kind == k for s in kinds]) for k in ("static", "reset", "clip")}
    assert 0.035 < share["static"] < 0.065 and 0.035 < share["reset"] < 0.065
    assert all(s.frames.max() < len(actions) and len(s.frames) == 13 for s in kinds)


def test_the_split_holds_out_successes_and_failures_and_is_reproducible(dataset):
    train, val = split_episodes([dataset], val_fraction=0.34, seed=0)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(dataset)
    outcomes = {dataset.meta(i).success for _, i in val}
    assert outcomes == {True, False}
    assert split_episodes([dataset], 0.34, seed=0) == (train, val)


def test_episodes_load_from_the_dataset_files_and_the_pool_rotates_them(dataset):
    ep = load_episode([dataset], (0, 1), CAMERAS)
    assert ep.frames["wrist"].shape == (30, 32, 32, 3) and ep.actions.shape == (30, 7)
    np.testing.assert_array_equal(ep.actions[0], DUMMY_ACTION)
    np.testing.assert_array_equal(ep.frames["agentview"][7], dataset.frame(1, 7, "agentview"))
    keys = [(0, i) for i in range(len(dataset))]
    pool = EpisodePool([dataset], keys, CAMERAS, capacity=2, image_size=32, seed=0)
    seen = set(pool.loaded)
    for _ in range(10):
        pool.advance()
        assert len(pool.loaded) == 2
        seen |= set(pool.loaded)
    assert seen == set(keys)
    # The pool's content is a function of its position: a resumed run rebuilds the same pool.
    again = EpisodePool([dataset], keys, CAMERAS, capacity=2, image_size=32, seed=0, position=pool.position)
    assert [e.key for e in again.episodes()] == [e.key for e in pool.episodes()]


def test_a_corrupt_episode_is_left_out_of_the_pool(tmp_path):
    write_synthetic_dataset(tmp_path / "ds", n_episodes=8, length=20)  # episodes 4..7 share the second files
    video = next((tmp_path / "ds" / "videos" / "wrist").rglob("file-001.mp4"))
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    ds = EpisodeDataset(tmp_path / "ds")
    pool = EpisodePool([ds], [(0, i) for i in range(8)], CAMERAS, capacity=8, image_size=32)
    assert sorted(k for _, k in pool.loaded) == [0, 1, 2, 3]
