"""The recorder's logic without ROS: frames + states + applied actions in, aligned episode steps out.

Two ways to cut a stream into steps:

* ``record_hz > 0`` (control-rate episodes): on every tick the runtime's ``ObservationAssembler`` gives the
  best-aligned observation; a tick with nothing new is skipped.
* ``record_hz == 0`` (every frame set): :class:`FrameSetMatcher` emits one step per frame of the first
  camera, each other camera contributing its frame nearest in capture time; a set is emitted once every
  camera and the robot state have been seen past it (or after ``wait_s`` of stream time), so no set is
  skipped when a source or the writer falls behind. This is the mode for synchronized cameras and for the
  sim, where every twin step renders all cameras at one instant.

Actions: ``action[t]`` is the last action the arm APPLIED in ``[t_{k-1}, t_k)`` between the capture times
of the previous and this step (the action that LED TO ``o[t]``); ``action[0]`` is ``DUMMY_ACTION``. A step
waits (up to ``wait_s``) for that window's applied action, because topics do not arrive in publishing
order; a window with no applied action records a hold (zero motion, gripper as last applied).

The episode's ``source`` is that of the first commanded (non-hold) action (policy when an intervention comes
first), unless the recorder is told; steps wait in memory until it is known.

Steps go through a queue to one writer thread (encoding is slow), in order with the episode commands
(start, keyframe, success, stop), so a keyframe marks the newest step recorded before the button press.
"""

from __future__ import annotations

import bisect
import logging
import math
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wovr_core.data import EpisodeWriter, WriterConfig
from wovr_core.data.video import VideoConfig
from wovr_core.runtime.alignment import AlignmentConfig, AlignmentError, ObservationAssembler
from wovr_core.types import ACTION_DIM, DUMMY_ACTION, GRIPPER_OPEN, Frame, RobotState

log = logging.getLogger(__name__)

SOURCE_INTERVENTION = "intervention"


class RecorderError(RuntimeError):
    """An episode command that cannot be carried out now (the message says why)."""


@dataclass(frozen=True)
class StepSample:
    """One aligned observation, before an action is attached."""

    t: float
    frames: dict[str, Frame]
    state: RobotState


@dataclass
class RecorderStats:
    frames_received: Counter = field(default_factory=Counter)
    steps_queued: int = 0
    steps_written: int = 0
    steps_refused: int = 0  # add_frame raised ValueError (e.g. NaN state): logged, episode goes on
    steps_dropped_queue_full: int = 0
    sets_incomplete: int = 0  # a source had nothing for the set (or on_skew="reject" and it was too far)
    sets_flagged: int = 0  # a source was further than max_skew_s from the reference, kept (on_skew="flag")
    windows_without_action: int = 0
    windows_with_several_actions: int = 0
    episodes_committed: int = 0
    latencies_s: deque = field(default_factory=lambda: deque(maxlen=200_000))  # capture -> written, per frame

    def to_dict(self) -> dict:
        lat = np.asarray(self.latencies_s, dtype=np.float64)
        out = {k: v for k, v in self.__dict__.items() if k not in ("latencies_s", "frames_received")}
        out["frames_received"] = dict(self.frames_received)
        out["frames_written"] = self.steps_written * max(len(self.frames_received), 1)
        if lat.size:
            out["capture_to_disk_s"] = {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                                        "max": float(lat.max()), "mean": float(lat.mean())}
        return out


class StateBuffer:
    """Robot states by time (a few seconds), for the state nearest to a capture time."""

    def __init__(self, horizon: int = 1000):
        self._times: deque[float] = deque(maxlen=horizon)
        self._states: deque[RobotState] = deque(maxlen=horizon)

    def add(self, state: RobotState) -> None:
        if self._times and state.t < self._times[-1]:
            self._times.clear()
            self._states.clear()
        self._times.append(state.t)
        self._states.append(state)

    def latest_time(self) -> float | None:
        return self._times[-1] if self._times else None

    def nearest(self, t: float) -> RobotState | None:
        if not self._times:
            return None
        times = list(self._times)
        i = bisect.bisect_left(times, t)
        candidates = [j for j in (i - 1, i) if 0 <= j < len(times)]
        return self._states[min(candidates, key=lambda j: abs(times[j] - t))]


