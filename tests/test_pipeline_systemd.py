"""The systemd units of the nightly retrain: parsed like systemd does, and their command line parsed by the
real ``wovr retrain`` argument parser."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from wovr_core.cli import build_parser
from wovr_core.pipeline.config import RetrainConfig
from wovr_core.pipeline.retrain_cli import COMMAND, EXIT_BUSY

UNITS = Path(__file__).resolve().parents[1] / "launch" / "systemd"
SERVICE, TIMER = UNITS / "wovr-retrain.service", UNITS / "wovr-retrain.timer"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values in order (systemd allows repeated keys such as Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{path}:{number}: not a key=value line inside a section"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _expand(text: str, env: dict[str, str], home: str) -> str:
    text = text.replace("%h", home)
    return re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], text)


def test_the_service_runs_the_real_retrain_command():
    unit = parse_unit(SERVICE)
    service = unit["Service"]
    assert service["Type"] == ["oneshot"]
    home = "/home/researcher"
    env = dict(_expand(e, {}, home).split("=", 1) for e in service["Environment"])
    argv = shlex.split(_expand(service["ExecStart"][0], env, home))
    assert Path(argv[0]).name == "wovr" and argv[0].startswith(home)
    assert argv[1] == COMMAND.name == "retrain"
    args = build_parser({COMMAND.name: COMMAND}).parse_args(argv[1:])  # exits on an unknown option
    assert args.workspace == env["WOVR_WORKSPACE"] and args.config_file == env["WOVR_RETRAIN_CONFIG"]
    assert args.preset in RetrainConfig.PRESETS
    # The journal, plus the workspace log file that the command writes itself.
    assert service["StandardOutput"] == ["journal"] and service["StandardError"] == ["journal"]
    assert str(EXIT_BUSY) in service["SuccessExitStatus"][0].split()
    assert service["EnvironmentFile"][0].startswith("-")  # optional: the unit works without it
    assert "Install" not in unit  # started by the timer only


def test_the_timer_fires_nightly_and_catches_up_after_downtime():
    unit = parse_unit(TIMER)
    timer = unit["Timer"]
    assert timer["Persistent"] == ["true"]
    assert timer["Unit"] == [SERVICE.name]
    assert unit["Install"]["WantedBy"] == ["timers.target"]
    calendar = timer["OnCalendar"][0]
    assert re.fullmatch(r"\*-\*-\* \d\d:\d\d:\d\d", calendar), "expected a daily calendar spec"
    if shutil.which("systemd-analyze"):
        check = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True, text=True)
        assert check.returncode == 0 and "Next elapse" in check.stdout, check.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path):
    result = subprocess.run(["systemd-analyze", "verify", str(SERVICE), str(TIMER)], capture_output=True,
                            text=True, cwd=tmp_path)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    # The only complaint allowed here: the venv of the machine it will be installed on does not exist here.
    unexpected = [p for p in problems if not re.search(r"/wovr/\.venv/bin/wovr is not executable", p)]
    assert not unexpected, "\n".join(problems)
