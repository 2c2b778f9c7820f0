"""The real training stages, bound to the trainers of wovr_core.world_model, wovr_core.reward and wovr_core.rl.

* ``world_model.pace``: fine-tune the current world model (or train one) on the base data plus every real
  episode ingested so far: PACE co-evolution, automated. The trainer resumes inside the stage's folder.
* ``reward.refresh``: retrain the success classifier on the same data.
* ``rl.grpo``: masked GRPO in imagination from the incumbent policy (a VLA checkpoint), with starts drawn
  from the real episodes (first frames and keyframes: operator-marked and mined, see wovr_core.rl.keyframes).
  It runs the update loop of ``wovr rl`` (:func:`wovr_core.rl.run.train_updates`): a stage killed half-way
  resumes from its last checkpoint.

Each imports its trainer when it runs; a missing one fails the stage with StageUnavailable.
"""

from __future__ import annotations

import logging
from pathlib import Path

from wovr_core.pipeline.stages import (
    CandidateOutput,
    ModelOutput,
    StageContext,
    StageResult,
    StageUnavailable,
)

log = logging.getLogger(__name__)


def _require(what: str, error: ImportError) -> StageUnavailable:
    return StageUnavailable(f"{what} is not available here ({error}); install wovr[train] (torch, transformers, "
                            "diffusers) on the machine that runs wovr retrain")


def _numbers(summary: dict, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a trainer's summary, flattened (what a manifest's metrics hold)."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_numbers(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def refine_world_model(ctx: StageContext) -> StageResult:
    try:
        from wovr_core.world_model import train_world_model
    except ImportError as e:
        raise _require("the world-model trainer", e) from e
    ws = ctx.workspace
    roots = ctx.data_roots()
    init = ws.abs(ctx.state.world_model) if ctx.state.world_model else None
    out = ctx.work_dir / "run"
    ctx.log.info("%s the world model on %d datasets (PACE: base + all real data)",
                 "fine-tuning" if init else "training", len(roots))
    summary = train_world_model(ctx.config.world_model, roots, out, init_from=init)
    model = Path(summary.get("model", out / "model"))
    output = ModelOutput(ws.rel(model), ctx.state.world_model, [ws.rel(r) for r in roots])
    return StageResult(output, _numbers(summary.get("best", {}), "best."), inputs=[*roots, *([init] if init else [])])


def refresh_reward_model(ctx: StageContext) -> StageResult:
    try:
        from wovr_core.reward import train_reward_model
        from wovr_core.world_model import reward_view
    except ImportError as e:
        raise _require("the reward-model trainer", e) from e
    ws = ctx.workspace
    roots = ctx.data_roots()
    out = ctx.work_dir / "model"
    # It scores imagined frames: trained on this run's world model's view of the episodes as well.
    world_model = ws.abs(ctx.output("world_model", ModelOutput).path)
    cfg = ctx.config.reward
    report = train_reward_model(cfg, roots, out, view=reward_view(world_model, cfg.world_model_view,
                                                                  cfg.view_anchor_every))
    output = ModelOutput(ws.rel(out), ctx.state.reward_model, [ws.rel(r) for r in roots])
    metrics = {k: v for k, v in _numbers(report).items() if not k.startswith("calibration.")}
    return StageResult(output, metrics, inputs=[*roots, world_model])


# ---- RL in imagination ------------------------------------------------------------------------------------------
def _device(ctx: StageContext) -> str:
    import torch

    return ctx.config.evaluate.device or ("cuda" if torch.cuda.is_available() else "cpu")


def imagination_rl(ctx: StageContext) -> StageResult:
    try:
        from wovr_core.policy.checkpoint import checkpoint_id
        from wovr_core.policy.vla_policy import load_vla_policy
        from wovr_core.reward import SuccessClassifier
        from wovr_core.rl import GRPOTrainer, VLATokenPolicy, WorldModelEnv
        from wovr_core.rl.run import POLICY_DIR, train_updates, vla_policy_io
        from wovr_core.rl.run_config import RLRunConfig
        from wovr_core.rl.start_pool import StartPool
        from wovr_core.world_model import WorldModel
    except ImportError as e:
        raise _require("RL in imagination", e) from e
    ws, cfg = ctx.workspace, ctx.config.rl
    incumbent = ctx.state.incumbent
    source = ws.abs(incumbent.checkpoint)
    wm_dir = ws.abs(ctx.output("world_model", ModelOutput).path)
    reward_dir = ws.abs(ctx.output("reward", ModelOutput).path)
    device = _device(ctx)
    policy = load_vla_policy(source, device=device, seed=ctx.config.seed)
    token_policy = VLATokenPolicy(policy)
    world = WorldModel.load(wm_dir, device=device).prepare_for_inference()
    world.use_action_guidance(cfg.env.action_guidance)
    scorer = SuccessClassifier.load(reward_dir, device=device)
    env = WorldModelEnv(world, scorer, cfg.env)
    pool = StartPool(ctx.data_roots(), cfg, scorer, list(world.config.cameras), world.config.image_size,
                     ctx.config.seed)
    ctx.log.info("GRPO from %s: %d updates x %d groups of %d; keyframes available: %s", incumbent.checkpoint_id,
                 cfg.updates, cfg.groups_per_update, cfg.grpo.group_size, pool.keyframes)
    trainer = GRPOTrainer(token_policy, cfg.trainer, cfg.grpo)
    manifest = {"parent": incumbent.checkpoint_id, "run_id": ctx.run_id, "rl_updates": cfg.updates,
                "world_model": ws.rel(wm_dir), "reward_model": ws.rel(reward_dir)}
    # The same update loop as `wovr rl` (wovr_core.rl.run): a killed stage resumes from its last checkpoint.
    run_cfg = RLRunConfig(rl=cfg, checkpoint_every=max(1, min(cfg.updates, 5)), seed=ctx.config.seed)
    summary = train_updates(run_cfg, trainer, env, pool, vla_policy_io(policy, source, manifest), ctx.work_dir,
                            progress=None)
    candidate = ctx.work_dir / POLICY_DIR
    output = CandidateOutput(ws.rel(candidate), checkpoint_id(candidate), incumbent)
    last = summary.get("last", {})
    return StageResult(output, {k: float(v) for k, v in last.items()}, inputs=[source, wm_dir, reward_dir])