class FrameSetMatcher:
    """One step per frame of the reference (first) camera, others matched by nearest capture time.

    A set is decided once every other camera and the robot state have been seen at or past the reference
    frame's capture time, or once the reference stream has run ``wait_s`` further (a late source is waited
    for, a silent one is not). Sources further than ``max_skew_s`` from the reference are handled like the
    runtime's ``AlignmentConfig.on_skew``: ``flag`` keeps the set with the nearest frame/state (counted in
    ``flagged``), ``reject`` skips it (counted in ``incomplete``, as are sets a source has nothing for).
    """

    def __init__(self, cameras: list[str], max_skew_s: float, wait_s: float = 0.5, on_skew: str = "flag",
                 buffer: int = 90):
        self.cameras = list(cameras)
        self.max_skew_s = max_skew_s
        self.wait_s = wait_s
        self.on_skew = on_skew
        self._frames = {c: deque(maxlen=buffer) for c in self.cameras}
        self._next_ref = 0  # index into the reference buffer of the next set to emit
        self.incomplete = 0
        self.flagged = 0

    def add(self, frame: Frame) -> None:
        buffer = self._frames[frame.camera]
        if buffer and frame.t_capture <= buffer[-1].t_capture:
            return  # a repeat (or a clock jump back: keep it simple, wait for newer frames)
        if frame.camera == self.cameras[0] and len(buffer) == buffer.maxlen:
            self._next_ref = max(0, self._next_ref - 1)  # the oldest reference frame falls out
        buffer.append(frame)

    def ready(self, states: StateBuffer) -> list[StepSample]:
        """Frame sets that can be decided now, oldest first."""
        out = []
        ref_buffer = self._frames[self.cameras[0]]
        while self._next_ref < len(ref_buffer):
            ref = ref_buffer[self._next_ref]
            gave_up = ref_buffer[-1].t_capture - ref.t_capture > self.wait_s
            late = [c for c in self.cameras[1:]
                    if not self._frames[c] or self._frames[c][-1].t_capture < ref.t_capture]
            state_time = states.latest_time()
            if (late or state_time is None or state_time < ref.t_capture) and not gave_up:
                break
            self._next_ref += 1
            frames = {self.cameras[0]: ref}
            for cam in self.cameras[1:]:
                if self._frames[cam]:
                    frames[cam] = min(self._frames[cam], key=lambda f: abs(f.t_capture - ref.t_capture))
            state = states.nearest(ref.t_capture)
            if len(frames) < len(self.cameras) or state is None:
                self.incomplete += 1
                continue
            skew = max([abs(f.t_capture - ref.t_capture) for f in frames.values()] + [abs(state.t - ref.t_capture)])
            if skew > self.max_skew_s:
                if self.on_skew == "reject":
                    self.incomplete += 1
                    continue
                self.flagged += 1
            out.append(StepSample(ref.t_capture, frames, state))
        return out

    def skip_to_latest(self) -> None:
        """Start matching from the newest reference frame (at the start of an episode)."""
        self._next_ref = max(0, len(self._frames[self.cameras[0]]) - 1)


class AppliedActions:
    """Applied actions (time, action, source) to attach to steps."""

    def __init__(self, horizon: int = 2000):
        self._items: deque[tuple[float, np.ndarray, str]] = deque(maxlen=horizon)
        self.last_gripper = GRIPPER_OPEN
        self.newest_time = -math.inf

    def add(self, t: float, action: np.ndarray, source: str) -> None:
        self._items.append((t, np.asarray(action, dtype=np.float32), source))
        self.newest_time = max(self.newest_time, t)

    def between(self, t_from: float, t_to: float) -> list[tuple[float, np.ndarray, str]]:
        return [item for item in self._items if t_from <= item[0] < t_to]


# What a commanded (non-hold) action says about the episode's source.
_EPISODE_SOURCE_OF = {"teleop": "teleop", "scripted": "scripted", "policy": "policy", "intervention": "policy"}


@dataclass
class _Episode:
    task: str
    calibration_id: str | None
    extra: dict
    source: str | None = None  # None until known; steps wait in ``pending`` meanwhile
    pending: list = field(default_factory=list)  # [sample, action, source, is_keyframe]
    last_t: float | None = None
    success: bool | None = None


