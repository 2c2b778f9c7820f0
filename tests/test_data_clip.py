"""Random access: frames, clips for world-model training ([o_0] + T frames + aligned actions)."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import closest_frame, write_dataset

from wovr_core.data import EpisodeDataset
from wovr_core.types import DUMMY_ACTION

CAMERAS = {"agentview": (64, 64), "wrist": (32, 48)}
LENGTHS = [40, 33, 47]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips") / "ds"
    write_dataset(root, LENGTHS, CAMERAS, episodes_per_file=2)  # episodes 0+1 share a file: offsets matter
    with EpisodeDataset(root) as ds:
        yield ds


def test_clip_shapes_and_first_frame_anchor(dataset):
    clip = dataset.clip(1, 9, 12)
    assert clip.episode_index == 1 and clip.start == 9 and clip.length == 12
    assert clip.frames["agentview"].shape == (12, 64, 64, 3) and clip.frames["wrist"].shape == (12, 32, 48, 3)
    assert clip.actions.shape == (12, 7) and clip.states.shape == (12, 8)
    assert clip.first_frame["wrist"].shape == (32, 48, 3)
    assert clip.anchored("agentview").shape == (13, 64, 64, 3)
    np.testing.assert_array_equal(clip.first_frame["agentview"], dataset.frame(1, 0, "agentview"))
    assert clip.task == dataset.meta(1).task
    only = dataset.clip(1, 9, 12, cameras=["wrist"], with_first_frame=False)
    assert list(only.frames) == ["wrist"] and only.first_frame is None
    with pytest.raises(ValueError, match="with_first_frame"):
        only.anchored("wrist")


def test_clip_frames_actions_and_states_are_aligned(dataset):
    for episode, start in [(0, 0), (0, 28), (1, 0), (1, 21), (2, 17), (2, 35)]:
        clip = dataset.clip(episode, start, 12)
        t = start + np.arange(12)
        # action[t] LED TO o[t]: the t-th action carries t (see data_helpers.episode_arrays)
        expected_actions = t / 1000
        if start == 0:
            np.testing.assert_array_equal(clip.actions[0], DUMMY_ACTION)
            expected_actions = expected_actions[1:]
        np.testing.assert_allclose(clip.actions[-len(expected_actions):, 0], expected_actions, atol=1e-6)
        np.testing.assert_array_equal(clip.states[:, 0], episode * 1000 + t)
        for k in (0, 5, 11):
            for ci, (cam, shape) in enumerate(CAMERAS.items()):
                assert closest_frame(clip.frames[cam][k], episode, ci, shape, start + k) == start + k
        assert closest_frame(clip.first_frame["agentview"], episode, 0, CAMERAS["agentview"], 0) == 0


def test_random_access_matches_sequential_decoding(dataset):
    """Seeking (in any order, across episodes sharing a file) yields the very pixels of a full decode."""
    sequential = {e: dataset.episode(e).frames("agentview") for e in range(len(LENGTHS))}
    rng = np.random.default_rng(0)
    for _ in range(40):
        e = int(rng.integers(len(LENGTHS)))
        t = int(rng.integers(LENGTHS[e]))
        np.testing.assert_array_equal(dataset.frame(e, t, "agentview"), sequential[e][t])
    for e, start in [(2, 30), (0, 3), (1, 20), (1, 19), (0, 28)]:
        np.testing.assert_array_equal(dataset.clip(e, start, 12).frames["agentview"], sequential[e][start:start + 12])


def test_out_of_range_requests_fail_clearly(dataset):
    with pytest.raises(IndexError, match="outside episode 1"):
        dataset.clip(1, 25, 12)
    with pytest.raises(IndexError):
        dataset.frame(0, 40, "agentview")
    with pytest.raises(IndexError):
        dataset.clip(0, -1, 3)
    with pytest.raises(KeyError, match="camera"):
        dataset.frame(0, 0, "top")
    with pytest.raises(KeyError, match="episode 7"):
        dataset.clip(7, 0, 1)


def test_clip_starts_enumerates_valid_windows(dataset):
    starts = dataset.clip_starts(13)
    assert len(starts) == sum(n - 13 + 1 for n in LENGTHS)
    assert starts[0].tolist() == [0, 0] and starts[-1].tolist() == [2, 47 - 13]
    for e, s in starts[::17]:
        assert s + 13 <= LENGTHS[e]
    assert len(dataset.clip_starts(41)) == 47 - 41 + 1
    assert dataset.clip_starts(100).shape == (0, 2)
