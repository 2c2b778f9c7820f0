"""PACE co-evolution (``wovr rl --pace``): RL stage 1 -> new twin rollouts of the updated policy -> fine-tune
the world model and the reward model on old + new data -> RL stage 2.

Stage-cached in the output folder: each stage writes ``<stage>/done.json`` (its manifest: inputs, outputs,
numbers) when it finishes, and a re-run skips the stages that have one; a killed stage resumes (the RL
stages from their checkpoints, the world-model trainer from its run folder) or restarts (rollouts, reward)::

    stage1/         run_imagination_rl from the given policy, world model and reward model
    rollouts/       dataset/ (episodes of the stage-1 policy in the twin, success = LIBERO's predicate)
    world_model/    train_world_model resuming from the given world model, on --data + rollouts/dataset
    reward/         train_reward_model on the same data
    stage2/         run_imagination_rl from stage 1's policy with the refined models
    budget.json     real (twin) trajectories used: the new rollouts
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wovr_core.config import save_config
from wovr_core.data.schema import SUCCESS_COLUMN
from wovr_core.rl.budget import BUDGET_FILE, TrajectoryBudget
from wovr_core.rl.run_config import RLRunConfig

log = logging.getLogger(__name__)

STAGE_DONE = "done.json"
PACE_STAGES = ("stage1", "rollouts", "world_model", "reward", "stage2")


def _cached_stage(out: Path, name: str, run: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    folder = out / name
    marker = folder / STAGE_DONE
    if marker.exists():
        log.info("PACE %s: done (cached in %s)", name, folder)
        return json.loads(marker.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    result = {"stage": name, **run(folder), "seconds": time.time() - t0}
    tmp = marker.with_name(STAGE_DONE + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    os.replace(tmp, marker)
    return result


def record_twin_rollouts(config: RLRunConfig, policy_dir: str | Path, dataset: str | Path,
                         budget: TrajectoryBudget, progress: bool = True, label: str = "PACE rollouts"
                         ) -> dict[str, Any]:
    """``pace.rollouts_per_task`` twin episodes per task of the policy, written as a ``source="policy"``
    dataset with LIBERO's predicate as the success label; each counted in ``budget`` as it starts.
    ``label``: the progress bar's (the same recording serves base-policy and held-out rollouts)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from wovr_core.data import EpisodeWriter
    from wovr_core.policy.vla_policy import load_vla_policy
    from wovr_core.rl.rollout import collect_rollouts
    from wovr_core.rl.run import resolve_device
    from wovr_core.rl.twin_env import TwinEnv, TwinStart, TwinStarts
    from wovr_core.rl.vla_adapter import VLATokenPolicy

    pace = config.pace
    policy = load_vla_policy(Path(policy_dir).expanduser(), device=resolve_device(config.device), seed=config.seed)
    token_policy = VLATokenPolicy(policy)
    size = int(next(iter(policy.contract.image_shapes.values()))[0])
    cameras = [k.split(".")[-1] for k in policy.contract.image_shapes]
    twin_cfg = dataclasses.replace(config.twin, tasks=pace.tasks or config.twin.tasks,
                                   chunk_size=config.rl.env.chunk_size)
    tasks = TwinStarts(twin_cfg)
    dataset = Path(dataset)
    shutil.rmtree(dataset, ignore_errors=True)  # a partial dataset of a killed attempt: start over
    generator = torch.Generator().manual_seed(config.seed)
    summary = {"episodes": 0, "successes": 0, "frames": 0}
    group = min(pace.rollouts_per_task, 8)  # rollouts stepped together (twins alive at once)
    # LIBERO's predicate at every frame: a rollout ends at its first success, so only a successful episode's
    # last frame is positive (the reward model's tail rule would also label the 5 frames before it).
    with EpisodeWriter(dataset, fps=20, cameras={c: (size, size) for c in cameras}, robot_type="panda_libero_twin",
                       extra_features={SUCCESS_COLUMN: ()}) as writer, \
            TwinEnv(twin_cfg, cameras, size, budget=budget, record=True, budget_use="pace_rollouts") as env:
        bar = tqdm(total=len(tasks.task_ids) * pace.rollouts_per_task, desc=label, unit="ep",
                   disable=not progress)
        for task_id in tasks.task_ids:
            for first in range(0, pace.rollouts_per_task, group):
                n = min(group, pace.rollouts_per_task - first)
                starts = [TwinStart(task_id, min(pace.first_init_state + first + k, tasks.num_init[task_id] - 1),
                                    tasks.names[task_id]) for k in range(n)]
                collect_rollouts(env, token_policy, starts, 1, pace.temperature, generator)
                for ep in env.episodes():
                    writer.start_episode(ep.task, source="policy", success=ep.success, success_source="sim_predicate",
                                         extra={"suite": config.twin.suite, "task_id": ep.task_id,
                                                "init_state": ep.init_state, "pace": True})
                    last = len(ep.actions) - 1
                    for t in range(len(ep.actions)):
                        writer.add_frame({c: ep.frames[c][t] for c in cameras}, ep.states[t],
                                         None if t == 0 else ep.actions[t],
                                         extras={SUCCESS_COLUMN: float(ep.success and t == last)})
                    writer.end_episode()
                    summary["episodes"] += 1
                    summary["successes"] += int(ep.success)
                    summary["frames"] += len(ep.actions)
                    bar.update(1)
        bar.close()
    summary["success_rate"] = float(np.float64(summary["successes"]) / max(summary["episodes"], 1))
    return summary


