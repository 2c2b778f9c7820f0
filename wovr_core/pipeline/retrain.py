"""The ``wovr retrain`` run: resumable, idempotent, one at a time per workspace.

What one invocation does, holding the workspace lock:

1. ``--run-id X``: a finished run does nothing; an unfinished one resumes; a pending push is retried.
2. Otherwise, the latest run, if it was killed or failed, resumes at the stage it was in (stages with a
   manifest are never run again; the run keeps the config saved when it started).
3. Otherwise a push left pending by an earlier run is retried, and a new run starts if the inbox holds
   data that is not being written any more (or ``force_new``); with nothing new, nothing happens.

Stages run in :data:`~wovr_core.pipeline.config.STAGE_ORDER`; each one's manifest is written atomically
when it is done (see :mod:`wovr_core.pipeline.manifest`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from wovr_core.config import ConfigError, load_config, save_config, to_dict
from wovr_core.data import DatasetLock
from wovr_core.errors import DataError, WovrError
from wovr_core.pipeline.config import STAGE_CONFIG_KEYS, STAGE_ORDER, RetrainConfig
from wovr_core.pipeline.ingest import inbox_folders
from wovr_core.pipeline.lock import WorkspaceLock
from wovr_core.pipeline.manifest import sha256_path
from wovr_core.pipeline.promote import register_checkpoint
from wovr_core.pipeline.stages import StageContext, StageUnavailable, stage_function
from wovr_core.pipeline.workspace import (
    ABANDONED,
    FAILED,
    FINISHED,
    PENDING_PUSH,
    RESUMABLE,
    RUNNING,
    RunRecord,
    Workspace,
    read_json,
    write_json_atomic,
)

log = logging.getLogger("wovr.retrain")

NOTHING_TO_DO = "nothing_to_do"


@dataclass
class RetrainOutcome:
    """What an invocation did: ``status`` is the run's status, or ``nothing_to_do``."""

    status: str
    run_id: str | None
    message: str


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def retrain(workspace: str | Path, config: RetrainConfig, preset: str | None = None, *, run_id: str | None = None,
            force_new: bool = False) -> RetrainOutcome:
    """Run (or resume) one retrain over ``workspace``; raises LockHeld if another one is running."""
    ws = Workspace(workspace)
    ws.create()
    with WorkspaceLock(ws.lock_path) as lock:
        if run_id is not None:
            record = ws.load_run(run_id)
            if record.status in (FINISHED, ABANDONED):
                return RetrainOutcome(NOTHING_TO_DO, run_id, f"run {run_id} is {record.status}: nothing to do")
            lock.update(run_id=run_id)
            if record.status == PENDING_PUSH:
                return _retry_push(ws, record, config)
            return _execute(ws, record, config)
        ids = ws.run_ids()
        latest = ws.load_run(ids[-1]) if ids else None
        if latest is not None and latest.status in RESUMABLE and not force_new:
            lock.update(run_id=latest.run_id)
            log.info("resuming run %s (%s%s)", latest.run_id, latest.status,
                     f" in stage {latest.current_stage}" if latest.current_stage else "")
            return _execute(ws, latest, config)
        retried = _retry_pending_push(ws, config)
        ready, waiting = inbox_ready(ws, config)
        if not ready and not force_new:
            since = f" since run {latest.run_id}" if latest is not None else ""
            held = f"; {len(waiting)} still being recorded" if waiting else ""
            message = f"nothing new in {ws.inbox(config.ingest.inbox)}{since}{held}: no run started"
            if retried is not None:
                message = f"{retried.message}; {message}"
            return RetrainOutcome(retried.status if retried else NOTHING_TO_DO,
                                  retried.run_id if retried else None, message)
        record = _new_run(ws, config, preset)
        lock.update(run_id=record.run_id)
        return _execute(ws, record, config)


def abandon(workspace: str | Path, run_id: str | None = None) -> RetrainOutcome:
    """Mark an unfinished run abandoned, so the next invocation starts a new one instead of resuming it."""
    ws = Workspace(workspace)
    with WorkspaceLock(ws.lock_path):
        ids = ws.run_ids()
        run_id = run_id or (ids[-1] if ids else None)
        if run_id is None:
            raise DataError(f"{ws.runs}: no runs to abandon")
        record = ws.load_run(run_id)
        if record.status not in RESUMABLE:
            return RetrainOutcome(record.status, run_id, f"run {run_id} is {record.status}; left as it is")
        record.status, record.finished_at = ABANDONED, _now()
        ws.save_run(record)
        return RetrainOutcome(ABANDONED, run_id, f"run {run_id} abandoned at stage {record.current_stage or '-'}")


