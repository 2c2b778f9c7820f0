"""Corrupt, truncated or missing files: a DataError naming the file, and the rest of the dataset still loads."""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_helpers import record_episode, write_dataset

from wovr_core.data import EpisodeDataset, EpisodeWriter, validate_dataset
from wovr_core.errors import DataError

LENGTHS = [12, 14, 16, 18]


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, LENGTHS, episodes_per_file=1)  # one file set per episode
    return root


def _data(root, i):
    return root / f"data/chunk-000/file-{i:03d}.parquet"


def _video(root, i):
    return root / f"videos/agentview/chunk-000/file-{i:03d}.mp4"


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _others_load(root, bad: int):
    ds = EpisodeDataset(root)
    for i in range(len(LENGTHS)):
        if i != bad:
            ep = ds.episode(i)
            assert ep.frames("agentview").shape[0] == LENGTHS[i]


def test_truncated_parquet_names_the_file_and_spares_other_episodes(root):
    _truncate(_data(root, 1))
    ds = EpisodeDataset(root)
    with pytest.raises(DataError, match=str(_data(root, 1))):
        ds.episode(1)
    with pytest.raises(DataError, match="file-001.parquet"):
        ds.clip(1, 0, 4)
    _others_load(root, bad=1)

    skipping = EpisodeDataset(root, on_error="skip")
    assert skipping.episode_indices == [0, 2, 3]
    assert "file-001.parquet" in skipping.bad_episodes[1]
    with pytest.raises(DataError, match="unreadable"):
        skipping.episode(1)

    report = validate_dataset(root)
    assert not report.ok and list(report.bad_episodes) == [1]
    assert "file-001.parquet" in report.bad_episodes[1][0]
    assert report.good_episodes == [0, 2, 3]


def test_truncated_mp4_names_the_file_and_spares_other_episodes(root):
    _truncate(_video(root, 2), keep=0.7)
    ds = EpisodeDataset(root)
    ds.episode(2)  # per-frame arrays still load: only the frames are gone
    with pytest.raises(DataError, match=str(_video(root, 2))):
        ds.frame(2, 3, "agentview")
    with pytest.raises(DataError, match="file-002.mp4"):
        ds.clip(2, 0, 12)
    _others_load(root, bad=2)

    skipping = EpisodeDataset(root, on_error="skip")
    assert skipping.episode_indices == [0, 1, 3]
    assert "file-002.mp4" in skipping.bad_episodes[2]
    assert [s.episode_index for s in skipping.iter_frames()][-1] == 3

    report = validate_dataset(root)
    assert list(report.bad_episodes) == [2] and "file-002.mp4" in report.bad_episodes[2][0]


def test_missing_files_name_the_file(root):
    _video(root, 0).unlink()
    _data(root, 3).unlink()
    ds = EpisodeDataset(root)
    with pytest.raises(DataError, match=f"{_video(root, 0)}: video file is missing"):
        ds.frame(0, 0, "agentview")
    with pytest.raises(DataError, match=f"{_data(root, 3)}: file is missing"):
        ds.episode(3)
    assert ds.episode(1).frames("agentview").shape[0] == LENGTHS[1]
    report = validate_dataset(root)
    assert sorted(report.bad_episodes) == [0, 3]


def test_iterating_in_skip_mode_passes_over_episodes_that_fail_late(root, caplog):
    # Rows that belong to another frame order: the file opens fine, the episode fails only when read.
    path = _data(root, 1)
    table = pq.read_table(path)
    shuffled = pa.array(np.roll(np.arange(LENGTHS[1]), 1))
    pq.write_table(table.set_column(table.schema.get_field_index("frame_index"), "frame_index", shuffled), path)
    with pytest.raises(DataError, match="file-001.parquet"):
        list(EpisodeDataset(root).iter_frames())
    lenient = EpisodeDataset(root, on_error="skip")
    assert lenient.episode_indices == [0, 1, 2, 3]  # the open-time check cannot see this
    with caplog.at_level(logging.WARNING):
        seen = [s.episode_index for s in lenient.iter_frames()]
    assert seen == [0] * 12 + [2] * 16 + [3] * 18
    assert "skipping episode 1" in caplog.text and "file-001.parquet" in lenient.bad_episodes[1]


def test_validate_finds_nan_and_inconsistent_rows(root):
    path = _data(root, 2)
    table = pq.read_table(path)
    states = np.array(table.column("observation.state").to_pylist(), dtype=np.float32)
    states[5, 3] = np.nan
    column = pa.FixedSizeListArray.from_arrays(pa.array(states.reshape(-1)), 8)
    pq.write_table(table.set_column(table.schema.get_field_index("observation.state"), "observation.state", column),
                   path)
    short = pq.read_table(_data(root, 3)).slice(0, 10)
    pq.write_table(short, _data(root, 3))
    report = validate_dataset(root)
    assert sorted(report.bad_episodes) == [2, 3]
    assert "NaN/inf in 'observation.state' at frames [5]" in report.bad_episodes[2][0]
    assert "file-003.parquet" in report.bad_episodes[3][0] and "10 rows" in report.bad_episodes[3][0]


def test_corrupt_metadata_is_a_data_error_naming_the_file(root):
    info = root / "meta/info.json"
    info.write_text(info.read_text()[:40])
    with pytest.raises(DataError, match=str(info)):
        EpisodeDataset(root)
    report = validate_dataset(root)
    assert not report.ok and str(info) in report.errors[0]

    stats = root / "meta/stats.json"
    stats.write_text(json.dumps({"action": {"mean": [0.0]}}))
    from wovr_core.data import NormStats

    with pytest.raises(DataError, match=str(stats)):
        NormStats.from_json(stats)


def test_writer_starts_a_new_file_when_the_last_one_is_damaged(tmp_path, caplog):
    root = tmp_path / "ds"
    write_dataset(root, [10], episodes_per_file=5)
    _truncate(_video(root, 0), keep=0.6)  # episode 0 is lost, but new episodes must still be recordable
    with caplog.at_level(logging.WARNING), EpisodeWriter(root) as writer:
        rec = record_episode(writer, 1, 9)
        assert writer.end_episode() == 1
    assert "starting a new file" in caplog.text
    ds = EpisodeDataset(root)
    assert ds.meta(1).data.file.file_index == 1
    np.testing.assert_array_equal(ds.episode(1).actions, rec.actions)
    assert ds.episode(1).frames("agentview").shape == (9, 64, 64, 3)
    assert list(validate_dataset(root).bad_episodes) == [0]
