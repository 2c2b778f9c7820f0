"""Ingest: move new episode datasets from the inbox into ``data/real/``, validated; corrupt episodes never.

For each dataset folder in the inbox (oldest name first), holding its writer lock so no recorder appends
meanwhile:

* still held by a writer (a session being recorded): left for the next run;
* every episode valid: the folder is moved (renamed) into ``data/real/``;
* some episodes corrupt: the valid ones are copied into a new dataset in ``data/real/`` and the original
  folder goes to ``quarantine/`` with ``reason.json`` (which episodes, why, where the rest went);
* unusable as a whole (its metadata is unreadable, or nothing in it is valid): moved to ``quarantine/``.

Crash safety: a salvage copy is built under ``data/.staging/`` and marked complete before the original
moves; a complete copy left by a killed run is finished on resume, an incomplete one is rebuilt. Each
ingested dataset gets a sidecar ``data/real/<name>.ingest.json`` naming the run that ingested it.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from wovr_core.data import (
    DatasetLock,
    EpisodeDataset,
    EpisodeWriter,
    ValidationReport,
    WriterConfig,
    validate_dataset,
)
from wovr_core.data.layout import LOCK_PATH, STAGING_DIR
from wovr_core.errors import DataError
from wovr_core.pipeline.stages import IngestOutput, StageContext, StageResult
from wovr_core.pipeline.workspace import INGEST_SIDECAR, REASON_FILE, Workspace, read_json, write_json_atomic

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete"


def ingest_stage(ctx: StageContext) -> StageResult:
    ws, cfg = ctx.workspace, ctx.config.ingest
    inbox = ws.inbox(cfg.inbox)
    ws.create()
    _finish_staged_copies(ws, ctx.run_id)
    quarantined: list[dict] = []
    waiting: list[dict] = []
    sources = inbox_folders(inbox)
    for source in ctx.progress(sources, desc="ingest"):
        outcome = ingest_dataset(ws, source, ctx.run_id, decode_all=cfg.decode_all)
        if outcome.get("waiting"):
            waiting.append({"dataset": source.name, "reason": outcome["waiting"]})
        if outcome.get("quarantined"):
            quarantined.append(outcome["quarantined"])
    for path in sorted(ws.quarantine.glob(f"*/{REASON_FILE}")):  # also those a killed attempt moved already
        reason = read_json(path, "quarantine reason")
        if reason.get("run_id") == ctx.run_id and not any(q["dataset"] == path.parent.name for q in quarantined):
            quarantined.append(_quarantine_summary(ws, path.parent, reason))
    datasets = ws.real_datasets()
    new = [d for d in datasets if ws.ingest_record(d).get("run_id") == ctx.run_id]
    counts = {d: _episode_count(d) for d in datasets}
    output = IngestOutput(new_datasets=[ws.rel(d) for d in new], datasets=[ws.rel(d) for d in datasets],
                          new_episodes=sum(counts[d] for d in new), total_episodes=sum(counts.values()),
                          quarantined=quarantined, waiting=waiting)
    for item in quarantined:
        ctx.log.warning("quarantined %s: %s", item["dataset"], item["summary"])
    ctx.log.info("ingested %d new episodes in %d datasets (%d real episodes in all); %d quarantined, %d still "
                 "being written", output.new_episodes, len(new), output.total_episodes, len(quarantined), len(waiting))
    metrics = {"new_episodes": output.new_episodes, "total_episodes": output.total_episodes,
               "new_datasets": len(new), "quarantined": len(quarantined), "waiting": len(waiting)}
    return StageResult(output, metrics, inputs=new)


def inbox_folders(inbox: Path) -> list[Path]:
    """Candidate datasets in the inbox, oldest name first (empty folders, e.g. made ahead of a session, wait)."""
    if not inbox.is_dir():
        return []
    ignored = {LOCK_PATH, STAGING_DIR}
    return sorted(p for p in inbox.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and any(c.name not in ignored for c in p.iterdir()))


def ingest_dataset(ws: Workspace, source: Path, run_id: str, decode_all: bool = True) -> dict:
    """Ingest one inbox folder; returns ``{"accepted": path}``, ``{"quarantined": summary}`` (possibly
    with ``accepted`` for the salvaged part) or ``{"waiting": why}``."""
    lock = DatasetLock(source)
    try:
        lock.acquire()
    except DataError as e:
        log.info("%s: still being recorded, left for the next run (%s)", source, e)
        return {"waiting": str(e)}
    try:
        if not (source / "meta" / "info.json").exists():
            report = ValidationReport(source, errors=[f"{source}: not an episode dataset (meta/info.json is missing)"])
        else:
            report = validate_dataset(source, decode_all=decode_all)
        if report.ok:
            target = _free_name(ws.real_data, source.name)
            _write_sidecar(target, run_id, source, report.num_episodes, salvaged=False)
            source.rename(target)
            log.info("%s: %d episodes ingested into %s", source.name, report.num_episodes, target)
            return {"accepted": target}
        outcome: dict = {}
        good = report.good_episodes
        salvage = None
        if good:
            salvage = _salvage(ws, source, good, run_id)
        reason = {"dataset": source.name, "run_id": run_id, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "errors": report.errors, "bad_episodes": {str(k): v for k, v in report.bad_episodes.items()},
                  "warnings": report.warnings, "salvaged_episodes": good,
                  "salvaged_to": ws.rel(ws.real_data / salvage.name) if salvage else None}
        write_json_atomic(source / REASON_FILE, reason)  # travels with the folder
        target = _free_name(ws.quarantine, source.name)
        source.rename(target)
        if salvage is not None:
            outcome["accepted"] = _finish_copy(ws, salvage)
        outcome["quarantined"] = _quarantine_summary(ws, target, reason)
        return outcome
    finally:
        lock.release()


def _quarantine_summary(ws: Workspace, folder: Path, reason: dict) -> dict:
    bad = reason.get("bad_episodes", {})
    if reason.get("errors"):
        summary = "; ".join(reason["errors"])
    else:
        summary = "; ".join(f"episode {i}: {'; '.join(r)}" for i, r in bad.items())
    return {"dataset": folder.name, "reason_file": ws.rel(folder / REASON_FILE), "bad_episodes": sorted(map(int, bad)),
            "salvaged_to": reason.get("salvaged_to"), "summary": summary}


def _free_name(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    candidate, k = parent / name, 2
    while candidate.exists():
        candidate, k = parent / f"{name}-{k}", k + 1
    return candidate


def _write_sidecar(target: Path, run_id: str, source: Path, episodes: int, salvaged: bool) -> None:
    write_json_atomic(target.with_name(target.name + INGEST_SIDECAR), {
        "run_id": run_id, "source": str(source), "episodes": episodes, "salvaged": salvaged,
        "ingested_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def _episode_count(dataset: Path) -> int:
    try:
        return len(EpisodeDataset(dataset))
    except DataError:
        return 0


# ---- salvage: copy the valid episodes of a partly corrupt dataset ------------------------------------------
def _salvage(ws: Workspace, source: Path, episodes: list[int], run_id: str) -> Path:
    staging = ws.staging / f"{run_id}--{source.name}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    dataset = EpisodeDataset(source)
    info = dataset.info
    config = WriterConfig(episodes_per_file=info.episodes_per_file, max_file_mb=info.max_file_mb, video=info.video)
    with dataset, EpisodeWriter(staging, fps=info.fps, cameras=info.cameras, state_dim=info.state_dim,
                                extra_features=info.extra_features or None, robot_type=info.robot_type,
                                config=config) as writer:
        for index in episodes:
            _copy_episode(dataset, index, writer, source.name)
    (staging / COMPLETE_MARKER).write_text(run_id)
    log.info("%s: copied its %d valid episodes to %s", source.name, len(episodes), staging)
    return staging


def _copy_episode(dataset: EpisodeDataset, index: int, writer: EpisodeWriter, origin: str) -> None:
    episode = dataset.episode(index)
    meta = episode.meta
    frames = {cam: episode.frames(cam) for cam in dataset.cameras}
    cam_times = episode.camera_timestamps
    extras = episode.extras
    writer.start_episode(meta.task, meta.source, calibration_id=meta.calibration_id, success=meta.success,
                         success_source=meta.success_source,
                         extra={**meta.extra, "salvaged_from": origin, "original_episode_index": index})
    for t in range(len(episode)):
        writer.add_frame({cam: frames[cam][t] for cam in frames}, episode.states[t],
                         None if t == 0 else episode.actions[t],
                         timestamps={cam: float(cam_times[cam][t]) for cam in cam_times},
                         t=float(episode.timestamps[t]), is_keyframe=bool(episode.is_keyframe[t]),
                         is_intervention=bool(episode.is_intervention[t]),
                         extras={k: v[t] for k, v in extras.items()})
    writer.end_episode()


def _finish_copy(ws: Workspace, staging: Path) -> Path:
    run_id, name = staging.name.split("--", 1)
    (staging / COMPLETE_MARKER).unlink(missing_ok=True)
    target = _free_name(ws.real_data, name)
    _write_sidecar(target, run_id, staging, _episode_count(staging), salvaged=True)
    staging.rename(target)
    return target


def _finish_staged_copies(ws: Workspace, run_id: str) -> None:
    """After a kill: a complete salvage copy whose original already went to quarantine is moved into
    data/real; anything else in staging is a partial copy and is dropped (its original is still in the inbox)."""
    if not ws.staging.is_dir():
        return
    for staging in sorted(ws.staging.iterdir()):
        if (staging / COMPLETE_MARKER).exists() and "--" in staging.name:
            name = staging.name.split("--", 1)[1]
            reason = ws.quarantine / name / REASON_FILE
            if reason.exists() and read_json(reason, "quarantine reason").get("run_id") == run_id:
                log.warning("%s: finishing the ingest of a salvaged copy left by an interrupted run", staging)
                _finish_copy(ws, staging)
                continue
        log.warning("%s: dropping a partial copy left by an interrupted run", staging)
        shutil.rmtree(staging, ignore_errors=True)
