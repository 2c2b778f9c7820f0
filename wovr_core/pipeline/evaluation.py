"""The real evaluation stage: candidate vs incumbent in imagination (and in the twin), and the world model's
reliability on the latest real episodes.

* Imagined success: both policies are rolled out ``rollouts_per_start`` times from the same starts (the first
  frames of the newest real episodes) in the refined world model, scored by the refreshed reward model, with
  the same random stream; success = the episode reached the reward model's done threshold.
* Twin success (``evaluate.twin``): both policies run in the MuJoCo twin through
  :func:`wovr_core.policy.evaluate.evaluate_checkpoint` (LIBERO's own success predicate, fixed init states),
  each into its own folder of the stage, so a killed evaluation resumes its episodes.
* Reliability: open-loop replay of the newest real episodes' actions from their first frame; PSNR over
  ``reliability_horizon`` frames and the reward model's agreement between imagined and real frames
  (:func:`wovr_core.world_model.evaluate_world_model`).
"""

from __future__ import annotations

import math
from pathlib import Path

from wovr_core.config import make_config
from wovr_core.data import EpisodeDataset
from wovr_core.errors import DataError
from wovr_core.pipeline.gate import PolicyEvaluation, SuccessCount, WorldModelReliability
from wovr_core.pipeline.stages import (
    CandidateOutput,
    EvaluationOutput,
    ModelOutput,
    StageContext,
    StageResult,
)
from wovr_core.pipeline.strips import write_strip
from wovr_core.pipeline.training import _device, _require

START_BATCH = 8  # starts imagined together (x rollouts_per_start rollouts)


def twin_success(checkpoint: Path, config, out: Path) -> tuple[SuccessCount, dict]:
    """(overall, per task ``{task: [successes, episodes]}``) of a checkpoint in the twin."""
    try:
        from wovr_core.policy.evaluate import evaluate_checkpoint
    except ImportError as e:
        raise _require("twin evaluation", e) from e
    results = evaluate_checkpoint(checkpoint, config, out, progress=False)
    per_task = {t["task"]: [int(t["successes"]), int(t["episodes"])] for t in results["tasks"]}
    return SuccessCount(int(results["successes"]), int(results["episodes"])), per_task


def _imagined_success(token_policy, env, starts, rollouts: int, temperature: float, seed: int
                      ) -> tuple[SuccessCount, dict]:
    from wovr_core.rl import imagined_success

    per_task = imagined_success(env, token_policy, starts, rollouts, temperature, seed, START_BATCH)
    total = SuccessCount(sum(s for s, _ in per_task.values()), sum(n for _, n in per_task.values()))
    return total, {task: list(count) for task, count in per_task.items()}