class EpisodeRecorder:
    """Aligns streams into steps and writes episodes with :class:`EpisodeWriter` from one worker thread."""

    def __init__(self, root: str | Path, cameras: list[str], *, record_hz: float = 0.0, dataset_fps: float = 0.0,
                 alignment: AlignmentConfig | None = None, durable: bool = True, robot_type: str | None = None,
                 episode_source: str = "auto", success_label_source: str = "auto", queue_size: int = 90,
                 max_pending_steps: int = 20, wait_s: float = 0.5, video: VideoConfig | None = None,
                 clock: Callable[[], float] = time.time):
        if not cameras:
            raise ValueError("the recorder needs at least one camera name")
        self.root = Path(root).expanduser()
        self.cameras = list(cameras)
        self.record_hz = float(record_hz)
        self.dataset_fps = float(dataset_fps or record_hz or 20.0)
        self.alignment = alignment or AlignmentConfig()
        self.durable = durable
        self.robot_type = robot_type
        if episode_source not in ("auto", *_EPISODE_SOURCE_OF.values()):
            raise ValueError(f"episode_source must be auto | teleop | scripted | policy, got {episode_source!r}")
        self.episode_source = episode_source
        self.success_label_source = success_label_source
        self.max_pending_steps = max_pending_steps
        self.wait_s = wait_s  # stream time a step waits for a late camera, state or applied action
        self.video = video or VideoConfig()
        self.stats = RecorderStats()
        self._clock = clock
        self._lock = threading.Lock()  # streams: matcher, assembler, buffers
        self._states = StateBuffer()
        self._actions = AppliedActions()
        self._matcher = FrameSetMatcher(self.cameras, self.alignment.max_skew_s, wait_s, self.alignment.on_skew)
        self._assembler = ObservationAssembler(self.cameras, self.alignment)
        self._sizes: dict[str, tuple[int, int]] = {}
        self._queue: queue.Queue = queue.Queue()
        self._queue_size = queue_size
        self._recording = False
        self._last_queued_t: float | None = None
        self._waiting: deque[StepSample] = deque()  # aligned, waiting for their action (at most wait_s of stream)
        self._newest_capture = -math.inf
        self._writer: EpisodeWriter | None = None
        self._episode: _Episode | None = None
        self._worker = threading.Thread(target=self._work, name="episode-writer", daemon=True)
        self._closed = False
        self._worker.start()

    # ---- streams (any thread) -----------------------------------------------------------------
    def add_frame(self, frame: Frame) -> None:
        with self._lock:
            self.stats.frames_received[frame.camera] += 1
            self._sizes.setdefault(frame.camera, frame.shape)
            self._matcher.add(frame)
            self._assembler.add_frame(frame, frame.camera)
            self._newest_capture = max(self._newest_capture, frame.t_capture)
            if self.record_hz == 0:
                self._waiting.extend(self._matcher.ready(self._states))
            self._release_waiting()

    def add_state(self, state: RobotState) -> None:
        with self._lock:
            self._states.add(state)
            self._assembler.add_state(state)
            if self.record_hz == 0:
                self._waiting.extend(self._matcher.ready(self._states))
                self._release_waiting()

    def add_applied_action(self, t: float, action: np.ndarray, source: str) -> None:
        with self._lock:
            self._actions.add(t, action, source)
            self._release_waiting()

    def tick(self) -> bool:
        """Control-rate mode: record the current aligned observation if it is new."""
        with self._lock:
            try:
                obs = self._assembler.assemble()
            except AlignmentError:
                return False
            newest = self._waiting[-1].t if self._waiting else self._last_queued_t
            if not self._recording or (newest is not None and obs.t <= newest):
                return False
            self._waiting.append(StepSample(obs.t, dict(obs.frames), obs.state))
            self._release_waiting()
            return True

    def _release_waiting(self) -> None:
        """Queue the aligned samples whose action is known: the arm's applied action of the window before
        the sample has arrived (topics do not arrive in publishing order), or waiting longer is pointless."""
        while self._waiting:
            sample = self._waiting[0]
            prev_t = self._last_queued_t
            if prev_t is not None and self._actions.newest_time < prev_t and \
                    self._newest_capture - sample.t < self.wait_s:
                return
            self._waiting.popleft()
            self._enqueue_sample(sample)

    def _enqueue_sample(self, sample: StepSample) -> bool:
        if not self._recording or (self._last_queued_t is not None and sample.t <= self._last_queued_t):
            return False
        if self._queue.qsize() >= self._queue_size:
            self.stats.steps_dropped_queue_full += 1
            return False
        prev_t = self._last_queued_t
        self._last_queued_t = sample.t
        if prev_t is None:
            action, source = DUMMY_ACTION.copy(), ""
        else:
            applied = self._actions.between(prev_t, sample.t)
            if not applied:
                self.stats.windows_without_action += 1
                action = np.zeros(ACTION_DIM, dtype=np.float32)
                action[6] = self._actions.last_gripper
                source = "hold"
            else:
                if len(applied) > 1:
                    self.stats.windows_with_several_actions += 1
                _, action, source = applied[-1]
                self._actions.last_gripper = float(action[6])
        self.stats.steps_queued += 1
        self._queue.put(("step", sample, action, source))
        return True

    # ---- episode commands (any thread; they run in order with the steps) -----------------------
    @property
    def recording(self) -> bool:
        return self._recording

    @property
    def cameras_seen(self) -> list[str]:
        return sorted(self._sizes)

    def start_episode(self, task: str, calibration_id: str | None = None, extra: dict | None = None,
                      timeout_s: float = 30.0) -> str:
        missing = [c for c in self.cameras if c not in self._sizes]
        if missing:
            raise RecorderError(f"not ready: no images yet from cameras {missing}; is their node running?")
        if not task:
            raise RecorderError("no task: set the recorder's 'task' parameter or publish it on /wovr/task")
        with self._lock:
            if self._recording:
                raise RecorderError("an episode is already recording")
            self._last_queued_t = None
            self._waiting.clear()
            self._matcher.skip_to_latest()
            self._recording = True
        try:
            return self._run(self._do_start, task, calibration_id, dict(extra or {}), timeout_s=timeout_s)
        except BaseException:
            self._recording = False
            raise

    def stop_episode(self, timeout_s: float = 120.0) -> str:
        with self._lock:
            was_recording, self._recording = self._recording, False
        if not was_recording:
            raise RecorderError("no episode is recording")
        return self._run(self._do_stop, timeout_s=timeout_s)

    def discard_episode(self, timeout_s: float = 30.0) -> str:
        with self._lock:
            self._recording = False
        return self._run(self._do_discard, timeout_s=timeout_s)

    def mark_keyframe(self, timeout_s: float = 10.0) -> str:
        return self._run(self._do_keyframe, timeout_s=timeout_s)

    def set_success(self, success: bool, timeout_s: float = 10.0) -> str:
        return self._run(self._do_success, bool(success), timeout_s=timeout_s)

    def close(self, commit_open_episode: bool = True) -> None:
        """Commit (or discard) an open episode, stop the worker, release the dataset lock."""
        if self._closed:
            return
        with self._lock:
            self._recording = False
        if commit_open_episode:
            self._queue.put(("call", self._do_stop_if_open, (), Future()))
        self._queue.put(("close", None, None, None))
        self._worker.join(timeout=300.0)
        self._closed = True

    def _run(self, fn, *args, timeout_s: float):
        if self._closed:
            raise RecorderError("the recorder is closed")
        future: Future = Future()
        self._queue.put(("call", fn, args, future))
        return future.result(timeout=timeout_s)

    # ---- worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            kind, a, b, c = self._queue.get()
            if kind == "close":
                if self._episode is not None:
                    self._do_discard()
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
                return
            if kind == "step":
                self._write_step(a, b, c)
                continue
            fn, args, future = a, b, c
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller of the command
                future.set_exception(exc)

    def _ensure_writer(self) -> EpisodeWriter:
        if self._writer is None:
            cameras = {c: self._sizes[c] for c in self.cameras}
            config = WriterConfig(durable=self.durable, update_stats_on_close=False, video=self.video)
            self._writer = EpisodeWriter(self.root, fps=self.dataset_fps, cameras=cameras,
                                         extra_features={"joint_pos": (7,)}, robot_type=self.robot_type, config=config)
        return self._writer

    def _do_start(self, task: str, calibration_id: str | None, extra: dict) -> str:
        writer = self._ensure_writer()
        self._episode = _Episode(task, calibration_id, extra)
        if self.episode_source != "auto":
            self._open_in_writer(self._episode, self.episode_source)
        return f"recording episode {writer.num_episodes} ({task!r})"

    def _open_in_writer(self, episode: _Episode, source: str) -> None:
        assert self._writer is not None
        self._writer.start_episode(episode.task, source=source, calibration_id=episode.calibration_id,
                                   extra=episode.extra)
        episode.source = source
        for sample, action, step_source, keyframe in episode.pending:
            self._add_step(episode, sample, action, step_source, keyframe)
        episode.pending.clear()

    def _write_step(self, sample: StepSample, action: np.ndarray, source: str) -> None:
        episode = self._episode
        if episode is None or self._writer is None:
            return
        if episode.source is None:
            # The episode's source is known from the first action someone commanded (holds say nothing).
            episode.pending.append([sample, action, source, False])
            source_kind = _EPISODE_SOURCE_OF.get(source)
            if source_kind is not None or len(episode.pending) >= self.max_pending_steps:
                self._open_in_writer(episode, source_kind or "teleop")
            return
        self._add_step(episode, sample, action, source, False)

    def _add_step(self, episode: _Episode, sample: StepSample, action: np.ndarray, source: str,
                  keyframe: bool) -> None:
        writer = self._writer
        assert writer is not None
        images = {c: np.ascontiguousarray(f.rgb) for c, f in sample.frames.items()}
        try:
            writer.add_frame(images, sample.state.proprio(), None if episode.last_t is None else action,
                             timestamps={c: f.t_capture for c, f in sample.frames.items()}, is_keyframe=keyframe,
                             is_intervention=source == SOURCE_INTERVENTION, t=sample.t,
                             joint_pos=np.asarray(sample.state.joint_pos, dtype=np.float32)[:7])
        except ValueError as exc:
            self.stats.steps_refused += 1
            log.warning("step at t=%.3f refused by the writer: %s", sample.t, exc)
            return
        now = self._clock()
        self.stats.latencies_s.extend(now - f.t_capture for f in sample.frames.values())
        self.stats.steps_written += 1
        episode.last_t = sample.t

    def _do_keyframe(self) -> str:
        episode, writer = self._episode, self._writer
        if episode is None or writer is None:
            raise RecorderError("no episode is recording")
        if episode.pending:
            episode.pending[-1][3] = True
            return f"keyframe at step {len(episode.pending) - 1}"
        if episode.source is None:
            raise RecorderError("no step recorded yet to mark as keyframe")
        writer.mark_keyframe()
        return f"keyframe at step {max(writer.num_frames - 1, 0)}"

    def _do_success(self, success: bool) -> str:
        if self._episode is None or self._writer is None:
            raise RecorderError("no episode is recording")
        self._episode.success = success
        return f"episode labelled {'success' if success else 'failure'}"

    def _label_source(self, episode_source: str) -> str:
        if self.success_label_source != "auto":
            return self.success_label_source
        return "sim_predicate" if episode_source == "scripted" else "operator"

    def _do_stop(self) -> str:
        episode, writer = self._episode, self._writer
        if episode is None or writer is None:
            raise RecorderError("no episode is recording")
        if episode.source is None:
            if not episode.pending:
                self._episode = None
                raise RecorderError("the episode has no steps (no aligned frames arrived); nothing written")
            self._open_in_writer(episode, "teleop")
        if writer.num_frames == 0:
            self._do_discard()
            raise RecorderError("every step of the episode was refused by the writer; discarded")
        if episode.success is not None:
            writer.set_success(episode.success, self._label_source(episode.source))
        length = writer.num_frames
        index = writer.end_episode()
        self._episode = None
        self.stats.episodes_committed += 1
        return f"episode {index} committed: {length} steps, source {episode.source}, success {episode.success}"

    def _do_stop_if_open(self) -> str:
        return self._do_stop() if self._episode is not None else "no episode open"

    def _do_discard(self) -> str:
        if self._writer is not None and self._writer.recording:
            self._writer.discard_episode()
        self._episode = None
        return "episode discarded"

    def status(self) -> dict[str, Any]:
        self.stats.sets_incomplete = self._matcher.incomplete
        self.stats.sets_flagged = self._matcher.flagged
        out = self.stats.to_dict()
        out.update(recording=self._recording, queue=self._queue.qsize(), cameras_seen=self.cameras_seen,
                   root=str(self.root))
        return out
