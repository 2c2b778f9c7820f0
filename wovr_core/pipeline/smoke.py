"""Stand-in training and evaluation stages for the ``smoke`` preset: the pipeline's mechanics in seconds.

They read and write real files the way the real stages do, but learn next to nothing:

* world model: the mean frame per camera over every episode (resumable, one episode at a time); its
  "imagination" is that frame, scored by PSNR against the latest real episodes;
* reward model: each task's success frequency;
* RL: the incumbent must be a stub policy (:mod:`wovr_core.policy.stub`); the candidate is the same stub
  with ``action_bias`` moved by ``smoke.bias_step``;
* evaluation: success ~ Binomial(trials, sigmoid(success_gain * action_bias)), seeded by the policy's config,
  so a positive ``bias_step`` makes a better candidate and a negative one a worse candidate.

Use them to check a workspace, a timer or a policy server set-up end to end; never to train a robot.
"""

from __future__ import annotations

import json
import math
import time
import zlib

import cv2
import numpy as np

from wovr_core.data import EpisodeDataset, psnr
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
from wovr_core.pipeline.workspace import read_json, write_json_atomic
from wovr_core.policy.checkpoint import checkpoint_id, read_checkpoint_config
from wovr_core.policy.stub import POLICY_TYPE as STUB_TYPE
from wovr_core.policy.stub import write_stub_checkpoint

