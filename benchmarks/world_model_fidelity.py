"""World-model fidelity on held-out episodes: PSNR/SSIM at 8/32/128 frames, reward agreement, controllability.

    python benchmarks/world_model_fidelity.py [--train-set key=value ...]   # prepare, train, evaluate
    python benchmarks/world_model_fidelity.py --run RUN_DIR                 # evaluate an existing train-wm run

Without ``--run`` the benchmark builds its own run, stage-cached in a workspace outside the repo (default
~/.cache/wovr/bench/wm_bench; a rerun skips finished stages, an interrupted training resumes, and a rerun that
only raises ``--train-set max_steps=`` (or another setting train-wm lets a resumed run change) trains on):

1. the twin's scripted demos: the noisy-expert dataset of benchmarks/reward_model.py (collected if missing);
   ``--demo-noise exploring``: the same layouts and expert with random excursions (``ExpertConfig``'s
   ``exploring`` preset), in ~/.cache/wovr/bench/libero_object_exploring;
2. ``base_rollouts``: rollouts of the libero_object base policy of benchmarks/base_policy.py in the twin
   (``--rollouts-per-task`` per task, LIBERO init states 10.., away from the base evaluation's 0-9), with
   LIBERO's predicate as their success label: the policy's own successes and failures;
3. ``world_model``: ``wovr train-wm`` on both (``TRAIN_SETTINGS`` plus ``--train-set`` overrides).

Then open-loop replay of each held-out episode's real actions from its first frame (see ``wovr eval-wm``): the
model never sees another real frame. With a reward model, each labelled episode is also imagined whole and its
imagined outcome compared with the recorded one. ``--data DIR`` evaluates those episodes instead of the run's
held-out split (e.g. rollouts of another policy, which the model never saw); ``--fresh-rollouts N`` records (once,
shared by every workspace) and evaluates N new base-policy rollouts per task from LIBERO init states 30.., which
no run trained on: the same episodes for models trained on different data. Videos, the full-size frame grid and
the report go to the workspace; the summary goes to benchmarks/results/world_model_fidelity.json and a small
grid of two episodes (per camera, every 16th frame: real row above imagined row) to
benchmarks/results/world_model_fidelity.png.
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
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
GRID_WIDTH = 640  # pixels of the PNG kept in the repo
DEMOS = "~/.cache/wovr/bench/libero_object_{noise}"  # the noisy one is shared with benchmarks/reward_model.py
BASE_POLICY = "~/.cache/wovr/bench/base_policy/libero_object-n3-s0/run/policy"
ROLLOUT_FIRST_INIT_STATE = 10  # the base evaluation uses LIBERO's init states 0-9
FRESH_FIRST_INIT_STATE = 30  # --fresh-rollouts: past the training rollouts' states at any --rollouts-per-task <= 20
FRESH_ROLLOUTS = "~/.cache/wovr/bench/wm_fresh_rollouts_{n}"
# One torch thread (a second job shares the 2 cores); a validation every 250 steps decides when it stops.
# Imagination in bfloat16: the same PSNR as float32 to 0.1 dB, and about 1.5x faster on this CPU's AMX
# (benchmarks/imagination_speed.py follows the model's dtype); a CPU without bfloat16 units wants float32.
TRAIN_SETTINGS = ["threads=1", "ae_max_steps=5500", "ae_val_every=250", "max_steps=20000", "val_every=250",
                  "checkpoint_every=250", "model.dtype=bfloat16"]


def record_base_rollouts(policy: Path, out: Path, per_task: int, first_init_state: int = ROLLOUT_FIRST_INIT_STATE,
                         label: str = "base rollouts") -> dict:
    """The base policy's rollouts on every libero_object task, written as a ``source="policy"`` dataset."""
    from wovr_core.config import make_config
    from wovr_core.rl.budget import TrajectoryBudget
    from wovr_core.rl.pace import record_twin_rollouts
    from wovr_core.rl.run_config import RLRunConfig

    cfg = make_config(RLRunConfig, "tiny", ["twin.suite=libero_object", f"pace.rollouts_per_task={per_task}",
                                            f"pace.first_init_state={first_init_state}"])
    summary = record_twin_rollouts(cfg, policy, out / "dataset", TrajectoryBudget(out / "budget.json"), label=label)
    return {**summary, "dataset": str(out / "dataset"), "policy": str(policy)}


def fresh_rollouts(policy: Path, per_task: int) -> Path:
    """The dataset of ``--fresh-rollouts``: recorded on first use, then reused."""
    from wovr_core.pipeline.stage_cache import StageCache

    stages = StageCache(Path(FRESH_ROLLOUTS.format(n=per_task)).expanduser())
    record = stages.run("rollouts", lambda: record_base_rollouts(policy, stages.root, per_task, FRESH_FIRST_INIT_STATE,
                                                                 label="fresh rollouts"))
    return Path(record["dataset"])


