"""Is the world model a reliable judge of policies? Imagined vs twin success across checkpoints (Pearson r).

    python benchmarks/imagined_vs_real.py [--checkpoint NAME RESULTS_JSON ...] [--world-model DIR --reward-model DIR]

Each checkpoint is a policy with its twin evaluation (a ``wovr eval`` results.json, which names the policy it
evaluated: LIBERO's predicate on init states 0-9 of every task). Every policy runs in imagination (the world
model + the reward model, chunks of 8, horizon 256, success at p >= 0.9) from the same starts, the first frames
of the base-policy rollouts (LIBERO init states 10.., never the evaluation's), with the same sampling stream at
``--temperature`` (the twin evaluation decodes greedily; imagination needs some temperature to sample).
Reported: imagined and real success per checkpoint and task, and the Pearson r of imagined vs real success
across checkpoints (the issue's reliability check, goal >= 0.85) and across (checkpoint, task) pairs.

Default checkpoints: the libero_object base policy and the policies the other benchmarks trained from it
(benchmarks/imagination_rl.py and its keyframe-only and PACE runs, the first RL run by hand, the same-budget online
GRPO in the twin, and RL from the base policy in PACE's refined models at temperature 1.6 and 1.0), those whose
twin evaluation exists. Stage-cached per checkpoint in ``--workspace`` (one folder per world model, reward model
and settings). Writes benchmarks/results/imagined_vs_real.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BENCH = Path("~/.cache/wovr/bench").expanduser()
CHECKPOINTS = {  # name -> twin evaluation of the policy
    "base": BENCH / "base_policy/libero_object-n3-s0/eval/results.json",
    "imagination_rl": BENCH / "imagination_rl/eval/results.json",
    "imagination_rl_kir32": BENCH / "imagination_rl_kir32/eval/results.json",
    "imagination_rl_reward_v1": BENCH / "rl_imagined/eval/results.json",
    "imagination_rl_pace": BENCH / "imagination_rl/pace_eval/results.json",
    "online_grpo_80": BENCH / "imagination_rl/online_grpo_80_eval/results.json",
    "imagination_rl_pace_models": BENCH / "irl_pace_models/eval/results.json",
    "imagination_rl_pace_models_t1": BENCH / "irl_pace_models_t1/eval/results.json",
}


def _imagined(policy_dir: str, world_model: str, reward_model: str, starts_dataset: str, args) -> dict:
    """``task -> [successes, rollouts]`` of one policy in imagination."""
    import torch

    from wovr_core.config import make_config
    from wovr_core.data import EpisodeDataset
    from wovr_core.policy.vla_policy import load_vla_policy
    from wovr_core.reward import SuccessClassifier
    from wovr_core.rl import VLATokenPolicy, WorldModelEnv, imagined_success
    from wovr_core.rl.config import RLConfig
    from wovr_core.rl.starts import starts_per_task
    from wovr_core.world_model import WorldModel

    torch.set_num_threads(1)
    world = WorldModel.load(world_model).prepare_for_inference()
    env = WorldModelEnv(world, SuccessClassifier.load(reward_model), make_config(RLConfig, "tiny").env)
    with EpisodeDataset(starts_dataset) as dataset:
        starts = starts_per_task(dataset, args.starts_per_task, list(world.config.cameras), world.config.image_size)
    vla = load_vla_policy(policy_dir, seed=args.seed)
    try:
        counts = imagined_success(env, VLATokenPolicy(vla), starts, args.rollouts_per_start, args.temperature,
                                  args.seed)
    finally:
        vla.close()
    return {"tasks": {task: list(count) for task, count in sorted(counts.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs=2, action="append", metavar=("NAME", "RESULTS_JSON"),
                        help="a policy by its twin evaluation (repeatable; default: the benchmarks' checkpoints)")
    parser.add_argument("--world-model", default=str(BENCH / "wm_bench/wm_run/model"))
    parser.add_argument("--reward-model", default=str(BENCH / "reward_model_imagined"))
    parser.add_argument("--starts", default=str(BENCH / "wm_bench/base_rollouts/dataset"),
                        help="episode dataset whose first frames are the imagined starts")
    parser.add_argument("--starts-per-task", type=int, default=2)
    parser.add_argument("--rollouts-per-start", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", default=str(BENCH / "imagined_vs_real"))
    parser.add_argument("--out", default=str(RESULTS / "imagined_vs_real.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from wovr_core.config import make_config
    from wovr_core.pipeline.stage_cache import StageCache
    from wovr_core.policy.evaluate import success_summary
    from wovr_core.rl.config import RLConfig
    from wovr_core.rl.reliability import pearson_r

    chosen = ({name: Path(p) for name, p in args.checkpoint} if args.checkpoint
              else {name: p for name, p in CHECKPOINTS.items() if p.exists()})
    missing = [str(p) for p in chosen.values() if not p.exists()]
    if missing:
        raise SystemExit(f"no twin evaluation at {', '.join(missing)}")
    if len(chosen) < 3:
        raise SystemExit(f"a correlation needs >= 3 checkpoints, got {len(chosen)}")
    settings = {"world_model": args.world_model, "reward_model": args.reward_model, "starts": args.starts,
                "starts_per_task": args.starts_per_task, "rollouts_per_start": args.rollouts_per_start,
                "temperature": args.temperature, "seed": args.seed}
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    ws = StageCache(Path(args.workspace).expanduser() / key)

    checkpoints = {}
    for name, results_path in chosen.items():
        real = json.loads(results_path.read_text())
        policy = real["checkpoint"]
        if ws.stages.get(name, {}).get("policy", policy) != policy:
            raise SystemExit(f"{ws.root} scored another policy as {name!r}; name this one differently")
        imagined = ws.run(name, lambda p=policy: {"policy": p, **_imagined(p, args.world_model, args.reward_model,
                                                                         args.starts, args)})
        real_tasks = success_summary(real)["per_task"]
        per_task = {task: {"imagined": s / n, "real": real_tasks.get(task)}
                    for task, (s, n) in imagined["tasks"].items()}
        counts = list(imagined["tasks"].values())
        checkpoints[name] = {
            "policy": policy, "real": real["average_success"], "real_episodes": real["episodes"],
            "imagined": sum(s for s, _ in counts) / sum(n for _, n in counts),
            "imagined_rollouts": sum(n for _, n in counts), "per_task": per_task,
            "minutes": round(imagined["minutes"], 1)}
        print(f"{name:28s} imagined {checkpoints[name]['imagined']:.3f}  real {checkpoints[name]['real']:.3f}",
              flush=True)
    over_checkpoints = pearson_r((c["imagined"], c["real"]) for c in checkpoints.values())
    over_pairs = pearson_r((t["imagined"], t["real"]) for c in checkpoints.values() for t in c["per_task"].values()
                           if t["real"] is not None)
    result = {
        "what": "imagined success (world model + reward model, p >= 0.9) vs twin success (LIBERO's predicate) of "
                "several policies, and their Pearson r",
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "pearson_r_over_checkpoints": over_checkpoints, "pearson_r_over_checkpoint_tasks": over_pairs,
        "goal_pearson_r": 0.85, "checkpoints": checkpoints, **settings,
        "horizon_steps": make_config(RLConfig, "tiny").env.max_steps,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None},
    }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Pearson r over {len(checkpoints)} checkpoints {over_checkpoints}, over checkpoint x task "
          f"{over_pairs}; wrote {out}")


if __name__ == "__main__":
    main()
