"""Shared builders for the episode-dataset tests: smooth synthetic frames and small recorded datasets.

Also imported by the writer subprocesses of the crash and lock tests (which add this folder to sys.path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wovr_core.data import EpisodeWriter, WriterConfig, psnr
from wovr_core.types import DUMMY_ACTION, STATE_DIM

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


def synthetic_image(t: int, height: int = 64, width: int = 64, phase: float = 0.0) -> np.ndarray:
    """A smooth moving colour pattern: distinct per ``t`` yet compressible, like a real scene."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [np.sin(2 * np.pi * (x / width + 0.03 * t + k / 3 + phase))
                + np.cos(2 * np.pi * (1.5 * y / height - 0.02 * t + k / 5)) for k in range(3)]
    return np.clip(128 + 55 * np.stack(channels, -1), 0, 255).astype(np.uint8)


@dataclass
class RecordedEpisode:
    """What a test wrote, to compare the read-back with."""

    task: str
    source: str
    success: bool | None
    actions: np.ndarray
    states: np.ndarray
    keyframes: list[int]
    interventions: np.ndarray
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)


def episode_arrays(index: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Actions and states that encode (episode, frame) so alignment mistakes show: action[t, 0] = t / 1000."""
    rng = np.random.default_rng(seed + index)
    actions = rng.uniform(-1, 1, size=(length, 7)).astype(np.float32)
    actions[:, 0] = np.arange(length) / 1000
    actions[0] = DUMMY_ACTION
    states = rng.normal(size=(length, STATE_DIM)).astype(np.float32)
    states[:, 0] = index * 1000 + np.arange(length)
    return actions, states


def image_for(episode: int, t: int, camera_index: int, shape: tuple[int, int]) -> np.ndarray:
    return synthetic_image(t + 100 * episode, shape[0], shape[1], phase=0.37 * camera_index)


def closest_frame(frame: np.ndarray, episode: int, camera_index: int, shape: tuple[int, int], around: int) -> int:
    """Which original frame (within 3 of ``around``) a decoded frame is: identifies frames despite the codec."""
    candidates = range(max(0, around - 3), around + 4)
    return max(candidates, key=lambda t: psnr(frame, image_for(episode, t, camera_index, shape)))


def record_episode(writer: EpisodeWriter, index: int, length: int, task: str = "pick up the bowl",
                   source: str = "teleop", success: bool | None = True, seed: int = 0,
                   keep_images: bool = False) -> RecordedEpisode:
    """Record one complete episode (the caller commits it with ``end_episode``)."""
    cameras = writer.info.cameras
    actions, states = episode_arrays(index, length, seed)
    interventions = (np.arange(length) % 7) == 3
    writer.start_episode(task, source=source, calibration_id="cal-001", extra={"operator": "ana", "n": index})
    rec = RecordedEpisode(task, source, success, actions, states, [], interventions)
    for t in range(length):
        images = {cam: image_for(index, t, k, hw) for k, (cam, hw) in enumerate(cameras.items())}
        writer.add_frame(images, states[t], None if t == 0 else actions[t], is_intervention=bool(interventions[t]))
        if t % 10 == 4:
            writer.mark_keyframe()
            rec.keyframes.append(t)
        if keep_images:
            for cam, img in images.items():
                rec.images.setdefault(cam, []).append(img)
    if success is not None:
        writer.set_success(success, "operator")
    return rec


def write_dataset(root: Path, lengths: list[int], cameras: dict[str, tuple[int, int]] | None = None,
                  episodes_per_file: int = 2, keep_images: bool = False, **writer_kwargs) -> list[RecordedEpisode]:
    cameras = cameras or {"agentview": (64, 64)}
    config = WriterConfig(episodes_per_file=episodes_per_file)
    recorded = []
    with EpisodeWriter(root, fps=10, cameras=cameras, config=config, **writer_kwargs) as writer:
        for i, length in enumerate(lengths):
            task = ["pick up the bowl", "open the drawer"][i % 2]
            source = ["teleop", "scripted", "policy"][i % 3]
            success = [True, False, None][i % 3]
            recorded.append(record_episode(writer, writer.num_episodes, length, task, source, success,
                                           keep_images=keep_images))
            writer.end_episode()
    return recorded


def python_subprocess(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """Run ``code`` in a fresh interpreter that can import wovr_core and these helpers."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR)]), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for_line(proc: subprocess.Popen, expected: str, timeout: float = 60.0) -> None:
    """Block until the subprocess prints ``expected`` (fails with its stderr if it exits first)."""
    import selectors
    import time

    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            if line.strip() == expected:
                return
            if line == "" and proc.poll() is not None:
                break
    proc.kill()
    raise AssertionError(f"subprocess never printed {expected!r}; stderr:\n{proc.stderr.read()}")