def only_resumable_changes(old: list[str], new: list[str]) -> bool:
    """Do two lists of train settings differ only in what a resumed run may change (max_steps, patience...)?"""
    from wovr_core.config import make_config, to_dict
    from wovr_core.world_model.config import WorldModelTrainConfig
    from wovr_core.world_model.train import RESUMABLE_CHANGES

    a, b = (to_dict(make_config(WorldModelTrainConfig, "tiny", s)) for s in (old, new))
    return all(a.get(k) == b.get(k) for k in a.keys() | b.keys() if k not in RESUMABLE_CHANGES)


def prepare_run(args, parser) -> tuple[Path, dict]:
    """Demos, base-policy rollouts and a trained world model (stage-cached); returns the train-wm run and its
    stage record."""
    from reward_model import ensure_dataset

    from wovr_core.config import make_config
    from wovr_core.pipeline.stage_cache import StageCache
    from wovr_core.world_model import train_world_model
    from wovr_core.world_model.config import WorldModelTrainConfig

    policy = Path(args.base_policy).expanduser()
    if not (policy / "config.json").exists():
        parser.error(f"{policy}: no base policy; train it with: python benchmarks/base_policy.py --suite libero_object")
    stages = StageCache(Path(args.workspace).expanduser())
    demos = Path(DEMOS.format(noise=args.demo_noise)).expanduser()
    ensure_dataset(demos, args.demo_noise)
    rollouts = stages.run("base_rollouts", lambda: record_base_rollouts(policy, stages.root / "base_rollouts",
                                                                         args.rollouts_per_task))
    run = stages.root / "wm_run"
    settings = [*TRAIN_SETTINGS, *args.train_set]
    done = stages.stages.get("world_model")
    earlier_minutes = 0.0
    if done is not None and done.get("settings") != settings:
        if not only_resumable_changes(done.get("settings", []), settings):
            parser.error(f"{stages.root} holds a world model trained with {done.get('settings')}; choose another "
                         f"--workspace for other settings")
        # e.g. a larger max_steps: train-wm continues the finished run from its last checkpoint.
        stages.forget("world_model")
        earlier_minutes = done["minutes"] + done.get("earlier_minutes", 0.0)

    def train() -> dict:
        cfg = make_config(WorldModelTrainConfig, "tiny", settings)
        summary = train_world_model(cfg, [demos, Path(rollouts["dataset"])], run, preset="tiny")
        return {"run": str(run), "best": summary["best"], "global_step": summary["global_step"],
                "settings": settings, "earlier_minutes": earlier_minutes}

    return run, stages.run("world_model", train)


