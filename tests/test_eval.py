"""``wovr eval``: a VLA checkpoint run in the LIBERO twin from fixed init states, per-task results, videos,
resuming, and clear errors for bad checkpoints and settings."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
from vla_helpers import TASKS, libero_like_stats, micro_config

from wovr_core.config import ConfigError
from wovr_core.errors import DataError
from wovr_core.policy.evaluate import (
    EpisodeJob,
    EvalConfig,
    evaluate_checkpoint,
    format_table,
    plan_jobs,
    success_summary,
)
from wovr_core.policy.vla_policy import VLAPolicy
from wovr_core.sim.suites import get_task

pytestmark = pytest.mark.sim
SIZE = 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained micro VLA served 64 px agentview + wrist images (success does not matter here)."""
    tasks = [get_task("libero_object", 0).language, *TASKS]
    config = dataclasses.replace(micro_config(), input_images={"agentview": [SIZE, SIZE], "wrist": [SIZE, SIZE]})
    policy = VLAPolicy.create(config, libero_like_stats(), tasks=tasks, device="cpu")
    return policy.save(tmp_path_factory.mktemp("eval") / "vla-micro")


@pytest.fixture(scope="module")
def evaluated(checkpoint, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("eval-out")
    cmd = [sys.executable, "-m", "wovr_core.cli", "eval", "--suite", "libero_object", "--checkpoint", str(checkpoint),
           "--tasks", "0", "--episodes-per-task", "2", "--workers", "2", "--videos", "1", "--out", str(out),
           "--no-progress", "--set", "max_steps=12"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_eval_runs_episodes_in_parallel_workers_and_reports_per_task(evaluated, checkpoint):
    out, result = evaluated
    results = json.loads((out / "results.json").read_text())
    assert results["suite"] == "libero_object" and results["episodes"] == 2
    assert results["render_size"] == SIZE and results["checkpoint_id"].startswith("vla-micro@")
    (task,) = results["tasks"]
    assert task["task_id"] == 0 and task["episodes"] == 2 and task["task"].startswith("pick up the alphabet soup")
    assert results["average_success"] == task["success_rate"] == task["successes"] / 2
    episodes = sorted(results["episode_records"], key=lambda r: r["init_state"])
    assert [e["init_state"] for e in episodes] == [0, 1]
    for e in episodes:  # 12 steps = 1.5 chunks of 8: two policy calls
        assert e["steps"] == 12 and e["chunks"] == 2 and not e["success"]
    assert "average success 0.0%" in result.stdout and "alphabet soup" in result.stdout
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 2


def test_eval_writes_decodable_videos_of_both_cameras(evaluated):
    out, _ = evaluated
    (video,) = json.loads((out / "results.json").read_text())["videos"]
    assert Path(video).name == "libero_object_task00_init00_failure.mp4" and Path(video).parent == out / "videos"
    with av.open(video) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 13  # the reset observation + 12 steps
    assert frames[0].shape == (SIZE, 2 * SIZE, 3)  # agentview | wrist


def test_a_rerun_into_the_same_directory_resumes_instead_of_repeating(evaluated, checkpoint):
    out, _ = evaluated
    before = (out / "episodes.jsonl").read_text()
    cfg = EvalConfig(suite="libero_object", tasks=(0,), episodes_per_task=2, workers=2, videos=1, max_steps=12)
    results = evaluate_checkpoint(checkpoint, cfg, out, progress=False)
    assert (out / "episodes.jsonl").read_text() == before  # nothing was run again
    assert results["episodes"] == 2
    assert "average success" in format_table(results)
    summary = success_summary(results)
    assert summary["episodes"] == 2 and summary["success"] == results["average_success"]
    soup = "pick up the alphabet soup and place it in the basket"
    assert summary["per_task"] == {soup: results["tasks"][0]["success_rate"]}


def test_missing_or_corrupt_checkpoints_fail_before_any_episode(checkpoint, tmp_path):
    cfg = EvalConfig(tasks=(0,), episodes_per_task=1, workers=1, max_steps=4)
    with pytest.raises(DataError, match="checkpoint directory not found"):
        evaluate_checkpoint(tmp_path / "nowhere", cfg, tmp_path / "out")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in checkpoint.iterdir():
        if f.name != "model.safetensors":
            (broken / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataError, match="model.safetensors"):
        evaluate_checkpoint(broken, cfg, tmp_path / "out")
    (broken / "model.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="model.safetensors"):
        evaluate_checkpoint(broken, cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "episodes.jsonl").exists()


def test_bad_settings_are_refused(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="libero_objct.*Did you mean"):
        evaluate_checkpoint(checkpoint, EvalConfig(suite="libero_objct"), tmp_path)
    with pytest.raises(ConfigError, match="tasks 0..9"):
        evaluate_checkpoint(checkpoint, EvalConfig(tasks=(12,)), tmp_path)
    with pytest.raises(ConfigError, match="init states"):
        evaluate_checkpoint(checkpoint, EvalConfig(tasks=(0,), episodes_per_task=60), tmp_path)
    with pytest.raises(ConfigError):
        EvalConfig(workers=0).validate()


def test_jobs_group_tasks_and_film_one_episode_per_task_first():
    cfg = EvalConfig(episodes_per_task=3, videos=2, first_init_state=5)
    jobs = plan_jobs(cfg, [2, 7], {2: 50, 7: 50})
    assert [(j.task_id, j.init_state) for j in jobs] == [(2, 5), (2, 6), (2, 7), (7, 5), (7, 6), (7, 7)]
    assert [j for j in jobs if j.video] == [EpisodeJob(2, 5, True), EpisodeJob(7, 5, True)]
