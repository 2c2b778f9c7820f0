"""Promote: apply the gate; a promoted candidate is registered in ``registry/`` and queued for the push.

Also moves the workspace's current world and reward model forward when the world model passed its
reliability checks (whether or not the policy was promoted): the next refinement starts from them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from wovr_core.config import to_dict
from wovr_core.errors import DataError
from wovr_core.pipeline.gate import decide
from wovr_core.pipeline.stages import (
    CandidateOutput,
    EvaluationOutput,
    ModelOutput,
    PromoteOutput,
    StageContext,
    StageResult,
)
from wovr_core.pipeline.workspace import PolicyRef, Workspace
from wovr_core.policy.checkpoint import CONFIG_FILE, checkpoint_id

RELIABILITY_CHECKS = ("reliability_episodes", "world_model_psnr", "reward_agreement")


def register_checkpoint(ws: Workspace, source: Path, name: str, run_id: str = "") -> PolicyRef:
    """Copy a policy checkpoint folder into ``registry/<name>`` (atomically: copy, then rename)."""
    if not (source / CONFIG_FILE).is_file():
        raise DataError(f"{source}: not a policy checkpoint (no {CONFIG_FILE})")
    target = ws.registry / name
    expected = checkpoint_id(source).split("@")[1]
    if target.exists():
        if checkpoint_id(target).split("@")[1] == expected:
            return PolicyRef(ws.rel(target), checkpoint_id(target), run_id)
        raise DataError(f"{target}: already holds a different checkpoint; not overwriting a registered policy")
    ws.registry.mkdir(parents=True, exist_ok=True)
    tmp = ws.registry / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(".*", "*.tmp"))
    tmp.rename(target)
    return PolicyRef(ws.rel(target), checkpoint_id(target), run_id)


def promote_stage(ctx: StageContext) -> StageResult:
    ws = ctx.workspace
    evaluation = ctx.output("evaluate", EvaluationOutput)
    candidate = ctx.output("rl", CandidateOutput)
    decision = decide(evaluation.candidate, evaluation.incumbent, evaluation.reliability, ctx.config.gate)
    state = ws.load_state()
    registered = None
    if decision.promote:
        registered = register_checkpoint(ws, ws.abs(candidate.checkpoint), f"policy-{ctx.run_id}", ctx.run_id)
        state.pending_push = registered
    if all(c.passed for c in decision.checks if c.name in RELIABILITY_CHECKS):
        state.world_model = ctx.output("world_model", ModelOutput).path
        state.reward_model = ctx.output("reward", ModelOutput).path
    ws.save_state(state)
    ctx.log.info("%s", decision.summary())
    output = PromoteOutput(decision.promote, decision.reasons, [to_dict(c) for c in decision.checks],
                           registered, candidate.parent)
    metrics = {"promoted": decision.promote, "checks_failed": sum(not c.passed for c in decision.checks)}
    return StageResult(output, metrics, inputs=[ws.abs(candidate.checkpoint)])
