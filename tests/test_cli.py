"""The `wovr` command line: plugin discovery, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _wovr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wovr_core.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands():
    out = _wovr("--help")
    assert out.returncode == 0
    for name in ("collect", "info", "demo", "serve", "calibrate"):
        assert name in out.stdout


def test_unknown_command_suggests():
    out = _wovr("colect")
    assert out.returncode == 2
    assert "Did you mean 'collect'" in out.stderr


def test_bad_config_is_one_clear_line(tmp_path):
    out = _wovr("collect", "--out", str(tmp_path / "ds"), "--set", "episodes_per_taks=2")
    assert out.returncode == 2
    assert "Did you mean 'episodes_per_task'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "ds").exists()


@pytest.mark.sim
def test_collect_noise_preset_sets_every_noise_field(tmp_path):
    out = _wovr("collect", "--out", str(tmp_path / "ds"), "--suite", "libero_object", "--episodes", "1",
                "--workers", "1", "--noise", "exploring", "--set", "tasks=[0]", "--set", "twin.image_size=64",
                "--set", "twin.max_steps=12")
    assert out.returncode == 0, out.stderr[-2000:]
    expert = json.loads((tmp_path / "ds" / "meta" / "collect_config.json").read_text())["config"]["expert"]
    assert expert["excursion_prob"] == 0.02 and expert["action_noise"] == 0.1
    assert list(expert["excursion_steps"]) == [6, 16]
