"""Push: activate the promoted checkpoint on the policy server; if that fails, it waits for the next run.

The client is looked up by name (``push.client``): wovr_core must not import the server package, so the
default entry names ``policy_server.client:HttpPolicyClient`` as a string, resolved only when a push
happens (like a hardware driver). Any object with ``activate(checkpoint: str) -> dict`` fits.

A run pushes only what it promoted. A push that cannot complete (server down, busy, token refused,
checkpoint rejected) leaves the checkpoint in ``registry/`` and ``state.json``'s ``pending_push``; the run
ends with status ``pending_push`` and every later ``wovr retrain`` tries again before anything else, until it
succeeds or a later promotion supersedes it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

from wovr_core.config import from_dict
from wovr_core.errors import WovrError
from wovr_core.pipeline.config import PushConfig
from wovr_core.pipeline.stages import PushOutput, StageContext, StageResult
from wovr_core.pipeline.workspace import PENDING_PUSH, PolicyRef, Workspace, read_json
from wovr_core.registry import Registry

log = logging.getLogger(__name__)

API_TOKEN_ENV = "WOVR_API_TOKEN"  # the same variable ``wovr serve`` reads


class PolicyServerClient(Protocol):
    def activate(self, checkpoint: str, wait: bool = True) -> dict: ...


PUSH_CLIENTS: Registry[Any] = Registry("policy server client")
PUSH_CLIENTS.register("http", "policy_server.client:HttpPolicyClient")


def push_checkpoint(ws: Workspace, target: PolicyRef, config: PushConfig) -> tuple[bool, str]:
    """Activate ``target`` on the server: (True, detail) once the server serves exactly that checkpoint."""
    path = ws.abs(target.checkpoint)
    reference = str(path) if config.send == "path" else Path(target.checkpoint).name
    token = os.environ.get(API_TOKEN_ENV) or None
    try:
        client: PolicyServerClient = PUSH_CLIENTS.create(config.client, config.server_url,
                                                         timeout_s=config.timeout_s, api_token=token)
    except ImportError as e:
        return False, f"push client {config.client!r} is not installed ({e}); install wovr[server]"
    try:
        reply = client.activate(reference, wait=True)
    except (OSError, RuntimeError) as e:  # ConnectionError/timeout: server down; ServerError: refused
        hint = f" (is {API_TOKEN_ENV} set to the server's token?)" if "401" in str(e) else ""
        return False, f"{config.server_url}: {type(e).__name__}: {e}{hint}"
    served = reply.get("checkpoint_id")
    if served != target.checkpoint_id:
        return False, f"{config.server_url} reports {served!r} active, expected {target.checkpoint_id!r}"
    return True, f"{config.server_url} now serves {served} (previous {reply.get('previous_checkpoint_id')})"


def push_stage(ctx: StageContext) -> StageResult:
    ws = ctx.workspace
    state = ws.load_state()
    attempts = list(_earlier_attempts(ctx))
    target = state.pending_push
    if target is None and state.deployed is not None and state.deployed.run_id == ctx.run_id:
        # Pushed by an attempt that was killed before it could write this manifest.
        output = PushOutput("pushed", state.deployed, ctx.config.push.server_url,
                            "deployed by an earlier attempt of this stage", attempts)
        return StageResult(output, {"pushed": True, "attempts": len(attempts)})
    if target is None or target.run_id != ctx.run_id:
        waiting = (f"; {target.checkpoint_id} of run {target.run_id} still waits for the server (retried first "
                   "by every invocation)") if target is not None else ""
        output = PushOutput("nothing_to_push", None, ctx.config.push.server_url,
                            f"this run promoted nothing{waiting}", attempts)
        return StageResult(output, {"pushed": False})
    ok, detail = push_checkpoint(ws, target, ctx.config.push)
    attempts.append({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ok": ok, "detail": detail})
    if ok:
        state.deployed, state.pending_push = target, None
        ws.save_state(state)
        ctx.log.info("pushed %s: %s", target.checkpoint_id, detail)
        output = PushOutput("pushed", target, ctx.config.push.server_url, detail, attempts)
        return StageResult(output, {"pushed": True, "attempts": len(attempts)}, inputs=[ws.abs(target.checkpoint)])
    ctx.log.warning("push of %s did not complete, it stays in %s and the next run retries: %s",
                    target.checkpoint_id, target.checkpoint, detail)
    output = PushOutput(PENDING_PUSH, target, ctx.config.push.server_url, detail, attempts)
    return StageResult(output, {"pushed": False, "attempts": len(attempts)}, inputs=[ws.abs(target.checkpoint)],
                       status=PENDING_PUSH)


def _earlier_attempts(ctx: StageContext) -> list[dict]:
    """Attempts recorded by this run's push stage before (a retry rewrites the manifest with all of them)."""
    path = ctx.workspace.manifest_path(ctx.run_id, ctx.stage)
    if not path.exists():
        return []
    try:
        return list(from_dict(PushOutput, read_json(path, "push manifest")["outputs"]).attempts)
    except (KeyError, TypeError, ValueError, WovrError) as e:
        log.warning("%s: ignoring unreadable earlier attempts (%s)", path, e)
        return []
