"""Collect scripted-expert demonstrations in the twin into an episode dataset.

Worker processes run the twin (rendering is the bottleneck) and send finished episodes to the parent,
the only writer of the dataset. Layouts are freshly sampled from each task's BDDL regions (seeded), so
demonstrations never reuse LIBERO's fixed init states, which evaluation uses.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wovr_core.config import ConfigError, save_config
from wovr_core.sim.experts import ExpertConfig, Phase
from wovr_core.sim.twin import TwinConfig

# Phases at whose start the expert "presses the keyframe button": task-critical moments.
KEYFRAME_PHASES = (Phase.GRASP, Phase.RELEASE)


@dataclass
class CollectConfig:
    """What to collect: suite, tasks, episodes per task, expert noise, rendering."""

    PRESETS: ClassVar[dict] = {
        "tiny": {},
        "paper": {"episodes_per_task": 50, "twin": {"image_size": 256}, "workers": 8},
    }

    suite: str = "libero_object"
    tasks: tuple[int, ...] = ()  # empty: every task of the suite
    episodes_per_task: int = 5
    keep_failures: bool = True
    workers: int = 2
    seed: int = 0
    fps: int = 20
    twin: TwinConfig = field(default_factory=TwinConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)

    def validate(self) -> None:
        if self.episodes_per_task < 1:
            raise ConfigError("collect.episodes_per_task must be >= 1")
        if self.workers < 1:
            raise ConfigError("collect.workers must be >= 1")


@dataclass
class CollectedEpisode:
    task: str
    task_id: int
    layout_seed: int
    success: bool
    mistake: str
    images: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8
    states: np.ndarray  # (T, 8)
    actions: np.ndarray  # (T, 7); actions[0] is the dummy action
    keyframes: np.ndarray  # (T,) bool
    timestamps: np.ndarray  # (T,) sim seconds


def _episode_jobs(cfg: CollectConfig, task_ids: list[int]) -> list[tuple[int, int]]:
    # Seeds are a pure function of (seed, task, episode): a rerun collects the same layouts.
    return [(t, cfg.seed * 1_000_003 + t * 10_007 + e) for t in task_ids for e in range(cfg.episodes_per_task)]


_worker_state: dict[str, Any] = {}


def _collect_one(cfg: CollectConfig, task_id: int, layout_seed: int) -> CollectedEpisode:
    from dataclasses import replace

    from wovr_core.sim.experts import PickPlaceExpert
    from wovr_core.sim.rollout import run_expert_episode
    from wovr_core.sim.twin import LiberoTwin

    twin = _worker_state.get(task_id)
    if twin is None:
        for old in list(_worker_state.values()):  # one scene per worker at a time
            old.close()
        _worker_state.clear()
        twin = LiberoTwin(replace(cfg.twin, suite=cfg.suite, task_id=task_id, control_hz=cfg.fps))
        _worker_state[task_id] = twin
    expert = PickPlaceExpert(replace(cfg.expert, seed=layout_seed))
    frames: dict[str, list] = {cam: [] for cam in twin.config.cameras}
    states, actions, keyframes, stamps = [], [], [], []
    last_phase = [None]

    def sink(obs: dict, action: np.ndarray, step: int) -> None:
        for cam in frames:
            frames[cam].append(obs[f"observation.images.{cam}"])
        states.append(obs["observation.state"])
        actions.append(np.asarray(action, dtype=np.float32))
        stamps.append(obs["timestamp"])
        keyframes.append(expert.phase in KEYFRAME_PHASES and expert.phase != last_phase[0])
        last_phase[0] = expert.phase

    outcome = run_expert_episode(twin, expert, None, sink=sink, layout_seed=layout_seed,
                                 extra_steps_after_success=5)
    return CollectedEpisode(
        task=twin.task.language, task_id=task_id, layout_seed=layout_seed, success=outcome.success,
        mistake=outcome.mistake, images={c: np.stack(v) for c, v in frames.items()}, states=np.stack(states),
        actions=np.stack(actions), keyframes=np.array(keyframes, dtype=bool), timestamps=np.array(stamps),
    )


def _collect_job(args: tuple[CollectConfig, int, int]) -> CollectedEpisode:
    return _collect_one(*args)


def iter_episodes(cfg: CollectConfig) -> Iterator[CollectedEpisode]:
    """Yield expert episodes (in completion order when ``workers > 1``)."""
    from wovr_core.sim.suites import task_names

    task_ids = list(cfg.tasks) or list(range(len(task_names(cfg.suite))))
    jobs = [(cfg, t, s) for t, s in _episode_jobs(cfg, task_ids)]
    if cfg.workers == 1:
        for job in jobs:
            yield _collect_job(job)
        return
    # spawn: EGL/MuJoCo contexts do not survive fork.
    with mp.get_context("spawn").Pool(cfg.workers, maxtasksperchild=None) as pool:
        # chunksize groups episodes of one task on one worker, so scenes are rarely rebuilt.
        yield from pool.imap_unordered(_collect_job, jobs, chunksize=max(1, cfg.episodes_per_task // 2))


def collect(cfg: CollectConfig, out: str | Path, progress: bool = True) -> dict:
    """Collect into the dataset at ``out`` (created or appended to); returns a summary."""
    from tqdm import tqdm

    from wovr_core.data import EpisodeWriter

    cfg.validate()
    out = Path(out)
    cameras = {cam: (cfg.twin.image_size, cfg.twin.image_size) for cam in cfg.twin.cameras}
    total = (len(cfg.tasks) or _num_tasks(cfg.suite)) * cfg.episodes_per_task
    summary = {"episodes": 0, "successes": 0, "discarded_failures": 0, "frames": 0}
    with EpisodeWriter(out, fps=cfg.fps, cameras=cameras, robot_type="panda_libero_twin") as writer:
        bar = tqdm(total=total, desc=f"collect {cfg.suite}", unit="ep", disable=not progress)
        for ep in iter_episodes(cfg):
            bar.update(1)
            if not ep.success and not cfg.keep_failures:
                summary["discarded_failures"] += 1
                continue
            writer.start_episode(ep.task, source="scripted", success=ep.success, success_source="sim_predicate",
                                 extra={"suite": cfg.suite, "task_id": ep.task_id, "layout_seed": ep.layout_seed,
                                        "expert_mistake": ep.mistake})
            for t in range(len(ep.actions)):
                writer.add_frame({cam: frames[t] for cam, frames in ep.images.items()}, ep.states[t],
                                 ep.actions[t], is_keyframe=bool(ep.keyframes[t]), t=float(ep.timestamps[t]),
                                 timestamps={cam: float(ep.timestamps[t]) for cam in ep.images})
            writer.end_episode()
            summary["episodes"] += 1
            summary["successes"] += int(ep.success)
            summary["frames"] += len(ep.actions)
            bar.set_postfix(success=f"{summary['successes']}/{summary['episodes']}")
        bar.close()
    save_config(cfg, out / "meta", filename="collect_config.json")
    return summary


def _num_tasks(suite: str) -> int:
    from wovr_core.sim.suites import task_names

    return len(task_names(suite))
