"""Episodes written by EpisodeWriter read back exactly (arrays) or within codec tolerance (frames)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from data_helpers import image_for, record_episode, synthetic_image, write_dataset

from wovr_core.data import EpisodeDataset, EpisodeWriter, WriterConfig, psnr, validate_dataset
from wovr_core.errors import DataError
from wovr_core.types import DUMMY_ACTION, FeatureSpec

CAMERAS = {"agentview": (128, 128), "wrist": (64, 96)}


def test_round_trip_is_bit_exact_for_arrays_and_above_30db_for_frames(tmp_path):
    root = tmp_path / "ds"
    lengths = [23, 31, 17, 26, 20]
    recorded = write_dataset(root, lengths, CAMERAS, episodes_per_file=2, keep_images=True)
    ds = EpisodeDataset(root)
    assert len(ds) == 5 and ds.num_frames == sum(lengths)
    assert ds.tasks == ["pick up the bowl", "open the drawer"]
    psnrs = []
    for i, rec in enumerate(recorded):
        ep = ds.episode(i)
        assert len(ep) == lengths[i] and ep.task == rec.task
        np.testing.assert_array_equal(ep.actions, rec.actions)
        np.testing.assert_array_equal(ep.states, rec.states)
        np.testing.assert_array_equal(ep.actions[0], DUMMY_ACTION)
        np.testing.assert_array_equal(ep.is_intervention, rec.interventions)
        assert ep.keyframes.tolist() == rec.keyframes
        np.testing.assert_allclose(ep.timestamps, np.arange(lengths[i]) / 10)
        for cam in CAMERAS:
            frames = ep.frames(cam)
            assert frames.shape == (lengths[i], *CAMERAS[cam], 3) and frames.dtype == np.uint8
            psnrs += [psnr(a, b) for a, b in zip(frames, rec.images[cam], strict=True)]
        meta = ep.meta
        assert (meta.source, meta.success) == (rec.source, rec.success)
        assert meta.success_source == ("none" if rec.success is None else "operator")
        assert meta.calibration_id == "cal-001" and meta.extra == {"operator": "ana", "n": i}
        assert meta.num_keyframes == len(rec.keyframes)
        assert meta.dataset_from_index == sum(lengths[:i])
        np.testing.assert_array_equal(ep.column("index"), sum(lengths[:i]) + np.arange(lengths[i]))
    print(f"\nframe PSNR over {len(psnrs)} frames: mean {np.mean(psnrs):.2f} dB, min {np.min(psnrs):.2f} dB")
    assert min(psnrs) > 30.0
    # episodes_per_file=2: five episodes in three files, one mp4 per camera per file
    assert sorted(p.name for p in (root / "data/chunk-000").iterdir()) == [
        "file-000.parquet", "file-001.parquet", "file-002.parquet"]
    for cam in CAMERAS:
        assert len(list((root / "videos" / cam / "chunk-000").glob("file-*.mp4"))) == 3
    assert validate_dataset(root).ok


def test_info_json_describes_features_and_layout(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, [5], CAMERAS, extra_features={"joint_pos": 7})
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    assert info["total_episodes"] == 1 and info["total_frames"] == 5 and info["total_tasks"] == 1
    assert info["cameras"] == {"agentview": {"height": 128, "width": 128}, "wrist": {"height": 64, "width": 96}}
    features = {name: FeatureSpec.from_dict(d) for name, d in info["features"].items()}
    assert features["action"].shape == (7,) and features["action"].kind == "action"
    assert features["observation.state"].shape == (8,) and features["observation.state"].dtype == "float32"
    assert features["observation.images.wrist"].shape == (64, 96, 3)
    assert features["joint_pos"].shape == (7,)
    assert {"timestamp.agentview", "timestamp.wrist", "is_keyframe", "is_intervention", "task_index"} <= set(features)


def test_reopening_appends_to_the_last_file_and_keeps_earlier_episodes(tmp_path):
    root = tmp_path / "ds"
    first = write_dataset(root, [12], episodes_per_file=3)
    second = write_dataset(root, [9, 14], episodes_per_file=3)
    ds = EpisodeDataset(root)
    assert len(ds) == 3
    assert [ep.data.file.file_index for ep in ds.episodes] == [0, 0, 0]
    assert [ep.videos["agentview"].start for ep in ds.episodes] == [0, 12, 21]
    for i, rec in enumerate(first + second):
        np.testing.assert_array_equal(ds.episode(i).actions, rec.actions)
        frame = ds.frame(i, 5, "agentview")
        assert psnr(frame, image_for(i, 5, 0, (64, 64))) > 30
    assert validate_dataset(root).ok


def test_timestamps_are_relative_to_the_first_step(tmp_path):
    root = tmp_path / "ds"
    with EpisodeWriter(root, fps=10, cameras={"cam": (32, 32)}) as writer:
        writer.start_episode("wave", source="policy")
        t0 = 1_700_000_000.0
        for t in range(4):
            step = t0 + 0.1 * t + 0.001 * t * t
            writer.add_frame({"cam": synthetic_image(t, 32, 32)}, np.zeros(8), None if t == 0 else np.zeros(7),
                             timestamps={"cam": step - 0.03}, t=step, latency_ms=3.0 + t)
        writer.end_episode()
    ep = EpisodeDataset(root).episode(0)
    expected = 0.1 * np.arange(4) + 0.001 * np.arange(4) ** 2
    np.testing.assert_allclose(ep.timestamps, expected, atol=1e-6)  # t0 ~ 1.7e9 s: float64 resolution
    np.testing.assert_allclose(ep.camera_timestamps["cam"], expected - 0.03, atol=1e-6)
    assert ep.meta.t0 == t0
    np.testing.assert_array_equal(ep.extras["latency_ms"], [3.0, 4.0, 5.0, 6.0])


def test_bad_frames_are_refused_and_the_episode_goes_on(tmp_path):
    root = tmp_path / "ds"
    good = synthetic_image(0, 32, 32)
    with EpisodeWriter(root, fps=10, cameras={"cam": (32, 32)}, extra_features={"joint_pos": 7}) as writer:
        writer.start_episode("stack", source="teleop")
        with pytest.raises(ValueError, match="DUMMY_ACTION"):
            writer.add_frame({"cam": good}, np.zeros(8), np.ones(7))
        writer.add_frame({"cam": good}, np.zeros(8), None, joint_pos=np.zeros(7))
        bad_calls = [
            (({"other": good}, np.zeros(8), np.zeros(7)), {}, "cameras"),
            (({"cam": good[:16]}, np.zeros(8), np.zeros(7)), {}, "uint8"),
            (({"cam": good.astype(np.float32)}, np.zeros(8), np.zeros(7)), {}, "uint8"),
            (({"cam": good}, np.full(8, np.nan), np.zeros(7)), {}, "state"),
            (({"cam": good}, np.zeros(8), np.array([0, 0, np.inf, 0, 0, 0, 1.0])), {}, "action"),
            (({"cam": good}, np.zeros(8), None), {}, "required"),
            (({"cam": good}, np.zeros(8), np.zeros(7)), {"joint_pos": np.zeros(6)}, "shape"),
            (({"cam": good}, np.zeros(8), np.zeros(7)), {"joint_pose": np.zeros(7)}, "joint_pos"),
        ]
        for args, kwargs, message in bad_calls:
            with pytest.raises(ValueError, match=message):
                writer.add_frame(*args, **kwargs)
        assert writer.num_frames == 1
        writer.add_frame({"cam": good}, np.ones(8), np.zeros(7))  # joint_pos omitted -> NaN
        with pytest.raises(ValueError, match="success_source"):
            writer.set_success(True, "oprator")
        assert writer.end_episode() == 0
    ep = EpisodeDataset(root).episode(0)
    assert len(ep) == 2
    assert np.isnan(ep.extras["joint_pos"][1]).all() and not np.isnan(ep.extras["joint_pos"][0]).any()
    assert validate_dataset(root).ok


def test_discard_and_close_with_an_open_episode_keep_nothing(tmp_path, caplog):
    root = tmp_path / "ds"
    with EpisodeWriter(root, fps=10, cameras={"cam": (32, 32)}) as writer:
        record_episode(writer, 0, 5)
        writer.discard_episode()
        rec = record_episode(writer, 0, 6)
        assert writer.end_episode() == 0
        with caplog.at_level(logging.WARNING):
            record_episode(writer, 1, 4)
    assert "discarded" in caplog.text
    assert not list((root / ".staging").iterdir())
    ds = EpisodeDataset(root)
    assert len(ds) == 1
    np.testing.assert_array_equal(ds.episode(0).actions, rec.actions)


def test_filters_views_and_iter_frames(tmp_path):
    root = tmp_path / "ds"
    lengths = [6, 7, 8, 9, 10, 11]
    write_dataset(root, lengths)  # sources cycle teleop/scripted/policy; success True/False/None
    ds = EpisodeDataset(root)
    assert ds.filter(source="teleop").episode_indices == [0, 3]
    assert ds.filter(source=["scripted", "policy"]).episode_indices == [1, 2, 4, 5]
    assert ds.filter(success=True).episode_indices == [0, 3]
    assert ds.filter(success=None).episode_indices == [2, 5]
    assert ds.filter(task="open the drawer", success=False).episode_indices == [1]
    view = ds.filter(task="pick up the bowl")
    assert view.episode_indices == [0, 2, 4] and view.num_frames == 6 + 8 + 10
    with pytest.raises(ValueError, match="source"):
        ds.filter(source="teleoperation")
    with pytest.raises(KeyError):
        view.episode(1)
    samples = list(view.iter_frames(block=4))
    assert [(s.episode_index, s.frame_index) for s in samples] == [
        (e, t) for e in (0, 2, 4) for t in range(lengths[e])]
    for s in samples[::5]:
        assert s.state[0] == s.episode_index * 1000 + s.frame_index
        assert psnr(s.images["agentview"], image_for(s.episode_index, s.frame_index, 0, (64, 64))) > 30


def test_reopening_with_different_settings_is_refused(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, [3])
    with pytest.raises(DataError, match="fps"):
        EpisodeWriter(root, fps=15)
    with pytest.raises(DataError, match="cameras"):
        EpisodeWriter(root, cameras={"agentview": (32, 32)})
    with pytest.raises(ValueError, match="fps= and cameras="):
        EpisodeWriter(tmp_path / "new")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/todo.txt").write_text("buy milk")
    with pytest.raises(DataError, match="not empty"):
        EpisodeWriter(tmp_path / "notes", fps=10, cameras={"cam": (32, 32)})
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]
    with pytest.raises(ValueError, match="even"):
        EpisodeWriter(tmp_path / "odd", fps=10, cameras={"cam": (31, 32)})
    with EpisodeWriter(root) as writer:  # settings come from meta/info.json
        assert writer.num_episodes == 1 and writer.info.fps == 10


def test_a_reader_open_during_appends_keeps_a_consistent_snapshot(tmp_path):
    root = tmp_path / "ds"
    first = write_dataset(root, [15, 11], episodes_per_file=4)
    reader = EpisodeDataset(root)
    before = reader.episode(1).frames("agentview").copy()
    with EpisodeWriter(root) as writer:  # rewrites the very files the reader has open
        for i in (2, 3, 4):
            record_episode(writer, i, 9)
            writer.end_episode()
            np.testing.assert_array_equal(reader.episode(0).actions, first[0].actions)
            np.testing.assert_array_equal(reader.clip(1, 0, 11).frames["agentview"], before)
    assert len(reader) == 2 and len(EpisodeDataset(root)) == 5
    np.testing.assert_array_equal(EpisodeDataset(root).episode(1).frames("agentview"), before)


def test_success_labels_need_their_source(tmp_path):
    with EpisodeWriter(tmp_path / "ds", fps=10, cameras={"cam": (32, 32)}) as writer:
        with pytest.raises(ValueError, match="success_source"):
            writer.start_episode("task", "policy", success=True)
        with pytest.raises(ValueError, match="source"):
            writer.start_episode("task", "robot")
        writer.start_episode("task", "policy", success=False, success_source="reward_model")
        with pytest.raises(ValueError, match="needs its source"):
            writer.set_success(True, "none")
        writer.add_frame({"cam": synthetic_image(0, 32, 32)}, np.zeros(8))
        writer.end_episode()
    meta = EpisodeDataset(tmp_path / "ds").meta(0)
    assert (meta.success, meta.success_source, meta.source) == (False, "reward_model", "policy")


def test_empty_episode_cannot_be_committed(tmp_path):
    with EpisodeWriter(tmp_path / "ds", fps=10, cameras={"cam": (32, 32)},
                       config=WriterConfig(update_stats_on_close=False)) as writer:
        writer.start_episode("nothing", "teleop")
        with pytest.raises(ValueError, match="no frames"):
            writer.end_episode()
        with pytest.raises(RuntimeError, match="already open"):
            writer.start_episode("again", "teleop")
        writer.discard_episode()
        with pytest.raises(RuntimeError, match="start_episode"):
            writer.add_frame({}, np.zeros(8))
    assert len(EpisodeDataset(tmp_path / "ds")) == 0
