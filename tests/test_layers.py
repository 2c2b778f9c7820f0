"""DESIGN.md's dependency rules: import-linter for the installed packages, an AST scan for robot_ws."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_LIKE = {"torch", "transformers", "diffusers", "accelerate", "torchvision"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "broken" not in out.stdout.lower().split("contracts:")[-1] or "0 broken" in out.stdout


def test_rclpy_only_under_robot_ws():
    offenders = [
        str(p.relative_to(ROOT)) for top in ("wovr_core", "policy_server", "calibration", "benchmarks")
        for p in (ROOT / top).rglob("*.py") if "rclpy" in _imports(p)
    ]
    assert not offenders, f"rclpy imported outside robot_ws/: {offenders}"


def test_robot_ws_never_imports_torch():
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & TORCH_LIKE)
        for p in (ROOT / "robot_ws").rglob("*.py") if _imports(p) & TORCH_LIKE
    }
    assert not offenders, f"robot_ws imports torch-like packages: {offenders}"


def test_client_imports_without_torch_or_fastapi():
    code = ("import sys; import policy_server.client, policy_server.protocol, wovr_core.hardware, "
            "wovr_core.runtime, wovr_core.data; bad = {'torch', 'fastapi', 'rclpy'} & set(sys.modules); "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