MEAN_FRAMES = "mean_frames.npz"
PROGRESS = "progress.json"
PARTIAL = "partial.npz"


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    return np.stack([cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def _save_npz(path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_npz(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def mean_frame_world_model(ctx: StageContext) -> StageResult:
    size = ctx.config.smoke.image_size
    roots = ctx.data_roots()
    keys = []
    for root in roots:
        with EpisodeDataset(root, on_error="skip") as dataset:
            keys += [(str(root), i) for i in dataset.episode_indices]
    progress_path, partial_path = ctx.work_dir / PROGRESS, ctx.work_dir / PARTIAL
    done, sums = 0, {}
    if progress_path.exists() and partial_path.exists():  # a killed attempt: continue where it stopped
        done = int(read_json(progress_path, "progress")["episodes_done"])
        sums = _load_npz(partial_path)
        ctx.log.info("continuing after %d of %d episodes", done, len(keys))
    resumed_from = done
    datasets: dict[str, EpisodeDataset] = {}
    try:
        for root, index in ctx.progress(keys[done:], desc="mean frame"):
            dataset = datasets.setdefault(root, EpisodeDataset(root, on_error="skip"))
            episode = dataset.episode(index)
            for cam in dataset.cameras:
                frames = _resize(episode.frames(cam), size).astype(np.float64)
                sums[cam] = sums.get(cam, 0.0) + frames.sum(axis=0)
                sums[f"{cam}.count"] = sums.get(f"{cam}.count", np.zeros(())) + len(frames)
            done += 1
            _save_npz(partial_path, sums)
            write_json_atomic(progress_path, {"episodes_done": done, "episodes": len(keys)})
            time.sleep(ctx.config.smoke.seconds_per_episode)
    finally:
        for dataset in datasets.values():
            dataset.close()
    if not sums:
        raise DataError(f"no readable episodes in {[str(r) for r in roots]} to fit the world model on")
    model = ctx.work_dir / "model"
    model.mkdir(exist_ok=True)
    cams = sorted(k for k in sums if not k.endswith(".count"))
    _save_npz(model / MEAN_FRAMES, {c: np.round(sums[c] / sums[f"{c}.count"]).astype(np.uint8) for c in cams})
    write_json_atomic(model / "model.json", {"kind": "smoke_mean_frame", "cameras": cams, "image_size": size,
                                             "episodes": done})
    output = ModelOutput(ctx.workspace.rel(model), ctx.state.world_model, [ctx.workspace.rel(r) for r in roots])
    return StageResult(output, {"episodes": done, "resumed_from_episode": resumed_from}, inputs=roots)


def task_prior_reward(ctx: StageContext) -> StageResult:
    roots = ctx.data_roots()
    counts: dict[str, list[int]] = {}
    for root in roots:
        with EpisodeDataset(root, on_error="skip") as dataset:
            for meta in dataset.episodes:
                if meta.success is not None:
                    c = counts.setdefault(meta.task, [0, 0])
                    c[0] += int(meta.success)
                    c[1] += 1
    model = ctx.work_dir / "model"
    write_json_atomic(model / "reward.json", {"kind": "smoke_task_prior",
                                              "success_rate": {t: s / n for t, (s, n) in sorted(counts.items())}})
    output = ModelOutput(ctx.workspace.rel(model), ctx.state.reward_model, [ctx.workspace.rel(r) for r in roots])
    return StageResult(output, {"tasks": len(counts), "labelled_episodes": sum(n for _, n in counts.values())},
                       inputs=roots)


def _stub_config(directory) -> dict:
    raw = read_checkpoint_config(directory)
    if raw["policy_type"] != STUB_TYPE:
        raise DataError(f"{directory}: the smoke RL stage needs a stub policy, this one is {raw['policy_type']!r}")
    return raw["config"]


def bias_step_rl(ctx: StageContext) -> StageResult:
    incumbent = ctx.state.incumbent
    source = ctx.workspace.abs(incumbent.checkpoint)
    old = _stub_config(source)
    candidate = ctx.work_dir / "candidate"
    write_stub_checkpoint(candidate, cost_ms=old["cost_ms"], chunk_length=old["chunk_length"],
                          action_bias=old["action_bias"] + ctx.config.smoke.bias_step,
                          image_shapes=old["image_shapes"], state_dim=old["state_dim"])
    output = CandidateOutput(ctx.workspace.rel(candidate), checkpoint_id(candidate), incumbent)
    return StageResult(output, {"action_bias": old["action_bias"] + ctx.config.smoke.bias_step}, inputs=[source])


def _draw(directory, tasks: list[str], trials: int, gain: float, stream: str) -> tuple[SuccessCount, dict]:
    config = _stub_config(directory)
    bias = float(config["action_bias"])
    p = 1.0 / (1.0 + math.exp(-gain * bias))
    # Seeded by the policy's config, not its checkpoint id: the id hashes files that record when they were
    # written, and a test of the gate must draw the same counts on every run.
    rng = np.random.default_rng([zlib.crc32(json.dumps(config, sort_keys=True).encode()),
                                 zlib.crc32(stream.encode())])
    per_task, total = {}, 0
    for k, task in enumerate(tasks):
        n = trials // len(tasks) + (1 if k < trials % len(tasks) else 0)
        s = int(rng.binomial(n, p))
        per_task[task] = [s, n]
        total += s
    return SuccessCount(total, trials), per_task


def synthetic_evaluate(ctx: StageContext) -> StageResult:
    ws, cfg = ctx.workspace, ctx.config
    candidate_dir = ws.abs(ctx.output("rl", CandidateOutput).checkpoint)
    incumbent_dir = ws.abs(ctx.state.incumbent.checkpoint)
    latest = ctx.latest_real_episodes(cfg.evaluate.reliability_episodes)
    tasks = sorted({EpisodeDataset(root).meta(i).task for root, i in latest}) or ["task"]
    evaluations = []
    for directory in (candidate_dir, incumbent_dir):
        imagined, imagined_tasks = _draw(directory, tasks, cfg.smoke.trials, cfg.smoke.success_gain, "imagined")
        twin, twin_tasks = _draw(directory, tasks, cfg.smoke.twin_trials, cfg.smoke.success_gain, "twin")
        per_task = {t: {"imagined": imagined_tasks[t], "twin": twin_tasks[t]} for t in tasks}
        evaluations.append(PolicyEvaluation(checkpoint_id(directory), imagined, twin, per_task))
    # Reliability: the mean-frame "imagination" against the latest real frames.
    model = ws.abs(ctx.output("world_model", ModelOutput).path)
    mean = _load_npz(model / MEAN_FRAMES)
    horizon = cfg.evaluate.reliability_horizon
    curves, pairs = [], []
    for root, index in latest:
        with EpisodeDataset(root) as dataset:
            episode = dataset.episode(index)
            cam = sorted(mean)[0]
            real = _resize(episode.frames(cam)[:horizon], mean[cam].shape[0])
            imagined = np.repeat(mean[cam][None], len(real), axis=0)
            curves.append([psnr(r, g) for r, g in zip(real, imagined, strict=True)])
            if len(pairs) < 3:
                pairs.append((real, imagined))
    psnr_curve = [float(np.mean([c[t] for c in curves if len(c) > t])) for t in range(max(map(len, curves)))] \
        if curves else []
    reliability = WorldModelReliability(len(curves), float(np.mean(psnr_curve)) if psnr_curve else None,
                                        _prior_agreement(ws.abs(ctx.output("reward", ModelOutput).path), latest),
                                        horizon)
    strip = write_strip(ctx.work_dir / "imagined_vs_real.png", pairs) if pairs else None
    output = EvaluationOutput(evaluations[0], evaluations[1], reliability, ws.rel(strip) if strip else None,
                              psnr_curve, ["smoke evaluation: synthetic success draws, mean-frame world model"])
    metrics = {"candidate_imagined": evaluations[0].imagined.rate, "incumbent_imagined": evaluations[1].imagined.rate,
               "psnr_db": reliability.psnr_db}
    return StageResult(output, metrics, inputs=[candidate_dir, incumbent_dir, model])


def _prior_agreement(reward_dir, latest) -> float | None:
    """Share of the latest labelled episodes whose outcome the task prior calls right."""
    prior = json.loads((reward_dir / "reward.json").read_text())["success_rate"]
    hits = []
    for root, index in latest:
        meta = EpisodeDataset(root).meta(index)
        if meta.success is not None and meta.task in prior:
            hits.append((prior[meta.task] >= 0.5) == meta.success)
    return float(np.mean(hits)) if hits else None
