"""Ground-truth control: GRPO in the LIBERO twin itself, with LIBERO's predicate as the reward.

    python benchmarks/twin_grpo.py [--variants 10x1,20x1,10x1_t1]

RL in imagination lowered the tiny base policy's twin success in every run. This separates the world model's
fault from the tiny recipe's: the same GRPO (same trainer, same tiny hyperparameters) from the same libero_object
base policy, but every rollout is a real twin episode scored by the true success predicate (``wovr rl
--baseline-twin``, init states 10.., one start x 8 rollouts per update). If this does not raise the greedy twin
success either, the recipe, not only the world model, stops RL from helping. Each variant's policy and the base
policy are evaluated on init states 0-9 of every task. Runs and evaluations resume from ``--workspace``
(``twin_grpo_<variant>`` and ``twin_grpo_<variant>_eval``). Writes benchmarks/results/twin_grpo.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import time
from pathlib import Path

BENCH = Path("~/.cache/wovr/bench").expanduser()
RESULTS = Path(__file__).resolve().parent / "results"
FIRST_TRAIN_INIT_STATE = 10  # the evaluation uses init states 0-9
# variant -> (updates, overrides); one start x group_size rollouts per update, the budget exactly what they need
VARIANTS = {
    "10x1": (10, []),
    "20x1": (20, []),
    "10x1_t1": (10, ["rl.trainer.temperature=1.0"]),
}


def _evaluate(policy: Path, out: Path, workers: int) -> dict:
    from wovr_core.policy.evaluate import EvalConfig, evaluate_checkpoint, success_summary

    t0 = time.perf_counter()
    results = evaluate_checkpoint(policy, EvalConfig(suite="libero_object", episodes_per_task=10, workers=workers,
                                                     videos=0, threads=1), out, progress=True)
    return {**success_summary(results), "minutes": round((time.perf_counter() - t0) / 60, 1)}


def _train(policy: str, name: str, workspace: Path) -> dict:
    from wovr_core.config import make_config
    from wovr_core.rl.budget import BUDGET_FILE, TrajectoryBudget
    from wovr_core.rl.run import run_twin_grpo
    from wovr_core.rl.run_config import RLRunConfig

    updates, overrides = VARIANTS[name]
    cfg = make_config(RLRunConfig, "tiny", [f"rl.updates={updates}", "rl.groups_per_update=1", "threads=1",
                                            f"twin.first_init_state={FIRST_TRAIN_INIT_STATE}", *overrides])
    cfg = dataclasses.replace(cfg, real_budget=updates * cfg.rl.groups_per_update * cfg.rl.grpo.group_size)
    out = workspace / f"twin_grpo_{name}"
    t0 = time.perf_counter()
    summary = run_twin_grpo(cfg, policy, out)
    rows = [json.loads(line) for line in (out / "updates.jsonl").read_text().splitlines()]
    return {"policy": str(summary["policy"]), "updates": updates, "overrides": overrides,
            "twin_trajectories": TrajectoryBudget(out / BUDGET_FILE).used,
            "minutes_this_call": round((time.perf_counter() - t0) / 60, 1),
            "optimizer_steps": int(sum(r["optimizer_steps"] for r in rows)),
            "sampled_success_per_update": [r["rollout/success_rate"] for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default=str(BENCH / "base_policy/libero_object-n3-s0/run/policy"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    parser.add_argument("--workers", type=int, default=1, help="twin processes of the evaluations")
    parser.add_argument("--workspace", default=str(BENCH))
    parser.add_argument("--out", default=str(RESULTS / "twin_grpo.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MUJOCO_GL", "egl")
    names = [n for n in args.variants.split(",") if n]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    workspace = Path(args.workspace).expanduser()

    base = _evaluate(Path(args.policy), workspace / "twin_grpo_base_eval", args.workers)
    print(f"base policy: twin success {base['success']:.2f}")
    variants = {}
    for name in names:
        run = _train(args.policy, name, workspace)
        run["eval"] = _evaluate(Path(run["policy"]), workspace / f"twin_grpo_{name}_eval", args.workers)
        run["gain_points"] = round(100 * (run["eval"]["success"] - base["success"]), 1)
        variants[name] = run
        print(f"{name}: twin success {run['eval']['success']:.2f} ({run['gain_points']:+.1f} points)")

    report = {
        "what": "libero_object twin success (init states 0-9, LIBERO's predicate, greedy decoding) of the base "
                "policy and after GRPO in the twin with the true reward (tiny recipe, starts from init states 10..)",
        "command": f"python benchmarks/twin_grpo.py --variants {','.join(names)}",
        "policy": args.policy,
        "base": base,
        "variants": variants,
        "machine": {"cpu": platform.machine(), "cores": os.cpu_count(), "gpu": None},
    }
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
