"""Scripted-expert success per task with noise off (LIBERO predicate, LIBERO's fixed init states).

    python benchmarks/experts.py --episodes 10 --workers 2
Writes benchmarks/results/experts.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _run_task(args: tuple[str, int, int]) -> dict:
    suite, task_id, episodes = args
    from wovr_core.sim.experts import ExpertConfig, PickPlaceExpert
    from wovr_core.sim.rollout import run_expert_episode
    from wovr_core.sim.twin import LiberoTwin, TwinConfig

    start = time.time()
    twin = LiberoTwin(TwinConfig(suite=suite, task_id=task_id, render=False))
    expert = PickPlaceExpert(ExpertConfig())
    outcomes = [run_expert_episode(twin, expert, i) for i in range(episodes)]
    twin.close()
    return {
        "suite": suite,
        "task_id": task_id,
        "task": twin.task.language,
        "episodes": episodes,
        "successes": sum(o.success for o in outcomes),
        "success_rate": sum(o.success for o in outcomes) / episodes,
        "failed_init_states": [o.init_state_index for o in outcomes if not o.success],
        "mean_steps": sum(o.steps for o in outcomes) / episodes,
        "seconds": round(time.time() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", default="libero_object,libero_spatial")
    parser.add_argument("--episodes", type=int, default=10, help="init states per task (LIBERO's first N)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)))
    parser.add_argument("--tasks", default="", help="comma-separated task ids (default: all)")
    parser.add_argument("--out", default=str(RESULTS / "experts.json"))
    args = parser.parse_args()

    from wovr_core.sim.suites import task_names

    jobs = []
    for suite in args.suites.split(","):
        ids = [int(t) for t in args.tasks.split(",")] if args.tasks else range(len(task_names(suite)))
        jobs += [(suite, t, args.episodes) for t in ids]
    start = time.time()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        rows = []
        for row in pool.imap_unordered(_run_task, jobs):
            rows.append(row)
            print(f"{row['suite']:15s} task {row['task_id']}: {row['successes']}/{row['episodes']}  {row['task']}",
                  flush=True)
    rows.sort(key=lambda r: (r["suite"], r["task_id"]))
    summary = {
        suite: {
            "mean_success": sum(r["success_rate"] for r in rows if r["suite"] == suite)
            / max(1, sum(r["suite"] == suite for r in rows)),
            "min_task_success": min((r["success_rate"] for r in rows if r["suite"] == suite), default=0.0),
        }
        for suite in args.suites.split(",")
    }
    result = {
        "what": "scripted expert success, noise off, LIBERO predicate, LIBERO fixed init states 0..N-1",
        "command": "python benchmarks/experts.py " + f"--episodes {args.episodes} --workers {args.workers}",
        "episodes_per_task": args.episodes,
        "all_tasks_at_least_90pct": all(r["success_rate"] >= 0.9 for r in rows),
        "summary": summary,
        "tasks": rows,
        "wall_seconds": round(time.time() - start, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for suite, s in summary.items():
        print(f"{suite}: mean success {s['mean_success']:.3f}, worst task {s['min_task_success']:.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