def run_pace(config: RLRunConfig, policy_dir: str | Path, world_model_dir: str | Path, reward_dir: str | Path,
             data_roots: list[str | Path], out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the five PACE stages into ``out_dir``; returns every stage's manifest."""
    from wovr_core.reward import train_reward_model
    from wovr_core.rl.run import POLICY_DIR, run_imagination_rl
    from wovr_core.world_model import reward_view, train_world_model

    config.validate()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out)
    pace = config.pace
    data = [Path(d).expanduser() for d in data_roots]
    budget = TrajectoryBudget(out / BUDGET_FILE, config.real_budget)
    stages: dict[str, dict[str, Any]] = {}

    def rl_stage(name: str, policy: Path, wm: Path, reward: Path, roots: list[Path], updates: int):
        def run(folder: Path) -> dict[str, Any]:
            rl = dataclasses.replace(config, rl=dataclasses.replace(config.rl, updates=updates))
            summary = run_imagination_rl(rl, policy, wm, reward, roots, folder / "run", progress=progress)
            return {"policy": str(folder / "run" / POLICY_DIR), "inputs": [str(p) for p in (policy, wm, reward)],
                    "last": summary.get("last", {})}
        return _cached_stage(out, name, run)

    stages["stage1"] = rl_stage("stage1", Path(policy_dir).expanduser(), Path(world_model_dir).expanduser(),
                                Path(reward_dir).expanduser(), data, pace.stage1_updates)
    stage1_policy = Path(stages["stage1"]["policy"])

    def rollouts(folder: Path) -> dict[str, Any]:
        summary = record_twin_rollouts(config, stage1_policy, folder / "dataset", budget, progress)
        return {"dataset": str(folder / "dataset"), **summary, "budget": {"limit": budget.limit, "used": budget.used}}

    stages["rollouts"] = _cached_stage(out, "rollouts", rollouts)
    new_data = [*data, Path(stages["rollouts"]["dataset"])]

    def world_model(folder: Path) -> dict[str, Any]:
        summary = train_world_model(pace.world_model, new_data, folder / "run",
                                    init_from=Path(world_model_dir).expanduser(), progress=progress)
        return {"model": str(summary.get("model", folder / "run" / "model")), "data": [str(d) for d in new_data],
                "best": summary.get("best", {})}

    stages["world_model"] = _cached_stage(out, "world_model", world_model)

    def reward(folder: Path) -> dict[str, Any]:
        # Trained on the refined world model's view of the episodes too: imagination shows it no others.
        view = reward_view(stages["world_model"]["model"], pace.reward.world_model_view, pace.reward.view_anchor_every)
        report = train_reward_model(pace.reward, new_data, folder / "model", view=view)
        return {"model": str(folder / "model"), "report": {k: v for k, v in report.items()
                                                          if isinstance(v, (int, float, str))}}

    stages["reward"] = _cached_stage(out, "reward", reward)
    stages["stage2"] = rl_stage("stage2", stage1_policy, Path(stages["world_model"]["model"]),
                                Path(stages["reward"]["model"]), new_data, pace.stage2_updates)
    result = {"policy": stages["stage2"]["policy"], "stages": stages,
              "real_trajectories": TrajectoryBudget(out / BUDGET_FILE).used}
    (out / "pace.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result