def _reliability(ctx: StageContext, world, scorer, latest: list[tuple[Path, int]]
                 ) -> tuple[WorldModelReliability, list[float], str | None]:
    from wovr_core.world_model import evaluate_world_model
    from wovr_core.world_model.config import WorldModelEvalConfig
    from wovr_core.world_model.data import load_episode, open_datasets
    from wovr_core.world_model.evaluate import rollout_open_loop

    horizon = ctx.config.evaluate.reliability_horizon
    roots = sorted({root for root, _ in latest})
    datasets = open_datasets(roots, world.config.cameras)
    keys = [(roots.index(root), index) for root, index in latest]
    eval_config = make_config(WorldModelEvalConfig, "tiny", {"horizons": [horizon], "videos": 0,
                                                             "controllability": False, "seed": ctx.config.seed})
    try:
        report = evaluate_world_model(world, datasets, keys, eval_config, ctx.work_dir / "world_model_eval",
                                      scorer=lambda frames, task: scorer.success_probability(frames, task))
    except DataError as e:  # e.g. every recent episode is shorter than one chunk
        ctx.log.warning("world-model reliability not measured: %s", e)
        return WorldModelReliability(0, None, None, horizon), [], None
    by_horizon = report.get("psnr", {})
    measured = by_horizon.get(str(horizon)) or (by_horizon[max(by_horizon, key=int)] if by_horizon else None)
    agreement = report.get("reward_agreement", {}).get("label_agreement")
    reliability = WorldModelReliability(len(report["episodes"]), measured["mean"] if measured else None,
                                        agreement, horizon)
    strip = None
    episodes = [load_episode(datasets, k, world.config.cameras, world.config.image_size) for k in keys[:3]]
    chunk = world.config.chunk_frames
    length = min(len(e) for e in episodes) - 1
    if length >= chunk:
        real, imagined = rollout_open_loop(world, episodes, min(math.ceil(horizon / chunk), length // chunk))
        cam = world.config.cameras[0]
        strip = ctx.workspace.rel(write_strip(ctx.work_dir / "imagined_vs_real.png",
                                              [(real[cam][i], imagined[cam][i]) for i in range(len(episodes))]))
    return reliability, list(report.get("psnr_per_frame", [])), strip


def evaluate_stage(ctx: StageContext) -> StageResult:
    try:
        from wovr_core.policy.checkpoint import checkpoint_id
        from wovr_core.policy.vla_policy import load_vla_policy
        from wovr_core.reward import SuccessClassifier
        from wovr_core.rl import VLATokenPolicy, WorldModelEnv
        from wovr_core.rl.starts import resize_start, start_from_dataset
        from wovr_core.world_model import WorldModel
    except ImportError as e:
        raise _require("imagined evaluation", e) from e
    ws, cfg = ctx.workspace, ctx.config.evaluate
    device = _device(ctx)
    wm_dir = ws.abs(ctx.output("world_model", ModelOutput).path)
    reward_dir = ws.abs(ctx.output("reward", ModelOutput).path)
    world = WorldModel.load(wm_dir, device=device).prepare_for_inference()
    world.use_action_guidance(ctx.config.rl.env.action_guidance)
    scorer = SuccessClassifier.load(reward_dir, device=device)
    env = WorldModelEnv(world, scorer, ctx.config.rl.env)
    cameras = list(world.config.cameras)
    starts = []
    for root, index in ctx.latest_real_episodes(cfg.starts):
        with EpisodeDataset(root, on_error="skip") as dataset:
            starts.append(resize_start(start_from_dataset(dataset, index, 0, cameras=cameras), world.config.image_size))
    if not starts:
        raise DataError("no real episodes to start the evaluation from")
    directories = {"candidate": ws.abs(ctx.output("rl", CandidateOutput).checkpoint),
                   "incumbent": ws.abs(ctx.state.incumbent.checkpoint)}
    evaluations = {}
    for who, directory in directories.items():
        policy = load_vla_policy(directory, device=device, seed=cfg.seed)
        imagined, imagined_tasks = _imagined_success(VLATokenPolicy(policy), env, starts, cfg.rollouts_per_start,
                                                     cfg.temperature, cfg.seed)
        policy.close()
        twin_count, twin_tasks = (twin_success(directory, cfg.twin_eval, ctx.work_dir / f"twin-{who}") if cfg.twin
                                  else (None, {}))
        per_task = {t: {"imagined": imagined_tasks.get(t), "twin": twin_tasks.get(t)}
                    for t in sorted(set(imagined_tasks) | set(twin_tasks))}
        evaluations[who] = PolicyEvaluation(checkpoint_id(directory), imagined, twin_count, per_task)
        ctx.log.info("%s %s: imagined %d/%d%s", who, evaluations[who].checkpoint_id, imagined.successes,
                     imagined.trials, f", twin {twin_count.successes}/{twin_count.trials}" if twin_count else "")
    reliability, curve, strip = _reliability(ctx, world, scorer, ctx.latest_real_episodes(cfg.reliability_episodes))
    notes = [] if cfg.twin else ["no twin evaluation (evaluate.twin is off)"]
    output = EvaluationOutput(evaluations["candidate"], evaluations["incumbent"], reliability, strip, curve, notes)
    metrics = {"candidate_imagined": evaluations["candidate"].imagined.rate,
               "incumbent_imagined": evaluations["incumbent"].imagined.rate,
               "psnr_db": reliability.psnr_db, "reward_agreement": reliability.reward_agreement}
    return StageResult(output, metrics, inputs=[*directories.values(), wm_dir, reward_dir])