def inbox_ready(ws: Workspace, config: RetrainConfig) -> tuple[list[Path], list[Path]]:
    """Inbox folders ready to ingest, and those still held by a writer."""
    ready, waiting = [], []
    for folder in inbox_folders(ws.inbox(config.ingest.inbox)):
        probe = DatasetLock(folder)
        try:
            probe.acquire()
        except DataError:
            waiting.append(folder)
            continue
        probe.release()
        ready.append(folder)
    return ready, waiting


# ---- runs -----------------------------------------------------------------------------------------------------
def _new_run(ws: Workspace, config: RetrainConfig, preset: str | None) -> RunRecord:
    base = time.strftime("%Y%m%d-%H%M%S")
    run_id, k = base, 2
    while ws.run_dir(run_id).exists():
        run_id, k = f"{base}-{k}", k + 1
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True)
    save_config(config, run_dir, preset=preset)
    record = RunRecord(run_id=run_id, preset=preset, started_at=_now(), pid=os.getpid())
    ws.save_run(record)  # run.json last: a folder without it is not a run
    log.info("run %s started (preset %s)", run_id, preset or "custom")
    return record


def _run_config(ws: Workspace, record: RunRecord, given: RetrainConfig, warn: bool = True) -> RetrainConfig:
    """The config saved in the run, with the invocation's ``push`` settings (where the server is now)."""
    saved = load_config(ws.run_dir(record.run_id), RetrainConfig)
    old, new = to_dict(saved), to_dict(given)
    changed = sorted(k for k in old if k != "push" and old[k] != new.get(k))
    if changed and warn:
        log.warning("run %s keeps the config it started with; ignoring changes to %s", record.run_id, changed)
    return dataclasses.replace(saved, push=given.push)


def _ensure_incumbent(ws: Workspace, config: RetrainConfig) -> None:
    state = ws.load_state()
    if state.incumbent is not None:
        return
    if not config.initial_policy:
        raise ConfigError(f"{ws.state_path}: no deployed policy on record; set initial_policy in the retrain "
                          "config to the checkpoint the policy server runs now")
    source = Path(config.initial_policy).expanduser()
    state.deployed = register_checkpoint(ws, source, source.resolve().name)
    ws.save_state(state)
    log.info("registered the initial policy %s as deployed", state.deployed.checkpoint_id)


def _execute(ws: Workspace, record: RunRecord, given: RetrainConfig) -> RetrainOutcome:
    config = _run_config(ws, record, given)
    _ensure_incumbent(ws, config)
    record.status, record.pid, record.error = RUNNING, os.getpid(), ""
    ws.save_run(record)
    manifests: dict[str, dict] = {}
    bar = tqdm(total=len(STAGE_ORDER), desc=f"retrain {record.run_id}", unit="stage", disable=None)
    try:
        for number, stage in enumerate(STAGE_ORDER, 1):
            path = ws.manifest_path(record.run_id, stage)
            if path.exists():
                manifests[stage] = read_json(path, "stage manifest")
                log.info("[%d/%d] %s: done earlier (%s)", number, len(STAGE_ORDER), stage, manifests[stage]["status"])
            else:
                bar.set_postfix_str(stage)
                log.info("[%d/%d] %s: %s", number, len(STAGE_ORDER), stage, config.stages[stage])
                manifests[stage] = _run_stage(ws, record, config, stage, manifests)
            bar.update()
    finally:
        bar.close()
    push_status = manifests["push"]["status"]
    record.status = PENDING_PUSH if push_status == PENDING_PUSH else FINISHED
    record.current_stage, record.finished_at = "", _now()
    ws.save_run(record)
    _close_superseded(ws)
    return RetrainOutcome(record.status, record.run_id, _summary(record, manifests))


