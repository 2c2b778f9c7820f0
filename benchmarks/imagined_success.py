"""Does the world model see a policy succeed where the twin does? Imagined vs real success per task.

    python benchmarks/imagined_success.py [--policy DIR] [--world-model DIR] [--reward-model DIR]

The policy (default: the libero_object base policy of benchmarks/base_policy.py) runs in imagination
(``WorldModelEnv``: the world model + the reward model, chunks of 8, horizon 256 steps, success at p >= 0.9)
from the first frames of the base-policy rollouts that benchmarks/world_model_fidelity.py recorded (LIBERO
init states 10.. of every task), ``--rollouts-per-start`` rollouts each at the RL sampling temperature. Its
real success comes from the twin evaluation of benchmarks/base_policy.py (LIBERO's predicate, init states
0-9). Reported per task and overall, with the Pearson r of imagined vs real success across tasks and the
share of GRPO groups whose returns differ (the only groups masked GRPO learns from).

``--frames-before-end N`` starts instead N frames before the end of each recorded episode (with its 4 memory
frames, as a keyframe start does): a twin success ends at its success frame, so from successful episodes this
asks whether imagination finishes what the twin finished, and from failures whether it invents successes.
``--outcome`` picks the episodes by their twin outcome, ``--horizon`` shortens the imagined rollouts.
``success_within_steps`` gives the imagined success of the same rollouts at shorter horizons too: how fast
imagination finishes, or invents, an outcome. The world model is deterministic, so a shorter horizon's rollout is a
prefix of the one imagined here, up to float differences between batch sizes once some rollouts have ended
(measured: 0.317 read at 128 steps vs 0.327 imagined with ``--horizon 128``).

Writes benchmarks/results/imagined_success.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BENCH = Path("~/.cache/wovr/bench").expanduser()
HORIZONS = (32, 64, 128, 256)  # control steps at which success_within_steps is read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default=str(BENCH / "base_policy/libero_object-n3-s0/run/policy"))
    parser.add_argument("--real-results", default=str(BENCH / "base_policy/libero_object-n3-s0/eval/results.json"),
                        help="wovr eval results.json of the same policy in the twin")
    parser.add_argument("--world-model", default=str(BENCH / "wm_bench/wm_run/model"))
    parser.add_argument("--reward-model", default=str(BENCH / "reward_model_imagined"),
                        help="a reward model trained on the world model's imagined replay of the episodes: python "
                             "benchmarks/reward_model.py --world-model WM --view imagined --workdir "
                             "~/.cache/wovr/bench/reward_model_imagined")
    parser.add_argument("--starts", default=str(BENCH / "wm_bench/base_rollouts/dataset"),
                        help="episode dataset whose first frames are the imagined starts")
    parser.add_argument("--starts-per-task", type=int, default=2)
    parser.add_argument("--frames-before-end", type=int, default=None,
                        help="start this many frames before each episode's end (default: from its first frame)")
    parser.add_argument("--outcome", choices=["any", "success", "failure"], default="any",
                        help="only episodes with this twin outcome")
    parser.add_argument("--horizon", type=int, default=None, help="imagined control steps (default: the RL preset's)")
    parser.add_argument("--rollouts-per-start", type=int, default=8, help="a GRPO group")
    parser.add_argument("--temperature", type=float, default=None, help="default: the RL preset's (ref 1.6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "imagined_success.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch

    from wovr_core.config import make_config
    from wovr_core.data import EpisodeDataset
    from wovr_core.policy.evaluate import success_summary
    from wovr_core.policy.vla_policy import load_vla_policy
    from wovr_core.reward import SuccessClassifier
    from wovr_core.rl import VLATokenPolicy, WorldModelEnv, collect_rollouts, pearson_r
    from wovr_core.rl.config import RLConfig
    from wovr_core.rl.starts import starts_per_task
    from wovr_core.world_model import WorldModel

    torch.set_num_threads(1)
    rl = make_config(RLConfig, "tiny")
    temperature = rl.trainer.temperature if args.temperature is None else args.temperature
    world = WorldModel.load(args.world_model).prepare_for_inference()
    scorer = SuccessClassifier.load(args.reward_model)
    if args.horizon is not None:
        rl = dataclasses.replace(rl, env=dataclasses.replace(rl.env, max_steps=args.horizon))
    env = WorldModelEnv(world, scorer, rl.env)
    policy = load_vla_policy(args.policy, seed=args.seed)
    real = json.loads(Path(args.real_results).read_text())
    real_by_task = success_summary(real)["per_task"]

    with EpisodeDataset(args.starts) as dataset:
        starts = starts_per_task(dataset, args.starts_per_task, list(world.config.cameras), world.config.image_size,
                                 args.frames_before_end, {"any": None, "success": True, "failure": False}[args.outcome])
    generator = torch.Generator().manual_seed(args.seed)
    token_policy = VLATokenPolicy(policy)
    imagined: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    max_prob: dict[str, float] = defaultdict(float)
    groups = differing = 0
    first_success: list[np.ndarray] = []
    t0 = time.perf_counter()
    for start in starts:  # one GRPO group at a time
        traj = collect_rollouts(env, token_policy, [start], args.rollouts_per_start, temperature,
                                generator).trajectories
        imagined[start.task][0] += int(traj.success.sum())
        first_success.append(traj.first_success)
        imagined[start.task][1] += traj.num_rollouts
        max_prob[start.task] = max(max_prob[start.task], float(np.nanmax(traj.probs)))
        groups += 1
        differing += int(np.ptp(traj.returns) > rl.grpo.equal_returns_tol)  # GRPO's own test
        print(f"{start.task[:60]:60s} imagined {traj.success.sum()}/{traj.num_rollouts}, max p(success) "
              f"{np.nanmax(traj.probs):.3f}", flush=True)
    seconds = time.perf_counter() - t0
    tasks = sorted(imagined)
    rows = [{"task": t, "imagined_success": imagined[t][0] / imagined[t][1], "imagined_rollouts": imagined[t][1],
             "max_success_prob": max_prob[t], "real_success": real_by_task.get(t)} for t in tasks]
    first = np.concatenate(first_success)
    within = {h: float(np.mean((first >= 0) & (first < h // rl.env.chunk_size)))
              for h in HORIZONS if h <= rl.env.max_steps}
    pearson = pearson_r((r["imagined_success"], r["real_success"]) for r in rows if r["real_success"] is not None)
    result = {
        "what": "a policy's success imagined in the world model (reward model p >= 0.9) vs in the twin (LIBERO's "
                "predicate), per task",
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "policy": args.policy, "world_model": args.world_model, "reward_model": args.reward_model,
        "starts": args.starts, "starts_per_task": args.starts_per_task, "rollouts_per_start": args.rollouts_per_start,
        "frames_before_end": args.frames_before_end, "outcome": args.outcome,
        "temperature": temperature, "horizon_steps": rl.env.max_steps,
        "imagined_success": sum(v[0] for v in imagined.values()) / max(1, sum(v[1] for v in imagined.values())),
        "real_success": real["average_success"], "real_episodes": real["episodes"],
        "pearson_r_over_tasks": pearson,
        "success_within_steps": within,
        "groups": groups, "groups_with_differing_returns": differing,
        "tasks": rows, "seconds": round(seconds, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_1m": os.getloadavg()[0]},
    }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"imagined {result['imagined_success']:.3f} vs real {result['real_success']:.3f}; Pearson r over tasks "
          f"{pearson}; {differing}/{groups} groups with differing returns; within "
          f"{', '.join(f'{h} steps {v:.3f}' for h, v in within.items())}; wrote {out}")


if __name__ == "__main__":
    main()
