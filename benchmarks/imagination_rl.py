"""One GRPO stage in imagination from the base policy, judged in the twin.

    python benchmarks/imagination_rl.py [--updates 20] [--set KEY=VALUE ...]

The libero_object base policy trains only in the world model (``wovr rl``: masked GRPO, KIR starts, rewards from
the reward model; no simulator step during RL), then the base and the trained policy are evaluated in the twin
on the same episodes, LIBERO's init states 0..N-1 of every task (``--eval-episodes-per-task``), with LIBERO's
predicate. The inputs are the other benchmarks' cached models, so this isolates what RL in imagination does with
them:

* base policy: benchmarks/base_policy.py (3 noisy demos per task);
* world model: benchmarks/world_model_fidelity.py (demos + 40 base-policy rollouts);
* reward model: ``benchmarks/reward_model.py --world-model WM --view imagined`` (demos + the same rollouts, half
  of each batch the world model's imagined replay);
* starts and keyframes: the demos and the base-policy rollouts.

Real trajectories behind the models: the demos and the 40 rollouts; none are added during RL. With ``--pace``
the trained policy then goes through the rest of PACE (``wovr rl --pace``, stage 1 being the RL run above): new
twin rollouts of it on init states 20.. (never the evaluation's), the world and reward models fine-tuned on old +
new episodes, GRPO again from the stage-1 policy, and a twin evaluation of the result. ``--baseline`` adds the
same-budget comparison: online GRPO in the twin itself from the base policy (``wovr rl --baseline-twin``, init
states 10..), allowed as many twin trajectories as the policy rollouts behind the models (base rollouts, plus
PACE's with ``--pace``), same hyperparameters, then its twin evaluation. Stage-cached in ``--workspace`` (the RL
runs resume). Writes benchmarks/results/imagination_rl.json (``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
from contextlib import ExitStack
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BENCH = Path("~/.cache/wovr/bench").expanduser()
BASE = BENCH / "base_policy/libero_object-n3-s0"
# PACE around the RL run (--pace): 4 new twin rollouts per task on init states 20-23 (the base rollouts used 10-13,
# the evaluation uses 0-9), a short fine-tune of the world model at a lower learning rate, the reward model
# retrained as benchmarks/reward_model.py trains it, then as many GRPO updates again.
PACE = ["pace.rollouts_per_task=4", "pace.first_init_state=20", "pace.world_model.threads=1",
        "pace.world_model.max_steps=3000", "pace.world_model.val_every=500", "pace.world_model.checkpoint_every=500",
        "pace.world_model.lr=1e-4", "pace.world_model.warmup_steps=100", "pace.world_model.batch_size=8",
        "pace.world_model.val_rollout_frames=32", "pace.reward.threads=1", "pace.reward.patience=5"]


def _twin_eval(checkpoint: Path, out: Path, workers: int, episodes_per_task: int = 10) -> dict:
    from wovr_core.policy.evaluate import EvalConfig, evaluate_checkpoint, format_table, success_summary

    results = evaluate_checkpoint(checkpoint, EvalConfig(suite="libero_object", episodes_per_task=episodes_per_task,
                                                         workers=workers, videos=2, threads=1), out, progress=True)
    print(format_table(results))
    return success_summary(results)


def _pace(cfg, args: argparse.Namespace, data: list[str], root: Path) -> dict:
    """The rest of PACE, its stage 1 being the RL stage above (same inputs, same config): linked, not rerun."""
    from wovr_core.rl.pace import run_pace

    stage1 = root / "pace" / "stage1"
    stage1.mkdir(parents=True, exist_ok=True)
    if not (stage1 / "run").exists():
        (stage1 / "run").symlink_to(root / "rl", target_is_directory=True)
    result = run_pace(cfg, args.policy, args.world_model, args.reward_model, data, root / "pace")
    stages = result["stages"]
    rows = (Path(stages["stage2"]["policy"]).parent / "updates.jsonl").read_text().splitlines()
    return {"policy": result["policy"], "real_trajectories": result["real_trajectories"],
            "stage_minutes": {k: round(v["seconds"] / 60, 1) for k, v in stages.items()},
            "rollouts": {k: stages["rollouts"][k] for k in ("episodes", "successes", "success_rate")},
            "world_model": stages["world_model"]["best"], "reward": stages["reward"]["report"],
            "imagined_success_per_update": [json.loads(r)["rollout/success_rate"] for r in rows]}


def _online_grpo(cfg, policy: str, budget: int, out: Path) -> dict:
    """GRPO in the twin from ``policy`` with at most ``budget`` twin trajectories (whole updates)."""
    from wovr_core.rl.budget import BUDGET_FILE, TrajectoryBudget
    from wovr_core.rl.run import run_twin_grpo

    first = 10  # the evaluation uses init states 0-9
    config = dataclasses.replace(cfg, real_budget=budget, twin=dataclasses.replace(cfg.twin, first_init_state=first))
    summary = run_twin_grpo(config, policy, out)
    return {"policy": str(summary["policy"]), "updates": summary["updates"],
            "real_trajectories": TrajectoryBudget(out / BUDGET_FILE).used, "first_init_state": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default=str(BASE / "run/policy"))
    parser.add_argument("--base-eval", default=None, metavar="DIR",
                        help="where the base policy's twin evaluation lives (default: the workspace's base_eval); "
                             "episodes already there with the same settings are reused, so one directory can "
                             "serve several workspaces")
    parser.add_argument("--world-model", default=str(BENCH / "wm_bench/wm_run/model"))
    parser.add_argument("--reward-model", default=str(BENCH / "reward_model_imagined"))
    parser.add_argument("--data", action="append", metavar="DIR",
                        default=None, help="start / keyframe datasets (default: the demos and the base rollouts)")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="twin processes of the evaluation")
    parser.add_argument("--eval-episodes-per-task", type=int, default=10,
                        help="twin episodes per task of each evaluation (init states 0..N-1, at most 10)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="RLRunConfig override, e.g. --set rl.keyframes.kir_share=0")
    parser.add_argument("--pace", action="store_true",
                        help="then the rest of PACE from the trained policy, and its twin evaluation")
    parser.add_argument("--baseline", action="store_true",
                        help="also online GRPO in the twin with the same real-trajectory budget, and its evaluation")
    parser.add_argument("--workspace", default=str(BENCH / "imagination_rl"))
    parser.add_argument("--out", default=str(RESULTS / "imagination_rl.json"))
    args = parser.parse_args()
    if not 1 <= args.eval_episodes_per_task <= 10:  # init states 10.. are the online baseline's
        parser.error("--eval-episodes-per-task must be in 1..10")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

    from wovr_core.config import make_config
    from wovr_core.data import EpisodeDataset
    from wovr_core.pipeline.stage_cache import StageCache
    from wovr_core.rl.run import run_imagination_rl
    from wovr_core.rl.run_config import RLRunConfig

    data = args.data or [str(BENCH / "libero_object_noisy"), str(BENCH / "base_rollouts_v2/dataset")]
    # pace.* settings leave the RL stage as it is: a --pace run reuses the RL stage of a run without
    rl_overrides = [o for o in args.overrides if not o.startswith("pace.")]
    inputs = {"policy": args.policy, "world_model": args.world_model, "reward_model": args.reward_model,
              "data": data, "updates": args.updates, "overrides": rl_overrides}
    ws = StageCache(Path(args.workspace).expanduser())
    if ws.stages.get("rl", {}).get("inputs", inputs) != inputs:  # other inputs: a fresh run, never a stale one
        raise SystemExit(f"{ws.root} holds a run with other inputs; pass another --workspace")
    cfg = make_config(RLRunConfig, "tiny", [f"rl.updates={args.updates}", "threads=1", *PACE,
                                            f"pace.stage1_updates={args.updates}", f"pace.stage2_updates={args.updates}",
                                            *args.overrides])

    def rl():
        summary = run_imagination_rl(cfg, args.policy, args.world_model, args.reward_model, data, ws.root / "rl")
        rows = [json.loads(line) for line in (ws.root / "rl" / "updates.jsonl").read_text().splitlines()]
        return {"inputs": inputs, "policy": str(summary["policy"]),
                "imagined_success_per_update": [r["rollout/success_rate"] for r in rows]}

    trained = ws.run("rl", rl)
    with ExitStack() as stack:  # the real trajectories behind the world and reward models and the starts
        opened = {d: stack.enter_context(EpisodeDataset(d)) for d in data}
        episodes = {d: len(ds) for d, ds in opened.items()}
        policy_rollouts = sum(ds.meta(i).source == "policy" for ds in opened.values() for i in range(len(ds)))
    per_task = args.eval_episodes_per_task

    def evaluation(stage: str, policy: str | Path) -> dict:
        stage = stage if per_task == 10 else f"{stage}_{per_task}_per_task"  # another count: another stage
        return ws.run(stage, lambda: _twin_eval(Path(policy), ws.root / stage, args.workers, per_task))

    after = evaluation("eval", trained["policy"])
    # The base policy on the same episodes as the trained one: a paired comparison, not two samples.
    base_eval_dir = Path(args.base_eval).expanduser() if args.base_eval else ws.root / "base_eval"
    before = _twin_eval(Path(args.policy), base_eval_dir, args.workers, per_task)
    pace = ws.run("pace", lambda: _pace(cfg, args, data, ws.root)) if args.pace else None
    after_pace = evaluation("pace_eval", pace["policy"]) if pace else None
    baseline = baseline_eval = None
    if args.baseline:  # the twin trajectories WoVR's models were built from, spent on GRPO in the twin instead
        budget = policy_rollouts + (pace["real_trajectories"] if pace else 0)
        baseline = ws.run(f"online_grpo_{budget}", lambda: _online_grpo(cfg, args.policy, budget,
                                                                        ws.root / f"online_grpo_{budget}"))
        baseline_eval = evaluation(f"online_grpo_{budget}_eval", baseline["policy"])
    result = {
        "what": f"libero_object twin success (LIBERO's predicate, init states 0-{per_task - 1} of every task) of the "
                "base policy and of the same policy after GRPO in imagination only"
                + (", then after the rest of PACE (after_pace)" if args.pace else "")
                + (", and after same-budget online GRPO in the twin (online_grpo)" if args.baseline else ""),
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "base": before["success"], "base_episodes": before["episodes"],
        "after_rl": after["success"], "episodes": after["episodes"],
        "gain_points": round(100 * (after["success"] - before["success"]), 1),
        "per_task": {t: {"base": before["per_task"].get(t), "after_rl": s} for t, s in after["per_task"].items()},
        "imagined_success_per_update": trained["imagined_success_per_update"],
        "inputs": inputs,
        "budget": {"real_trajectories": episodes, "real_trajectories_during_rl": 0,
                   "simulator_interaction_during_rl": 0,
                   "wall_minutes": {"rl": round(trained["minutes"], 1), "eval": round(after["minutes"], 1)},
                   "hardware": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                "gpu": None}},
    }
    if pace:
        result["after_pace"] = after_pace["success"]
        result["gain_points_pace"] = round(100 * (after_pace["success"] - before["success"]), 1)
        for t, s in after_pace["per_task"].items():
            result["per_task"].setdefault(t, {})["after_pace"] = s
        result["pace"] = {k: pace[k] for k in ("stage_minutes", "rollouts", "world_model", "reward",
                                              "imagined_success_per_update")}
        result["budget"]["real_trajectories"]["pace_rollouts"] = pace["real_trajectories"]
        result["budget"]["wall_minutes"].update(pace=round(pace["minutes"], 1),
                                                pace_eval=round(after_pace["minutes"], 1))
        print(f"after PACE: twin success {after_pace['success']:.3f} ({result['gain_points_pace']:+.1f} points)")
    if baseline:
        result["online_grpo"] = baseline_eval["success"]
        result["online_grpo_run"] = {k: baseline[k] for k in ("updates", "real_trajectories", "first_init_state")}
        for t, s in baseline_eval["per_task"].items():
            result["per_task"].setdefault(t, {})["online_grpo"] = s
        result["budget"]["wall_minutes"].update(online_grpo=round(baseline["minutes"], 1),
                                                online_grpo_eval=round(baseline_eval["minutes"], 1))
        print(f"same-budget online GRPO in the twin ({baseline['real_trajectories']} trajectories): twin success "
              f"{baseline_eval['success']:.3f}")
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"twin success {before['success']:.3f} -> {after['success']:.3f} after {args.updates} GRPO updates in "
          f"imagination ({result['gain_points']:+.1f} points); wrote {out}")


if __name__ == "__main__":
    main()