def _run_stage(ws: Workspace, record: RunRecord, config: RetrainConfig, stage: str,
               manifests: dict[str, dict]) -> dict:
    implementation = config.stages[stage]
    entry = record.stages.setdefault(stage, {"attempts": 0})
    entry.update(status=RUNNING, implementation=implementation, attempts=entry.get("attempts", 0) + 1,
                 started_at=_now())
    record.current_stage = stage
    ws.save_run(record)
    work_dir = ws.run_dir(record.run_id) / stage
    work_dir.mkdir(parents=True, exist_ok=True)
    started, t0 = _now(), time.monotonic()
    try:
        try:
            function = stage_function(stage, implementation)
        except ImportError as e:
            raise StageUnavailable(f"stage {stage!r} implementation {implementation!r} is not available here: "
                                   f"{e}") from e
        ctx = StageContext(ws, record.run_id, stage, implementation, config, work_dir, dict(manifests),
                           ws.load_state(), logging.getLogger(f"wovr.retrain.{stage}"))
        result = function(ctx)
    except BaseException as e:
        entry["status"] = FAILED if isinstance(e, Exception) else "interrupted"
        record.status = FAILED if isinstance(e, Exception) else RUNNING
        record.error = f"{stage}: {type(e).__name__}: {e}"
        ws.save_run(record)
        if isinstance(e, WovrError | ConfigError):
            raise WovrError(f"run {record.run_id}, stage {stage}: {e} (fix it and run wovr retrain again: the "
                            f"run resumes at this stage)") from e
        raise
    duration = time.monotonic() - t0
    inputs = {}
    for path in result.inputs:
        inputs[ws.rel(path)] = sha256_path(path)
    section = {key: to_dict(getattr(config, key)) for key in STAGE_CONFIG_KEYS[stage]}
    if implementation == "smoke":
        section["smoke"] = to_dict(config.smoke)
    manifest = {
        "stage": stage, "run_id": record.run_id, "implementation": implementation, "status": result.status,
        "started_at": started, "finished_at": _now(), "duration_s": round(duration, 3),
        "attempts": entry["attempts"], "inputs": inputs, "config": section,
        "output_type": type(result.outputs).__name__, "outputs": to_dict(result.outputs),
        "metrics": to_dict(result.metrics),
    }
    write_json_atomic(ws.manifest_path(record.run_id, stage), manifest)
    entry.update(status=result.status, duration_s=round(duration, 3), finished_at=manifest["finished_at"])
    ws.save_run(record)
    log.info("%s: %s in %.1f s", stage, result.status, duration)
    return manifest


def _retry_push(ws: Workspace, record: RunRecord, given: RetrainConfig) -> RetrainOutcome:
    config = _run_config(ws, record, given, warn=False)
    manifests = {s: read_json(ws.manifest_path(record.run_id, s), "stage manifest") for s in STAGE_ORDER
                 if ws.manifest_path(record.run_id, s).exists()}
    log.info("retrying the pending push of run %s", record.run_id)
    manifests["push"] = _run_stage(ws, record, config, "push", manifests)
    record.status = PENDING_PUSH if manifests["push"]["status"] == PENDING_PUSH else FINISHED
    record.current_stage = ""
    ws.save_run(record)
    return RetrainOutcome(record.status, record.run_id,
                          f"run {record.run_id} push: {manifests['push']['outputs']['detail']}")


def _close_superseded(ws: Workspace) -> None:
    """Runs waiting to push a checkpoint that a later promotion replaced are finished: nothing to retry."""
    state = ws.load_state()
    pending_run = state.pending_push.run_id if state.pending_push else None
    for run_id in ws.run_ids():
        if run_id == pending_run:
            continue
        record = ws.load_run(run_id)
        if record.status == PENDING_PUSH:
            record.status = FINISHED
            record.error = f"push superseded by run {pending_run}" if pending_run else "push no longer pending"
            ws.save_run(record)


def _retry_pending_push(ws: Workspace, config: RetrainConfig) -> RetrainOutcome | None:
    """Retry the push waiting in state.json (its run's push stage runs again)."""
    _close_superseded(ws)
    state = ws.load_state()
    if state.pending_push is None or state.pending_push.run_id not in ws.run_ids():
        return None
    record = ws.load_run(state.pending_push.run_id)
    return _retry_push(ws, record, config) if record.status == PENDING_PUSH else None


def _summary(record: RunRecord, manifests: dict[str, dict]) -> str:
    promote = manifests.get("promote", {}).get("outputs", {})
    push = manifests.get("push", {}).get("outputs", {})
    ingest = manifests.get("ingest", {}).get("outputs", {})
    decision = "promoted" if promote.get("promote") else "not promoted"
    reasons = "; ".join(promote.get("reasons", [])[:3])
    return (f"run {record.run_id} {record.status}: {ingest.get('new_episodes', 0)} new episodes; candidate "
            f"{decision} ({reasons}); push: {push.get('status')} {push.get('detail', '')}".strip())

