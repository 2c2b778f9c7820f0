"""Closed-loop evaluation of a policy checkpoint in the LIBERO twin (``wovr eval``).

Episode ``k`` of a task starts from LIBERO's fixed init state ``first_init_state + k`` (the states LIBERO's
benchmarks use; demonstrations are collected on other layouts), executes each predicted chunk
(``replan_steps`` actions of it, all by default), and ends at success (LIBERO's own predicate) or at the
suite's step limit. Episodes run in ``workers`` processes, each with its own twin and its own copy of the
policy: rendering dominates a step and inference is a small share of it, so whole episodes per worker keep
every core busy where lockstep environments would wait for the slowest episode of each round.

Output directory::

    results.json      summary: average and per-task success, per-episode outcomes, settings, timing
    episodes.jsonl    one line per finished episode, appended as they finish; a rerun into the same
                      directory with the same checkpoint and settings skips them (resumes)
    videos/*.mp4      agentview | wrist side by side for the first ``videos`` episodes (one per task first)
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wovr_core.config import ConfigError, to_dict
from wovr_core.errors import DataError
from wovr_core.policy.base import AGENTVIEW_KEY, IMAGE_KEY_PREFIX, Policy
from wovr_core.policy.checkpoint import checkpoint_id, load_policy

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
EPISODES_FILE = "episodes.jsonl"
VIDEOS_DIR = "videos"


@dataclass
class EvalConfig:
    """Which episodes to run and how."""

    PRESETS: ClassVar[dict] = {"tiny": {}, "paper": {"episodes_per_task": 50, "workers": 8}}

    suite: str = "libero_object"
    tasks: tuple[int, ...] = ()  # empty: every task of the suite
    episodes_per_task: int = 10
    first_init_state: int = 0
    workers: int = 2
    videos: int = 2
    replan_steps: int = 0  # actions executed from each chunk before asking again (0: the whole chunk)
    temperature: float | None = None  # None: the checkpoint's default (0 = deterministic argmax)
    max_steps: int = 0  # 0: the suite's standard limit
    image_size: int = 0  # twin render size; 0: the camera size the checkpoint was trained on
    seed: int = 0
    threads: int = 1  # torch threads per worker (rendering already fills the cores)

    def validate(self) -> None:
        if self.episodes_per_task < 1 or self.workers < 1 or self.videos < 0 or self.first_init_state < 0:
            raise ConfigError(f"invalid evaluation settings: {self}")
        if self.replan_steps < 0 or self.max_steps < 0 or self.image_size < 0 or self.threads < 0:
            raise ConfigError(f"replan_steps, max_steps, image_size and threads must be >= 0: {self}")
        if self.temperature is not None and self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")


@dataclass(frozen=True)
class EpisodeJob:
    task_id: int
    init_state: int
    video: bool


# ------------------------------------------------------------------------------------------- one episode
def run_episode(policy: Policy, twin, init_state: int, replan_steps: int = 0,
                frames: list[np.ndarray] | None = None) -> dict[str, Any]:
    """One episode of ``policy`` in ``twin`` from a fixed init state; appends video frames when given a list."""
    obs = twin.reset(init_state)
    policy.reset()
    cameras = [k for k in obs if k.startswith(IMAGE_KEY_PREFIX)]
    if frames is not None:
        frames.append(np.concatenate([obs[k] for k in cameras], axis=1))
    queue: list[np.ndarray] = []
    chunks, infer_s = 0, 0.0
    while True:
        if not queue:
            t0 = time.perf_counter()
            actions = policy.contract.check_actions(policy.infer(obs))
            infer_s += time.perf_counter() - t0
            queue = list(actions[:replan_steps or len(actions)])
            chunks += 1
        result = twin.step(queue.pop(0))
        obs = result.obs
        if frames is not None:
            frames.append(np.concatenate([obs[k] for k in cameras], axis=1))
        if result.done:
            break
    return {"success": bool(result.success), "steps": int(result.step), "chunks": chunks,
            "infer_ms_per_chunk": 1e3 * infer_s / max(chunks, 1)}


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """H.264 mp4 of (H, W, 3) frames (odd sizes padded), written to a temporary name then renamed."""
    from wovr_core.data.video import VideoConfig, VideoEncoder

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    tmp = path.with_name(path.name + ".tmp.mp4")
    encoder = VideoEncoder(tmp, h + h % 2, w + w % 2, fps, VideoConfig(crf=23, gop=30))
    try:
        for frame in frames:
            encoder.add(np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0))))
        encoder.close()
    except BaseException:
        encoder.abort()
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------- the workers
_worker: dict[str, Any] = {}


def _init_worker(checkpoint: str, cfg: EvalConfig, image_size: int, out: str, policy: Policy | None = None) -> None:
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    if policy is None:
        policy = load_policy(checkpoint)
    _apply_temperature(policy, cfg.temperature)
    _worker.clear()
    _worker.update(policy=policy, cfg=cfg, image_size=image_size, out=Path(out), twin=None, task_id=None)


def _apply_temperature(policy: Policy, temperature: float | None) -> None:
    if temperature is None:
        return
    if not hasattr(policy, "temperature"):
        raise ConfigError(f"{type(policy).__name__} has no sampling temperature to set")
    policy.temperature = float(temperature)


def _twin_for(task_id: int):
    from wovr_core.sim.twin import LiberoTwin, TwinConfig

    if _worker["task_id"] != task_id:
        if _worker["twin"] is not None:
            _worker["twin"].close()
        cfg: EvalConfig = _worker["cfg"]
        cameras = tuple(k[len(IMAGE_KEY_PREFIX):] for k in _worker["policy"].contract.image_shapes)
        _worker["twin"] = LiberoTwin(TwinConfig(suite=cfg.suite, task_id=task_id, image_size=_worker["image_size"],
                                                cameras=cameras, max_steps=cfg.max_steps, seed=cfg.seed))
        _worker["task_id"] = task_id
    return _worker["twin"]


def _run_job(job: EpisodeJob) -> dict[str, Any]:
    cfg: EvalConfig = _worker["cfg"]
    policy = _worker["policy"]
    twin = _twin_for(job.task_id)
    generator = getattr(policy, "generator", None)
    if generator is not None:  # sampled evaluations replay: the draw depends on the episode, not the worker
        generator.manual_seed(cfg.seed * 1_000_003 + job.task_id * 1009 + job.init_state)
    frames: list[np.ndarray] | None = [] if job.video else None
    t0 = time.perf_counter()
    outcome = run_episode(policy, twin, job.init_state, cfg.replan_steps, frames)
    record = {"task_id": job.task_id, "task": twin.task.language, "init_state": job.init_state, **outcome,
              "seconds": time.perf_counter() - t0}
    if frames:
        name = (f"{cfg.suite}_task{job.task_id:02d}_init{job.init_state:02d}_"
                f"{'success' if outcome['success'] else 'failure'}.mp4")
        record["video"] = str(write_video(_worker["out"] / VIDEOS_DIR / name, frames, twin.config.control_hz))
    return record


def _close_worker() -> None:
    if _worker.get("twin") is not None:
        _worker["twin"].close()
    _worker.clear()


# ------------------------------------------------------------------------------------------------- driver
def plan_jobs(cfg: EvalConfig, task_ids: list[int], num_init_states: Mapping[int, int]) -> list[EpisodeJob]:
    """Episodes grouped by task (a worker keeps its scene); videos go to the first episodes of the first tasks."""
    jobs = []
    for task_id in task_ids:
        available = num_init_states[task_id]
        if cfg.first_init_state + cfg.episodes_per_task > available:
            raise ConfigError(f"task {task_id} of {cfg.suite} has {available} init states; cannot run "
                              f"{cfg.episodes_per_task} episodes from init state {cfg.first_init_state}")
        jobs += [(task_id, cfg.first_init_state + k) for k in range(cfg.episodes_per_task)]
    filmed = {(t, i) for t, i in sorted(jobs, key=lambda j: (j[1], task_ids.index(j[0])))[:cfg.videos]}
    return [EpisodeJob(t, i, (t, i) in filmed) for t, i in jobs]


def _settings_key(cfg: EvalConfig, ckpt_id: str, image_size: int) -> str:
    """What makes two episodes of the same (task, init state) comparable: a rerun only reuses these."""
    relevant = {k: v for k, v in to_dict(cfg).items() if k in ("suite", "replan_steps", "temperature", "max_steps",
                                                                 "seed")}
    return json.dumps({"checkpoint_id": ckpt_id, "image_size": image_size, **relevant}, sort_keys=True)


def _done_episodes(path: Path, key: str) -> dict[tuple[int, int], dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed run may be cut short
                continue
            if record.get("settings") == key:
                done[(record["task_id"], record["init_state"])] = record
    return done


def _render_size(policy: Policy, cfg: EvalConfig) -> int:
    if cfg.image_size:
        return cfg.image_size
    shape = policy.contract.image_shapes.get(AGENTVIEW_KEY) or next(iter(policy.contract.image_shapes.values()))
    sizes = {tuple(s[:2]) for s in policy.contract.image_shapes.values()}
    if len(sizes) != 1 or shape[0] != shape[1]:
        raise ConfigError(f"the checkpoint expects cameras of sizes {sorted(sizes)}; the twin renders square "
                          f"images of one size: set image_size")
    return int(shape[0])


def _task_ids(cfg: EvalConfig) -> list[int]:
    from wovr_core.sim.suites import task_names

    names = task_names(cfg.suite)  # ConfigError for an unknown suite
    task_ids = list(cfg.tasks) or list(range(len(names)))
    bad = [t for t in task_ids if not 0 <= t < len(names)]
    if bad:
        raise ConfigError(f"{cfg.suite} has tasks 0..{len(names) - 1}, got {bad}")
    return task_ids


def evaluate_checkpoint(checkpoint: str | Path, cfg: EvalConfig, out: str | Path,
                        progress: bool = True) -> dict[str, Any]:
    """Evaluate ``checkpoint`` in the twin; writes and returns the results (see the module docstring)."""
    cfg.validate()
    checkpoint = Path(checkpoint).expanduser()
    _task_ids(cfg)  # a bad suite or task fails before the checkpoint loads
    policy = load_policy(checkpoint)  # DataError naming the file for a missing or corrupt checkpoint
    return _evaluate(policy, checkpoint_id(checkpoint), cfg, out, progress, checkpoint)


def evaluate_policy(policy: Policy, cfg: EvalConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Evaluate a policy object in the twin, in this process (``cfg.workers`` is ignored): e.g. a policy
    reached through the policy server's client (:class:`~wovr_core.policy.remote.RemotePolicy`)."""
    cfg.validate()
    return _evaluate(policy, str(policy.metadata()["checkpoint_id"]), cfg, out, progress, None)


