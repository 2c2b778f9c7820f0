"""How long ``make demo`` takes on a fresh clone, and what it shows: writes benchmarks/results/demo.json.

    python benchmarks/demo.py               # git clone of this checkout's HEAD into a temp dir, then `make demo`
    python benchmarks/demo.py --no-clone    # `wovr demo --fresh` with this checkout's venv (the loop alone)

The clone's ``make demo`` does all its set-up (a new venv; pip's cache makes that minutes, not the first
install's download) and then runs the loop; both are timed. The goal (issue 8): <= 30 min on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _timed(command: list[str], cwd: Path, log: Path) -> float:
    t0 = time.time()
    with log.open("ab") as out:
        done = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed with {done.returncode}; see {log}")
    return (time.time() - t0) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-clone", action="store_true", help="run the loop with this checkout's .venv")
    parser.add_argument("--scratch", default=None, help="where the clone and the workspace go (default: a temp dir)")
    parser.add_argument("--out", default=str(RESULTS / "demo.json"))
    args = parser.parse_args()
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="wovr-demo-bench-")).expanduser()
    scratch.mkdir(parents=True, exist_ok=True)
    workspace, log = scratch / "workspace", scratch / "demo.log"
    load_before = os.getloadavg()
    minutes: dict[str, float] = {}
    if args.no_clone:
        minutes["demo"] = _timed([str(ROOT / ".venv" / "bin" / "wovr"), "demo", "--fresh", "--workspace",
                                  str(workspace)], ROOT, log)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    else:
        clone = scratch / "wovr"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
        minutes["install"] = _timed(["make", "install"], clone, log)
        minutes["demo"] = _timed(["make", "demo", f"WORKSPACE={workspace}"], clone, log)
    summary = json.loads((workspace / "summary.json").read_text())
    total = sum(minutes.values())
    out = {
        "what": "`make demo` on a fresh clone: install (venv from pip's cache) + the whole loop on the twin"
                if not args.no_clone else "`wovr demo --fresh`: the whole loop on the twin (no install)",
        "command": " ".join(["python benchmarks/demo.py", *sys.argv[1:]]),
        "commit": commit, "minutes": {k: round(v, 2) for k, v in minutes.items()}, "minutes_total": round(total, 2),
        "goal_minutes": 30, "within_goal": total <= 30,
        "twin_success": {k: summary["twin_success"][k] for k in ("base", "post_rl", "base_count", "post_rl_count")},
        "imagined_success": summary["imagined_success"], "world_model_psnr_db": summary["world_model_psnr_db"],
        "promoted": summary["promoted"], "gate_reasons": summary["gate_reasons"],
        "served": {k: summary["served"][k] for k in ("checkpoint_id", "successes", "episodes",
                                                     "mean_ms_per_chunk_request")},
        "minutes_per_stage": summary["minutes_per_stage"], "demos": summary["demos"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_1min_start_end": [load_before[0], os.getloadavg()[0]]},
        "scratch": str(scratch),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    twin = out["twin_success"]
    print(f"make demo: {total:.1f} min ({', '.join(f'{k} {v:.1f}' for k, v in minutes.items())}); twin success "
          f"base {twin['base']} -> post-RL {twin['post_rl']}; promoted {out['promoted']}; wrote {args.out}")


if __name__ == "__main__":
    main()
