"""Shared set-up of the ``wovr retrain`` / ``wovr report`` tests: a workspace with an inbox of small recorded
datasets, a stub policy as the deployed one, and the ``wovr`` CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from data_helpers import REPO_ROOT, TESTS_DIR, write_dataset

from wovr_core.config import make_config
from wovr_core.pipeline.config import RetrainConfig
from wovr_core.policy.stub import write_stub_checkpoint

CAMERAS = {"agentview": (32, 32)}
DEAD_SERVER = "http://127.0.0.1:9"  # the discard port: nothing listens there, connections are refused

# ``wovr <command>`` through the real CLI entry (wovr_core.cli.main). Until pyproject.toml registers the
# retrain/report entry points, the shim adds them to what the CLI discovers; afterwards it changes nothing.
_CLI_SHIM = """
import sys, types
import wovr_core.cli as cli
from wovr_core.pipeline.report_cli import COMMAND as REPORT
from wovr_core.pipeline.retrain_cli import COMMAND as RETRAIN
found = cli._discover
cli._discover = lambda: {"retrain": types.SimpleNamespace(load=lambda: RETRAIN),
                         "report": types.SimpleNamespace(load=lambda: REPORT), **found()}
sys.exit(cli.main(sys.argv[1:]))
"""


def add_inbox_dataset(workspace: Path, name: str, lengths: list[int], **kwargs) -> Path:
    root = workspace / "inbox" / name
    write_dataset(root, lengths, cameras=CAMERAS, **kwargs)
    return root


def make_workspace(tmp_path: Path, lengths: tuple[int, ...] = (12, 14, 16)) -> tuple[Path, Path]:
    """(workspace with one inbox dataset, the stub checkpoint the robot "runs")."""
    workspace = tmp_path / "ws"
    initial = write_stub_checkpoint(tmp_path / "sft", cost_ms=0.0)
    add_inbox_dataset(workspace, "session-a", list(lengths))
    return workspace, initial


def smoke_overrides(initial: Path, **extra) -> dict:
    return {"initial_policy": str(initial), "push": {"server_url": DEAD_SERVER, "timeout_s": 10.0},
            "smoke": {"bias_step": 1.5}, **extra}


def smoke_config(initial: Path, **extra) -> RetrainConfig:
    return make_config(RetrainConfig, "smoke", smoke_overrides(initial, **extra))


def write_config_file(path: Path, overrides: dict) -> Path:
    path.write_text(yaml.safe_dump(overrides))
    return path


def wovr_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", _CLI_SHIM, *args]


def cli_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "WOVR_API_TOKEN"}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR)]), PYTHONUNBUFFERED="1", **extra)
    return env


def run_wovr(*args: str, timeout: float = 120.0, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(wovr_argv(*args), env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


def start_wovr(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(wovr_argv(*args), env=cli_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
