"""``wovr demo`` end to end at toy size (the ``smoke`` preset): scripted demos -> SFT -> recorded robot runs ->
a real ``wovr serve`` -> wovr retrain (world model, reward, GRPO in imagination, twin evaluation, gate, push) ->
the served checkpoint run in the twin through the WebSocket client -> the HTML report. A rerun resumes (every
stage done); other settings in the same workspace are refused. About 2 minutes on 2 cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.sim]

WOVR = Path(sys.executable).parent / "wovr"


def _demo(workspace: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}
    return subprocess.run([str(WOVR), "demo", "--preset", "smoke", "--workspace", str(workspace), *extra],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_the_whole_loop_runs_resumes_and_refuses_other_settings(tmp_path):
    workspace = tmp_path / "demo"
    first = _demo(workspace)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = workspace / "report.html"
    assert f"report: {report}" in first.stdout
    summary = json.loads((workspace / "summary.json").read_text())
    assert set(summary["minutes_per_stage"]) == {"demos", "sft", "robot", "retrain", "client"}
    assert summary["demos"]["episodes"] == 4 and summary["robot_rollouts"]["episodes"] == 3
    # base and candidate each ran in the twin under LIBERO's predicate (one init state at this size)
    assert summary["twin_success"]["base_count"]["trials"] == 1
    assert summary["twin_success"]["post_rl_count"]["trials"] == 1
    assert isinstance(summary["promoted"], bool) and summary["gate_reasons"]
    # the robot's runs went through the inbox into the retrain workspace's data
    assert not any((workspace / "retrain" / "inbox").iterdir())
    assert list((workspace / "retrain" / "data" / "real").iterdir())
    # the client talked to the real server, which serves what the gate decided
    state = json.loads((workspace / "retrain" / "state.json").read_text())
    assert summary["served"]["checkpoint_id"] == state["deployed"]["checkpoint_id"]
    assert summary["served"]["checkpoints_seen"] == [state["deployed"]["checkpoint_id"]]
    assert summary["served"]["episodes"] == 1
    page = report.read_text()
    assert "The demo loop on the MuJoCo twin" in page and "Imagined vs real" in page
    assert summary["served"]["checkpoint_id"] in page

    again = _demo(workspace, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    for stage in ("demos", "sft", "robot", "retrain", "client"):
        assert f"[{stage}] done earlier" in again.stdout
    assert json.loads((workspace / "summary.json").read_text())["served"] == summary["served"]

    other = _demo(workspace, "--set", "demos_per_task=5", timeout=120)
    assert other.returncode == 2
    assert "other settings" in other.stderr and "--fresh" in other.stderr and "Traceback" not in other.stderr