def _evaluate(policy: Policy, ckpt_id: str, cfg: EvalConfig, out: str | Path, progress: bool,
              checkpoint: Path | None) -> dict[str, Any]:
    from wovr_core.sim.suites import get_task

    task_ids = _task_ids(cfg)
    source = str(checkpoint) if checkpoint is not None else ckpt_id
    unknown = [k for k in policy.contract.image_shapes if k[len(IMAGE_KEY_PREFIX):] not in ("agentview", "wrist")]
    if unknown:
        raise DataError(f"{source}: the policy reads {unknown}; the twin renders agentview and wrist only")
    image_size = _render_size(policy, cfg)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings_key(cfg, ckpt_id, image_size)
    jobs = plan_jobs(cfg, task_ids, {t: len(get_task(cfg.suite, t).init_states()) for t in task_ids})
    done = _done_episodes(out / EPISODES_FILE, settings)
    todo = [j for j in jobs if (j.task_id, j.init_state) not in done]
    if done:
        log.info("resuming: %d of %d episodes already done in %s", len(jobs) - len(todo), len(jobs), out)
    t0 = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"eval {cfg.suite}", unit="ep",
               disable=not progress)
    successes = sum(r["success"] for r in done.values())
    with (out / EPISODES_FILE).open("a") as log_file:
        for record in _run_jobs(checkpoint, cfg, image_size, out, todo, policy):
            record["settings"] = settings
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            done[(record["task_id"], record["init_state"])] = record
            successes += record["success"]
            bar.update(1)
            bar.set_postfix(success=f"{successes}/{len(done)}")
    bar.close()
    results = summarize(cfg, source, ckpt_id, [done[(j.task_id, j.init_state)] for j in jobs], image_size)
    results["seconds"] = time.perf_counter() - t0
    tmp = out / (RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out / RESULTS_FILE)
    return results


