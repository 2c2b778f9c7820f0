"""A writer killed with SIGKILL loses only its open episode; the dataset stays readable and appendable."""

from __future__ import annotations

import logging
import os
import signal
import time

import numpy as np
from data_helpers import closest_frame, episode_arrays, python_subprocess, record_episode, wait_for_line

from wovr_core.data import EpisodeDataset, EpisodeWriter, WriterConfig, validate_dataset

WRITE_THREE_THEN_HANG = """
import sys, time
from data_helpers import record_episode
from wovr_core.data import EpisodeWriter, WriterConfig

writer = EpisodeWriter(sys.argv[1], fps=10, cameras={"agentview": (64, 64)},
                       config=WriterConfig(episodes_per_file=2))
for i in range(3):
    record_episode(writer, i, 20 + i)
    writer.end_episode()
record_episode(writer, 3, 15)          # the 4th episode: frames encoded, never committed
print("IN_EPISODE", flush=True)
time.sleep(120)
"""

WRITE_FOREVER = """
import sys
from data_helpers import record_episode
from wovr_core.data import EpisodeWriter, WriterConfig

writer = EpisodeWriter(sys.argv[1], fps=10, cameras={"agentview": (32, 32), "wrist": (32, 32)},
                       config=WriterConfig(episodes_per_file=3))
print("OPEN", flush=True)
while True:
    i = writer.num_episodes
    record_episode(writer, i, 8)
    writer.end_episode()
    print(f"COMMITTED {i}", flush=True)
"""


def _assert_episodes_intact(root, n_expected_min: int, length=None) -> int:
    ds = EpisodeDataset(root)
    assert len(ds) >= n_expected_min
    for meta in ds.episodes:
        ep = ds.episode(meta.episode_index)
        actions, states = episode_arrays(meta.episode_index, len(ep))
        if length is not None:
            assert len(ep) == length
        np.testing.assert_array_equal(ep.actions, actions)
        np.testing.assert_array_equal(ep.states, states)
        shape = ds.info.cameras["agentview"]
        for t in (0, len(ep) - 1):
            assert closest_frame(ep.frame(t, "agentview"), meta.episode_index, 0, shape, t) == t
    report = validate_dataset(root, decode_all=True)
    assert report.ok, report.summary()
    return len(ds)


def test_sigkill_mid_episode_keeps_committed_episodes_and_writer_resumes(tmp_path, caplog):
    root = tmp_path / "ds"
    proc = python_subprocess(WRITE_THREE_THEN_HANG, str(root))
    try:
        wait_for_line(proc, "IN_EPISODE")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.communicate()
    assert any((root / ".staging").iterdir()), "the killed writer should have left its open episode staged"

    assert _assert_episodes_intact(root, 3) == 3
    with caplog.at_level(logging.WARNING):
        writer = EpisodeWriter(root)
    assert "stale lock" in caplog.text
    assert "discarding a partial episode" in caplog.text and "pick up the bowl" in caplog.text
    assert not any((root / ".staging").iterdir())
    with writer:
        assert writer.num_episodes == 3
        record_episode(writer, 3, 11)
        assert writer.end_episode() == 3
    assert _assert_episodes_intact(root, 4) == 4
    assert len(EpisodeDataset(root).episode(3)) == 11


def test_sigkill_at_random_moments_never_corrupts_committed_episodes(tmp_path):
    """Kills land anywhere: mid-frame, mid-remux, between file renames and the index commit."""
    root = tmp_path / "ds"
    rng = np.random.default_rng(1)
    committed = 0
    for _ in range(4):
        proc = python_subprocess(WRITE_FOREVER, str(root))
        try:
            wait_for_line(proc, "OPEN")
            time.sleep(float(rng.uniform(0.2, 1.2)))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            out, err = proc.communicate()
        finally:
            proc.kill()
        assert "Traceback" not in err, err
        printed = [int(line.split()[1]) + 1 for line in out.splitlines() if line.startswith("COMMITTED")]
        seen = _assert_episodes_intact(root, max(printed, default=committed), length=8)
        # at most one commit can land between its index write and the print
        assert seen <= max(printed, default=committed) + 1
        committed = seen
    assert committed >= 1
    # The interrupted commits left nothing that stops a normal writer.
    with EpisodeWriter(root, config=WriterConfig(update_stats_on_close=False)) as writer:
        record_episode(writer, writer.num_episodes, 8)
        writer.end_episode()
    assert _assert_episodes_intact(root, committed + 1, length=8) == committed + 1


def test_leftover_temp_files_are_cleaned_on_open(tmp_path):
    root = tmp_path / "ds"
    with EpisodeWriter(root, fps=10, cameras={"agentview": (32, 32)}) as writer:
        record_episode(writer, 0, 6)
        writer.end_episode()
    junk = [root / "data/chunk-000/.file-000.parquet.tmp-99999",
            root / "videos/agentview/chunk-000/.file-000.mp4.tmp-99999", root / "meta/.info.json.tmp-99999"]
    for path in junk:
        path.write_bytes(b"half written")
    with EpisodeWriter(root) as writer:
        assert writer.num_episodes == 1
    assert not any(path.exists() for path in junk)
    assert validate_dataset(root).ok
