"""WoVR on a LIBERO suite in the twin, against same-budget online GRPO in the twin itself.

    python benchmarks/libero_wovr.py --suite libero_object            # the full run (CPU: about two days)
    python benchmarks/libero_wovr.py --suite libero_object --smoke    # every stage at toy size, 1 task (minutes)

One command, stage-cached in a workspace (default ~/.cache/wovr/bench/libero_wovr/<suite>[-smoke]-<hash>/): each stage
records itself in ``stages.json`` when it finishes and is skipped on a re-run; an interrupted stage resumes
where its trainer can (policy SFT, world model, RL updates, evaluations) or starts again. Stages:

1. ``demos``           noise-injected scripted demonstrations on fresh layouts (never LIBERO's init states)
2. ``base_policy``     ``wovr train-policy`` (tiny VLA, no proprio: the world model imagines pixels only)
3. ``base_eval``       ``wovr eval`` on LIBERO's fixed init states 0..E-1 of every task
4. ``base_rollouts``   twin rollouts of the base policy (init states E.., away from the evaluation's), counted
                       against the real-trajectory budget: the world model's data beside the demos
5. ``world_model``     ``wovr train-wm`` on demos + base rollouts;  6. ``reward``: ``wovr train-reward`` on the same
7. ``wovr``            ``wovr rl --pace``: RL stage 1 -> new twin rollouts (budget) -> refine WM + reward -> stage 2
8. ``stage1_eval`` / ``final_eval``: the policy after stage 1 (= WoVR without PACE) and after stage 2
9. ``baseline``        ``wovr rl --baseline-twin`` from the base policy with the real trajectories WoVR used
                       (base rollouts + PACE rollouts), then ``baseline_eval``
10. ablations (``--no-ablations`` skips them), each a full run minus one part, then its twin evaluation:
    ``without_kir`` (PACE with rl.keyframes.kir_share=0), ``without_post_success_masking`` (PACE with
    rl.grpo.mask_after_success=false), ``without_pace`` (imagination RL for stage 1 + stage 2 updates in the
    base world model, no new real trajectories)
11. ``imagined_<policy>``  each evaluated policy in the base world model + reward model from the first frames of
    the base rollouts: imagined success beside its twin success, and their Pearson r across policies

Writes benchmarks/results/libero_wovr.json (``libero_wovr_smoke.json`` with --smoke), one entry per suite:
``{suite: {"base", "wovr", "online_grpo", "ablations": {...}, "imagined_vs_real": {...}, "budget": {...}, ...}}``
with success as fractions of LIBERO's predicate, per task too; a run of one suite keeps the other's entry.
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
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# Imagined success of each evaluated policy: rollouts from the first frames of the base rollouts, at sampling
# temperature 1 (the twin evaluation decodes greedily; imagination needs a temperature > 0).
IMAGINED_STARTS_PER_TASK = 5
IMAGINED_ROLLOUTS_PER_START = 4
IMAGINED_TEMPERATURE = 1.0
ABLATIONS = {  # name -> RLRunConfig overrides of a full PACE run (without_pace is a run of its own kind)
    "without_kir": ["rl.keyframes.kir_share=0"],
    "without_post_success_masking": ["rl.grpo.mask_after_success=false"],
}

# Toy sizes of --smoke: every stage runs, on one task, in minutes on a CPU (the numbers mean nothing).
SMOKE = {
    # The reward model holds out episodes of each outcome twice (test, validation): >= 3 successes and 3 failures.
    "demos_per_task": 4, "eval_episodes": 1, "base_rollouts_per_task": 3, "pace_rollouts_per_task": 1,
    "policy": ["max_steps=20", "batch_size=4", "val_every=10", "checkpoint_every=10"],
    "world_model": ["model.image_size=32",
                    'model.codec.frame_ae={"block_channels": [8, 16], "latent_channels": 4, "mid_blocks": 0}',
                    'model.denoiser.transformer={"patch_size": [1, 2, 2], "num_attention_heads": 2, '
                    '"attention_head_dim": 16, "ffn_dim": 64, "num_layers": 1, "freq_dim": 32, "rope_max_seq_len": 32}',
                    "model.denoiser.action_hidden=32", "model.denoiser.action_token_dim=16", "batch_size=4",
                    "ae_batch_size=8", "ae_max_steps=3", "max_steps=3", "ae_val_every=2", "val_every=2",
                    "checkpoint_every=2", "val_clips=4", "val_rollout_frames=8", "log_images_every=2",
                    "warmup_steps=1", "val_fraction=0.34"],
    "reward": ["model.image_size=32", "max_steps=4", "val_every=2", "batch_size=8"],
    "rl": ["rl.updates=1", "rl.groups_per_update=1", "rl.grpo.group_size=2", "rl.env.max_steps=16",
           "pace.stage1_updates=1", "pace.stage2_updates=1", "checkpoint_every=1"],
    "twin_max_steps": 40,
}
# The full run: the base policy of benchmarks/base_policy.py (20 demos per task), the paper's 1,500 base + 1,000
# updated-policy trajectories scaled to 10 tasks (150 + 100 per task would take days of twin time on a CPU: 15 + 10).
FULL = {"demos_per_task": 20, "eval_episodes": 10, "base_rollouts_per_task": 15, "pace_rollouts_per_task": 10,
        "policy": [], "world_model": [], "reward": [],
        "rl": ["pace.stage1_updates=20", "pace.stage2_updates=20", "checkpoint_every=2",
               "pace.world_model.max_steps=5000"], "twin_max_steps": 0}


def _eval(args, sizes, checkpoint: Path, out: Path) -> dict[str, Any]:
    from wovr_core.policy.evaluate import EvalConfig, evaluate_checkpoint, format_table

    cfg = EvalConfig(suite=args.suite, tasks=tuple(args.tasks), episodes_per_task=sizes["eval_episodes"],
                     workers=args.workers, videos=0 if args.smoke else 2, seed=args.seed,
                     max_steps=sizes["twin_max_steps"])
    results = evaluate_checkpoint(checkpoint, cfg, out, progress=True)
    print(format_table(results))
    return {"average_success": results["average_success"], "episodes": results["episodes"],
            "tasks": [{k: t[k] for k in ("task_id", "success_rate", "episodes")} for t in results["tasks"]]}


def _rl_config(args, sizes, budget: int = 0, extra: tuple[str, ...] = ()):
    from wovr_core.config import make_config
    from wovr_core.rl.run_config import RLRunConfig

    tasks = json.dumps(list(args.tasks))
    overrides = [f"twin.suite={args.suite}", f"eval.suite={args.suite}", f"twin.tasks={tasks}",
                 f"pace.tasks={tasks}", f"pace.rollouts_per_task={sizes['pace_rollouts_per_task']}",
                 f"pace.first_init_state={sizes['eval_episodes'] + sizes['base_rollouts_per_task']}",
                 f"twin.first_init_state={sizes['eval_episodes']}", f"twin.max_steps={sizes['twin_max_steps']}",
                 f"twin.processes={str(not args.smoke and (os.cpu_count() or 1) >= 8).lower()}", f"real_budget={budget}", f"seed={args.seed}",
                 *sizes["rl"], *[f"pace.world_model.{o}" for o in sizes["world_model"]],
                 *[f"pace.reward.{o}" for o in sizes["reward"]], *args.overrides, *extra]
    return make_config(RLRunConfig, "tiny", overrides)


def _imagined(args, env_config, world_model: str, reward_model: str, starts_dataset: Path,
              policy: Path) -> dict[str, Any]:
    """Success of ``policy`` in imagination (the base world model + reward model, the RL runs' env), per task."""
    from wovr_core.data import EpisodeDataset
    from wovr_core.policy.vla_policy import load_vla_policy
    from wovr_core.reward import SuccessClassifier
    from wovr_core.rl import VLATokenPolicy, WorldModelEnv, imagined_success
    from wovr_core.rl.starts import starts_per_task
    from wovr_core.world_model import WorldModel

    world = WorldModel.load(world_model).prepare_for_inference().use_action_guidance(env_config.action_guidance)
    env = WorldModelEnv(world, SuccessClassifier.load(reward_model), env_config)
    with EpisodeDataset(starts_dataset) as dataset:
        starts = starts_per_task(dataset, IMAGINED_STARTS_PER_TASK, list(world.config.cameras),
                                 world.config.image_size)
    vla = load_vla_policy(policy, seed=args.seed)
    counts = imagined_success(env, VLATokenPolicy(vla), starts, IMAGINED_ROLLOUTS_PER_START, IMAGINED_TEMPERATURE,
                              args.seed)
    vla.close()
    rates = [s / n for s, n in counts.values()]
    return {"average_success": sum(rates) / len(rates), "rollouts": sum(n for _, n in counts.values()),
            "tasks": {task: {"successes": s, "rollouts": n} for task, (s, n) in sorted(counts.items())}}


def _write_results(path: Path, suite: str, entry: dict[str, Any]) -> None:
    """``{suite: entry}`` merged into the results file: a run of one suite keeps the other's."""
    results = {}
    if path.exists():
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError:
            print(f"warning: {path} was not valid JSON; rewriting it with {suite} alone")
    results = results if isinstance(results, dict) else {}
    results[suite] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="libero_object", choices=["libero_object", "libero_spatial"],
                        help="a suite the scripted expert solves")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, task 0 only: checks the plumbing")
    parser.add_argument("--tasks", type=int, nargs="*", default=None, help="task ids (default: all; --smoke: 0)")
    parser.add_argument("--workers", type=int, default=2, help="twin processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="RLRunConfig override for the RL runs, e.g. --set pace.stage2_updates=40")
    parser.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the ablations (w/o KIR, w/o PACE, w/o post-success masking)")
    parser.add_argument("--workspace", default=None, help="stage cache (default ~/.cache/wovr/bench/libero_wovr/...)")
    parser.add_argument("--out", default=None, help="default benchmarks/results/libero_wovr[_smoke].json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

    from wovr_core.pipeline.stage_cache import StageCache
    from wovr_core.rl.reliability import pearson_r
    from wovr_core.sim.suites import task_names

    sizes = SMOKE if args.smoke else FULL
    if args.tasks is None:
        args.tasks = [0] if args.smoke else list(range(len(task_names(args.suite))))
    # Settings in the folder name: changed sizes or overrides get a fresh workspace, never stale stages.
    settings = json.dumps([sizes, args.tasks, args.seed, args.overrides], sort_keys=True)
    tag = f"{args.suite}{'-smoke' if args.smoke else ''}-{hashlib.sha1(settings.encode()).hexdigest()[:8]}"
    ws = StageCache(Path(args.workspace or f"~/.cache/wovr/bench/libero_wovr/{tag}").expanduser())
    root = ws.root
    load_before = os.getloadavg()

    def demos():
        import shutil

        from wovr_core.config import make_config
        from wovr_core.sim.collect import CollectConfig, collect
        from wovr_core.sim.experts import ExpertConfig

        shutil.rmtree(root / "demos", ignore_errors=True)  # partial dataset of an interrupted run
        cfg = make_config(CollectConfig, "tiny", {"suite": args.suite, "tasks": args.tasks, "seed": args.seed,
                                                  "episodes_per_task": sizes["demos_per_task"],
                                                  "workers": args.workers,
                                                  "expert": ExpertConfig.PRESETS["noisy"]})  # as base_policy.py
        return {"summary": collect(cfg, root / "demos"), "dataset": str(root / "demos")}

    def base_policy():
        from wovr_core.config import make_config
        from wovr_core.train.policy_config import PolicyTrainConfig
        from wovr_core.train.policy_trainer import train_policy

        cfg = make_config(PolicyTrainConfig, "tiny", ["model.use_state=false", f"seed={args.seed}", *sizes["policy"]])
        summary = train_policy(cfg, [root / "demos"], root / "base_run", preset="tiny")
        return {"policy": str(summary["policy"]), "steps": summary["steps"]}

    demo = ws.run("demos", demos)
    base = ws.run("base_policy", base_policy)
    base_ckpt = Path(base["policy"])
    base_eval = ws.run("base_eval", lambda: _eval(args, sizes, base_ckpt, root / "base_eval"))

    def base_rollouts():
        import dataclasses

        from wovr_core.rl.budget import TrajectoryBudget
        from wovr_core.rl.pace import record_twin_rollouts

        cfg = _rl_config(args, sizes)
        cfg = dataclasses.replace(cfg, pace=dataclasses.replace(
            cfg.pace, rollouts_per_task=sizes["base_rollouts_per_task"], first_init_state=sizes["eval_episodes"]))
        budget = TrajectoryBudget(root / "base_rollouts" / "budget.json")
        summary = record_twin_rollouts(cfg, base_ckpt, root / "base_rollouts" / "dataset", budget, label="base rollouts")
        return {**summary, "dataset": str(root / "base_rollouts" / "dataset"), "trajectories": budget.used}

    rollouts = ws.run("base_rollouts", base_rollouts)
    data = [root / "demos", Path(rollouts["dataset"])]

    def world_model():
        from wovr_core.config import make_config
        from wovr_core.world_model import train_world_model
        from wovr_core.world_model.config import WorldModelTrainConfig

        cfg = make_config(WorldModelTrainConfig, "tiny", [f"seed={args.seed}", *sizes["world_model"]])
        summary = train_world_model(cfg, data, root / "wm_run", preset="tiny", progress=True)
        return {"model": str(summary.get("model", root / "wm_run" / "model")), "best": summary.get("best", {})}

    def reward():
        from wovr_core.config import make_config
        from wovr_core.reward import train_reward_model
        from wovr_core.reward.config import RewardTrainConfig
        from wovr_core.world_model import reward_view

        cfg = make_config(RewardTrainConfig, "tiny", sizes["reward"])
        # It scores imagined frames: trained on the world model's view of the episodes as well.
        view = reward_view(wm["model"], cfg.world_model_view, cfg.view_anchor_every)
        report = train_reward_model(cfg, data, root / "reward", preset="tiny", view=view)
        return {"model": str(root / "reward"), "report": {k: v for k, v in report.items()
                                                          if isinstance(v, (int, float))}}

    wm = ws.run("world_model", world_model)
    rm = ws.run("reward", reward)

    def wovr():
        from wovr_core.rl.pace import run_pace

        result = run_pace(_rl_config(args, sizes), base_ckpt, wm["model"], rm["model"], data, root / "wovr")
        return {"policy": result["policy"], "stage1_policy": result["stages"]["stage1"]["policy"],
                "pace_trajectories": result["real_trajectories"]}

    method = ws.run("wovr", wovr)
    stage1_eval = ws.run("stage1_eval", lambda: _eval(args, sizes, Path(method["stage1_policy"]), root / "stage1_eval"))
    final_eval = ws.run("final_eval", lambda: _eval(args, sizes, Path(method["policy"]), root / "final_eval"))
    budget = rollouts["trajectories"] + method["pace_trajectories"]

    def baseline():
        from wovr_core.rl.run import run_twin_grpo

        summary = run_twin_grpo(_rl_config(args, sizes, budget), base_ckpt, root / "baseline")
        return {"policy": summary["policy"], "updates": summary["updates"],
                "real_trajectories": summary["real_trajectories"]}

    base_line = ws.run("baseline", baseline)
    baseline_eval = ws.run("baseline_eval", lambda: _eval(args, sizes, Path(base_line["policy"]), root / "baseline_eval"))

    ablations: dict[str, dict[str, Any]] = {}
    if args.ablations:
        def pace_ablation(name: str):
            def run():
                from wovr_core.rl.pace import run_pace

                cfg = _rl_config(args, sizes, extra=tuple(ABLATIONS[name]))
                result = run_pace(cfg, base_ckpt, wm["model"], rm["model"], data, root / name)
                return {"policy": result["policy"], "real_trajectories": rollouts["trajectories"]
                        + result["real_trajectories"]}
            return run

        def without_pace():
            from wovr_core.rl.run import run_imagination_rl

            cfg = _rl_config(args, sizes)
            summary = run_imagination_rl(cfg, base_ckpt, wm["model"], rm["model"], data, root / "without_pace",
                                         updates=cfg.pace.stage1_updates + cfg.pace.stage2_updates)
            return {"policy": summary["policy"], "real_trajectories": rollouts["trajectories"]}

        runs = {**{name: pace_ablation(name) for name in ABLATIONS}, "without_pace": without_pace}
        for name, run in runs.items():
            ablation = ws.run(name, run)
            ablations[name] = {**ablation, "eval": ws.run(f"{name}_eval", lambda a=ablation, n=name: _eval(
                args, sizes, Path(a["policy"]), root / f"{n}_eval"))}

    # Imagined vs real success of every evaluated policy (same starts, same sampling stream for each).
    evaluated = {"base": (base_ckpt, base_eval), "wovr_stage1": (Path(method["stage1_policy"]), stage1_eval),
                 "wovr": (Path(method["policy"]), final_eval),
                 "online_grpo": (Path(base_line["policy"]), baseline_eval),
                 **{name: (Path(a["policy"]), a["eval"]) for name, a in ablations.items()}}
    checkpoints = {}
    env_config = _rl_config(args, sizes).rl.env  # the RL runs' imagined env, guidance included
    for name, (policy, real) in evaluated.items():
        imagined = ws.run(f"imagined_{name}", lambda p=policy: _imagined(
            args, env_config, wm["model"], rm["model"], Path(rollouts["dataset"]), p))
        checkpoints[name] = {"imagined": imagined["average_success"], "real": real["average_success"],
                             "policy": str(policy), "imagined_per_task": imagined["tasks"]}
    r = pearson_r([(c["imagined"], c["real"]) for c in checkpoints.values()])

    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        gpu = None
    minutes = {name: round(record["minutes"], 2) for name, record in ws.stages.items()}
    entry = {
        "what": f"WoVR (RL in a learned world model + KIR + PACE) vs same-budget online GRPO in the twin, "
                f"{args.suite}, success on LIBERO's fixed init states 0..{sizes['eval_episodes'] - 1} of each task"
                + (" [SMOKE: toy sizes, numbers meaningless]" if args.smoke else ""),
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "base": base_eval["average_success"], "wovr": final_eval["average_success"],
        "online_grpo": baseline_eval["average_success"],
        "ablations": {"stage1_only": stage1_eval["average_success"],
                      **{name: a["eval"]["average_success"] for name, a in ablations.items()}},
        "imagined_vs_real": {
            "pearson_r": r, "checkpoints": checkpoints,
            "how": f"each policy in the base world model + reward model, {IMAGINED_ROLLOUTS_PER_START} rollouts at "
                   f"temperature {IMAGINED_TEMPERATURE} from the first frames of up to {IMAGINED_STARTS_PER_TASK} "
                   f"base rollouts per task; real: the twin evaluation above"},
        "episodes_per_task": sizes["eval_episodes"], "tasks": args.tasks, "smoke": args.smoke,
        "per_task": {"base": base_eval["tasks"], "wovr": final_eval["tasks"], "online_grpo": baseline_eval["tasks"],
                     **{name: a["eval"]["tasks"] for name, a in ablations.items()}},
        "budget": {
            "real_trajectories": {"wovr": budget, "base_rollouts": rollouts["trajectories"],
                                  "pace_rollouts": method["pace_trajectories"],
                                  "online_grpo": base_line["real_trajectories"],
                                  **{name: a["real_trajectories"] for name, a in ablations.items()}},
            "simulator_interaction_during_rl": {"wovr": False, "online_grpo": True},
            "wall_minutes_per_stage": minutes, "wall_hours": round(sum(minutes.values()) / 60, 2),
            "hardware": {"cpus": os.cpu_count(), "gpu": gpu, "platform": platform.platform(),
                         "loadavg_1min_start_end": [load_before[0], os.getloadavg()[0]]}},
        "demos": demo["summary"],
        "workspace": str(root),
    }
    path = Path(args.out) if args.out else RESULTS / f"libero_wovr{'_smoke' if args.smoke else ''}.json"
    _write_results(path, args.suite, entry)
    print(f"{args.suite}: base {100 * entry['base']:.1f}% -> WoVR {100 * entry['wovr']:.1f}%; same-budget twin GRPO "
          f"{100 * entry['online_grpo']:.1f}% ({budget} real trajectories); ablations "
          + ", ".join(f"{k} {100 * v:.1f}%" for k, v in entry["ablations"].items())
          + f"; imagined vs real Pearson r {r if r is None else round(r, 3)}; wrote {path}")


if __name__ == "__main__":
    main()