def main() -> None:
    from wovr_core.config import add_config_arguments, config_from_args
    from wovr_core.world_model.config import WorldModelEvalConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None,
                        help="evaluate this train-wm run directory (held-out episodes from its split) instead of "
                             "preparing and training the benchmark's own run")
    parser.add_argument("--data", action="append", default=[], metavar="DIR",
                        help="evaluate every episode of these datasets (episodes the model never saw, e.g. another "
                             "policy's rollouts) instead of the run's held-out episodes")
    parser.add_argument("--workspace", default="~/.cache/wovr/bench/wm_bench",
                        help="stage cache of the benchmark's own run (base rollouts, train-wm run)")
    parser.add_argument("--fresh-rollouts", type=int, default=0, metavar="N",
                        help="evaluate N new base-policy rollouts per task (init states 30..) instead of the run's "
                             "held-out split")
    parser.add_argument("--base-policy", default=BASE_POLICY, help="libero_object base policy checkpoint")
    parser.add_argument("--rollouts-per-task", type=int, default=4, help="base-policy rollouts per task")
    parser.add_argument("--demo-noise", default="noisy", choices=["noisy", "exploring"],
                        help="expert noise preset of the demos (exploring: with random excursions, which show the "
                             "model actions its frames do not predict)")
    parser.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                        help="WorldModelTrainConfig override of the benchmark's run (repeatable)")
    parser.add_argument("--reward-model", default="~/.cache/wovr/bench/reward_model_codec",
                        help="reward model for the success-probability agreement (skipped if absent); one trained "
                             "on this world model's view of the episodes: benchmarks/reward_model.py --world-model")
    parser.add_argument("--workdir", default="~/.cache/wovr/bench/world_model_fidelity",
                        help="videos, frame grid and the full report")
    parser.add_argument("--out", default=str(RESULTS / "world_model_fidelity.json"))
    add_config_arguments(parser, WorldModelEvalConfig)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MUJOCO_GL", "egl")  # the base rollouts render offscreen
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

    import cv2
    import torch

    from wovr_core.world_model.data import open_datasets
    from wovr_core.world_model.eval_cli import resolve_run
    from wovr_core.world_model.evaluate import evaluate_world_model, format_controllability, load_scorer
    from wovr_core.world_model.model import WorldModel

    cfg = config_from_args(args, WorldModelEvalConfig)
    if not any(o.startswith("videos=") for o in args.overrides):
        cfg = dataclasses.replace(cfg, videos=2)  # the grid kept in the repo shows two episodes
    torch.set_num_threads(cfg.threads or 1)  # one thread: a shared machine's busy cores make OpenMP waits costly
    trained = None
    if args.run:
        run = args.run
    else:
        run, trained = prepare_run(args, parser)
        run = str(run)
    model_dir, split_path = resolve_run(run)
    if split_path is None:
        parser.error(f"{run}: no split.json (pass a train-wm run directory)")
    split = json.loads(split_path.read_text())
    model = WorldModel.load(model_dir).prepare_for_inference().use_action_guidance(cfg.action_guidance)
    if args.fresh_rollouts:
        if args.data:
            parser.error("--fresh-rollouts and --data both choose the evaluated episodes; pass one")
        args.data = [str(fresh_rollouts(Path(args.base_policy).expanduser(), args.fresh_rollouts))]
    if args.data:
        datasets = open_datasets(args.data, model.config.cameras)
        keys = [(d, ep.episode_index) for d, ds in enumerate(datasets) for ep in ds.episodes]
    else:
        datasets = open_datasets(split["datasets"], model.config.cameras)
        keys = [tuple(k) for k in split["val"]]
    reward_dir = Path(args.reward_model).expanduser()
    scorer = load_scorer("reward_model", reward_dir) if (reward_dir / "config.json").exists() else None
    workdir = Path(args.workdir).expanduser()
    start = time.perf_counter()
    # The controllability probe is fitted on the run's training episodes; with --data, on the evaluated ones
    # (as wovr eval-wm --data does).
    probe_keys = [] if args.data else [tuple(k) for k in split["train"]]
    report = evaluate_world_model(model, datasets, keys, cfg, workdir, scorer, probe_keys)
    manifest = json.loads((model_dir / "manifest.json").read_text()) if (model_dir / "manifest.json").exists() else {}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")  # beside the JSON: another --out never overwrites the repo's grid
    grid = cv2.imread(str(workdir / "grid.png")) if cfg.videos else None  # videos=0 draws no grid
    if grid is not None:  # downscaled, 128-colour palette: a few hundred kB in the repo
        from PIL import Image

        small = cv2.resize(grid, (GRID_WIDTH, round(grid.shape[0] * GRID_WIDTH / grid.shape[1])),
                           interpolation=cv2.INTER_AREA)
        Image.fromarray(small[..., ::-1]).quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
            png, optimize=True)
    control = report.get("controllability", {})
    result = {
        "what": "open-loop replay of held-out episodes' real actions from their first frame (PSNR dB, SSIM: mean "
                "over the first h imagined frames)",
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "run": run,
        "model": str(model_dir), "model_stage": manifest.get("stage"), "model_step": manifest.get("step"),
        "model_validation": manifest.get("metrics"),
        "action_guidance": model.config.action_guidance,
        "datasets": args.data or split["datasets"],
        "evaluated": ("--fresh-rollouts episodes" if args.fresh_rollouts
                      else "--data episodes" if args.data else "held-out split"),
        "training_minutes": None if trained is None else round(trained["minutes"] + trained.get("earlier_minutes", 0.0), 1),
        "held_out_episodes": len(report["episodes"]),
        "psnr": report["psnr"], "ssim": report["ssim"],
        "psnr_baselines": report["psnr_baselines"], "psnr_baselines_note": report["psnr_baselines_note"],
        "reward_agreement": report.get("reward_agreement"),
        "episode_outcomes": report.get("outcomes"),
        "reward_model": str(reward_dir) if scorer is not None else None,
        "controllability": {k: v for k, v in control.items() if k != "per_command"},
        "controllability_per_command": control.get("per_command"),
        "lpips": None, "fvd": None, "note": report["lpips_fvd_note"],
        "grid_png": (f"{png.name} beside this file (real rows above imagined rows, per camera)"
                     if grid is not None else None),
        "artifacts": str(workdir),
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_1m": os.getloadavg()[0]},
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    base = report["psnr_baselines"]
    for h, m in report["psnr"].items():
        print(f"horizon {h:>4}: PSNR {m['mean']:.2f} dB (codec {base['codec'][h]['mean']:.2f}, hold "
              f"{base['hold'][h]['mean']:.2f}), SSIM {report['ssim'][h]['mean']:.3f} ({m['episodes']} episodes)")
    if report.get("reward_agreement"):
        print("reward agreement:", json.dumps(report["reward_agreement"]))
    if report.get("outcomes"):
        print("whole episodes imagined:", json.dumps(report["outcomes"]))
    if control:
        print(f"controllability: {format_controllability(control)}")
    print(f"videos and grid in {workdir}; wrote {out}")


if __name__ == "__main__":
    main()
