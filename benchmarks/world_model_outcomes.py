"""Does imagination invent successes? Whole episodes of a policy replayed in world models, outcome vs the twin's.

    python benchmarks/world_model_outcomes.py [--policy DIR] [--model NAME WORLD_MODEL REWARD_MODEL ...]

1. ``rollouts``: ``--rollouts-per-task`` twin episodes per libero_object task of the policy (default: the one
   GRPO in imagination trained, benchmarks/imagination_rl.py), on LIBERO init states 30.. that no model here saw
   and no evaluation uses, labelled with LIBERO's predicate.
2. per model pair: each episode imagined whole from its first frame under its recorded actions (never
   re-anchored), an imagined success when the reward model gives a frame p >= 0.5 (the imagined env's success
   threshold), against the twin's outcome; the reward model alone on the recorded frames separates its errors
   from the world model's. Also PSNR/SSIM of the same replays at 8/32/128 frames.

Default pairs: the base world model + reward model, and the ones PACE refined (benchmarks/imagination_rl.py
--pace) when they exist. Stage-cached in ``--workspace``. Writes benchmarks/results/world_model_outcomes.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BENCH = Path("~/.cache/wovr/bench").expanduser()
FIRST_INIT_STATE = 30  # base rollouts use 10.., PACE's 20.., the evaluations 0-9
PACE = BENCH / "imagination_rl/pace"
MODELS = {  # name -> (world model, reward model)
    "base": (BENCH / "wm_bench/wm_run/model", BENCH / "reward_model_imagined"),
    "pace": (PACE / "world_model/run/model", PACE / "reward/model"),
}


def _rollouts(policy: str, per_task: int, out: Path) -> dict:
    from wovr_core.config import make_config
    from wovr_core.rl.budget import TrajectoryBudget
    from wovr_core.rl.pace import record_twin_rollouts
    from wovr_core.rl.run_config import RLRunConfig

    cfg = make_config(RLRunConfig, "tiny", ["twin.suite=libero_object", f"pace.rollouts_per_task={per_task}",
                                            f"pace.first_init_state={FIRST_INIT_STATE}"])
    summary = record_twin_rollouts(cfg, policy, out / "dataset", TrajectoryBudget(out / "budget.json"),
                                   label="held-out rollouts")
    return {**summary, "dataset": str(out / "dataset"), "policy": policy}


def _replay(world_model: Path, reward_model: Path, dataset: str, out: Path) -> dict:
    import torch

    from wovr_core.config import make_config
    from wovr_core.world_model.config import WorldModelEvalConfig
    from wovr_core.world_model.data import open_datasets
    from wovr_core.world_model.evaluate import evaluate_world_model, load_scorer
    from wovr_core.world_model.model import WorldModel

    torch.set_num_threads(1)
    model = WorldModel.load(world_model).prepare_for_inference()
    datasets = open_datasets([dataset], model.config.cameras)
    keys = [(0, ep.episode_index) for ep in datasets[0].episodes]
    cfg = make_config(WorldModelEvalConfig, "tiny", {"controllability": False, "videos": 2})
    report = evaluate_world_model(model, datasets, keys, cfg, out, load_scorer("reward_model", reward_model))
    return {"world_model": str(world_model), "reward_model": str(reward_model), "outcomes": report["outcomes"],
            "psnr": {h: m["mean"] for h, m in report["psnr"].items()},
            "ssim": {h: m["mean"] for h, m in report["ssim"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default=str(BENCH / "imagination_rl/rl/policy"))
    parser.add_argument("--rollouts-per-task", type=int, default=3)
    parser.add_argument("--model", nargs=3, action="append", metavar=("NAME", "WORLD_MODEL", "REWARD_MODEL"),
                        help="a world model and its reward model (repeatable; default: base, and PACE's if present)")
    parser.add_argument("--workspace", default=str(BENCH / "world_model_outcomes"))
    parser.add_argument("--out", default=str(RESULTS / "world_model_outcomes.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

    from wovr_core.pipeline.stage_cache import StageCache

    models = ({name: (Path(wm), Path(rm)) for name, wm, rm in args.model} if args.model
              else {n: pair for n, pair in MODELS.items() if (pair[0] / "config.json").exists()
                    and (pair[1] / "config.json").exists()})
    ws = StageCache(Path(args.workspace).expanduser())
    inputs = {"policy": args.policy, "rollouts_per_task": args.rollouts_per_task}
    if ws.stages.get("rollouts", {}).get("inputs", inputs) != inputs:
        raise SystemExit(f"{ws.root} holds rollouts of other inputs; pass another --workspace")
    rollouts = ws.run("rollouts", lambda: {"inputs": inputs, **_rollouts(args.policy, args.rollouts_per_task,
                                                                         ws.root / "rollouts")})
    replays = {}
    for name, (wm, rm) in models.items():
        record = ws.run(f"replay_{name}", lambda w=wm, r=rm, n=name: _replay(w, r, rollouts["dataset"], ws.root / n))
        if record["world_model"] != str(wm) or record["reward_model"] != str(rm):
            raise SystemExit(f"{ws.root} replayed other models as {name!r}; name this pair differently")
        replays[name] = record
        o = record["outcomes"]
        print(f"{name}: imagined success given a twin success {o['imagined_success_given_success']}, given a twin "
              f"failure {o['imagined_success_given_failure']}; reward model on the recorded frames: "
              f"{o['real_frames_success_given_success']} / {o['real_frames_success_given_failure']}", flush=True)
    result = {
        "what": "whole twin episodes of a policy imagined from their first frame under their recorded actions: "
                "imagined outcome (reward model p >= 0.5 on any frame) vs LIBERO's predicate",
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "policy": args.policy, "episodes": rollouts["episodes"], "twin_successes": rollouts["successes"],
        "init_states": f"{FIRST_INIT_STATE}..{FIRST_INIT_STATE + args.rollouts_per_task - 1} of every task",
        "models": replays,
        "minutes": {name: round(record["minutes"], 1) for name, record in ws.stages.items()},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None},
    }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
