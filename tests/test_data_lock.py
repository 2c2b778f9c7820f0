"""One writer per dataset: a live writer (any process) blocks others; a dead writer's lock is taken over."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from data_helpers import python_subprocess, record_episode, wait_for_line

from wovr_core.data import DatasetLock, EpisodeDataset, EpisodeWriter
from wovr_core.errors import DataError

HOLD_WRITER = """
import sys, time
from wovr_core.data import EpisodeWriter

writer = EpisodeWriter(sys.argv[1], fps=10, cameras={"agentview": (32, 32)})
print("LOCKED", flush=True)
sys.stdin.readline()
writer.close()
print("RELEASED", flush=True)
"""


def test_a_second_writer_in_another_process_is_refused(tmp_path):
    root = tmp_path / "ds"
    proc = python_subprocess(HOLD_WRITER, str(root), stdin=subprocess.PIPE)
    try:
        wait_for_line(proc, "LOCKED")
        with pytest.raises(DataError, match=rf"\.wovr\.lock: dataset is being written by another writer \(pid {proc.pid} "):
            EpisodeWriter(root)
        assert len(EpisodeDataset(root)) == 0  # readers are never blocked
        proc.stdin.write("\n")
        proc.stdin.flush()
        wait_for_line(proc, "RELEASED")
    finally:
        proc.kill()
        proc.communicate()
    with EpisodeWriter(root) as writer:  # released cleanly: taken without a warning
        record_episode(writer, 0, 3)
        writer.end_episode()


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    root = tmp_path / "ds"
    with EpisodeWriter(root, fps=10, cameras={"agentview": (32, 32)}):
        with pytest.raises(DataError, match=r"pid \d+"):
            EpisodeWriter(root)
    with EpisodeWriter(root):
        pass


def test_a_stale_lock_from_a_dead_pid_is_taken_over_with_a_warning(tmp_path, caplog):
    root = tmp_path / "ds"
    with EpisodeWriter(root, fps=10, cameras={"agentview": (32, 32)}):
        pass
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    lock = root / ".wovr.lock"
    lock.write_text(json.dumps({"pid": dead_pid, "host": "robot-pc", "since": 0}))
    with caplog.at_level(logging.WARNING), EpisodeWriter(root) as writer:
        assert f"stale lock left by pid {dead_pid} on robot-pc" in caplog.text
        assert json.loads(lock.read_text())["pid"] != dead_pid
        record_episode(writer, 0, 3)
        writer.end_episode()
    assert len(EpisodeDataset(root)) == 1


def test_lock_is_reentrant_safe_and_released(tmp_path):
    lock = DatasetLock(tmp_path)
    with lock:
        assert lock.held
        lock.acquire()  # no-op when already held
        with pytest.raises(DataError):
            DatasetLock(tmp_path).acquire()
    assert not lock.held
    assert (tmp_path / ".wovr.lock").read_text() == ""
    with DatasetLock(tmp_path):
        pass
