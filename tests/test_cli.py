"""The `wovr` command line: plugin discovery, clear errors."""

from __future__ import annotations

import subprocess
import sys


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
