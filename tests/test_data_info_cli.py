"""``wovr info DATASET`` through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys

from data_helpers import REPO_ROOT, write_dataset


def _wovr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wovr_core.cli", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)


def test_info_prints_counts_success_rate_and_validation(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, [10, 12, 14, 16, 18], episodes_per_file=2)  # success True/False/None cycling
    result = _wovr("info", str(root))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "episodes:  5, frames: 70 (7.0 s)" in out
    assert "success:   2/4 labeled episodes (50.0%; labels by operator 4), 1 unlabeled" in out
    assert "sources:   policy 1, scripted 2, teleop 2" in out
    assert "3 x pick up the bowl" in out and "2 x open the drawer" in out
    assert "validation: OK (5 episodes, 70 frames)" in out

    as_json = _wovr("info", str(root), "--json", "--decode-all")
    summary = json.loads(as_json.stdout)
    assert summary["episodes"] == 5 and summary["success"]["rate"] == 0.5
    assert summary["validation"]["ok"] and summary["validation"]["decoded_all_frames"]


def test_info_reports_bad_episodes_with_exit_code_1(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, [10, 12, 14], episodes_per_file=1)
    bad = root / "videos/agentview/chunk-000/file-001.mp4"
    bad.write_bytes(bad.read_bytes()[:300])
    result = _wovr("info", str(root))
    assert result.returncode == 1
    assert "validation: 1 bad episode(s) of 3" in result.stdout
    assert f"episode 1: {bad}" in result.stdout


def test_info_on_a_non_dataset_is_a_one_line_error(tmp_path):
    result = _wovr("info", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"wovr info: error: {tmp_path}/meta/info.json: not an episode dataset " \
                                     "(meta/info.json is missing)"