def _run_jobs(checkpoint: Path | None, cfg: EvalConfig, image_size: int, out: Path, jobs: list[EpisodeJob],
              policy: Policy) -> Iterator[dict]:
    """Episodes in worker processes that load ``checkpoint``, or in this process with ``policy``."""
    if not jobs:
        return
    workers = min(cfg.workers, len(jobs)) if checkpoint is not None else 1
    if workers == 1:
        _init_worker(str(checkpoint or ""), cfg, image_size, str(out), policy=policy)
        try:
            for job in jobs:
                yield _run_job(job)
        finally:
            _close_worker()
        return
    policy.close()  # the workers load their own copies
    # spawn: EGL/MuJoCo contexts and torch threads do not survive fork.
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker,
                                      initargs=(str(checkpoint), cfg, image_size, str(out))) as pool:
        chunk = max(1, min(cfg.episodes_per_task, len(jobs) // (2 * workers) or 1))
        yield from pool.imap_unordered(_run_job, jobs, chunksize=chunk)


def summarize(cfg: EvalConfig, checkpoint: str | Path, ckpt_id: str, records: list[dict], image_size: int) -> dict:
    tasks = []
    for task_id in sorted({r["task_id"] for r in records}):
        mine = [r for r in records if r["task_id"] == task_id]
        wins = sum(r["success"] for r in mine)
        tasks.append({"task_id": task_id, "task": mine[0]["task"], "episodes": len(mine), "successes": wins,
                      "success_rate": wins / len(mine),
                      "mean_steps": float(np.mean([r["steps"] for r in mine])),
                      "failed_init_states": [r["init_state"] for r in mine if not r["success"]]})
    episodes = [{k: v for k, v in r.items() if k != "settings"} for r in records]
    return {
        "suite": cfg.suite, "checkpoint": str(checkpoint), "checkpoint_id": ckpt_id,
        "average_success": float(np.mean([t["success_rate"] for t in tasks])) if tasks else 0.0,
        "episodes": len(records), "successes": int(sum(r["success"] for r in records)),
        "tasks": tasks, "videos": [r["video"] for r in records if r.get("video")],
        "render_size": image_size, "config": to_dict(cfg), "episode_records": episodes,
        "machine": {"cpus": os.cpu_count(), "loadavg_1min": os.getloadavg()[0]},
    }


def success_summary(results: Mapping[str, Any]) -> dict[str, Any]:
    """What comparisons keep of ``wovr eval`` results: the average success, the episode count and the success
    rate per task instruction."""
    return {"success": results["average_success"], "episodes": results["episodes"],
            "per_task": {t["task"]: t["success_rate"] for t in results["tasks"]}}


def format_table(results: Mapping[str, Any]) -> str:
    """The per-task success table printed by ``wovr eval``."""
    rows = [(str(t["task_id"]), t["task"], f"{t['successes']}/{t['episodes']}", f"{100 * t['success_rate']:.0f}%",
             f"{t['mean_steps']:.0f}") for t in results["tasks"]]
    header = ("id", "task", "success", "rate", "steps")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header).rstrip(), line.format(*("-" * w for w in widths))]
    out += [line.format(*r).rstrip() for r in rows]
    out.append(f"{results['suite']}: average success {100 * results['average_success']:.1f}% "
               f"({results['successes']}/{results['episodes']} episodes)")
    return "\n".join(out)
