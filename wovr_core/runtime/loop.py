"""The ROS-free control loop: sense -> operator -> record -> decide -> safety -> act, at a fixed rate.

Used by the ROS nodes and by ``make demo``. One cycle (:meth:`ControlLoop.step`):

1. read the latest frame of every camera and the robot state; align them into an ``Observation``;
2. poll the teleop device (scripted experts get the observation first) and handle its buttons;
3. if an episode is recording, store the observation with the action that LED TO it (the previous
   cycle's sent action; ``DUMMY_ACTION`` first) and that action's telemetry;
4. pick the command: teleop / intervention, or the due step of the newest policy chunk
   (inference runs in a worker thread and is requested before the chunk runs out);
5. filter it through the ONE safety envelope and send it to the arm.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from wovr_core.config import ConfigError
from wovr_core.hardware.arm import Arm
from wovr_core.hardware.camera import Camera
from wovr_core.hardware.errors import DeviceError, DeviceTimeoutError
from wovr_core.hardware.safety import SafetyDecision, SafetyEnvelope
from wovr_core.hardware.teleop import Teleop, TeleopCommand, TeleopEvent
from wovr_core.runtime.alignment import AlignmentConfig, AlignmentError, Observation, ObservationAssembler
from wovr_core.runtime.chunking import ChunkScheduler
from wovr_core.runtime.rate import RateLoop
from wovr_core.runtime.telemetry import NAN, CycleTelemetry, TelemetryLog
from wovr_core.types import DUMMY_ACTION, ActionChunk, EpisodeSource, RobotState, SuccessLabelSource


@runtime_checkable
class PolicySource(Protocol):
    """Anything that turns an observation into an action chunk (the policy-server client, a local
    policy, a replay). Raising means the source is unavailable; the loop holds safely."""

    def infer(self, observation: Observation, task: str) -> ActionChunk: ...


@dataclass(frozen=True)
class EpisodeInfo:
    task: str
    source: EpisodeSource
    t_start: float


@dataclass(frozen=True)
class EpisodeOutcome:
    success: bool | None
    label_source: SuccessLabelSource
    steps: int
    reason: str  # stop | success | failure | max_steps | closed
    telemetry: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LoopStep:
    """One recorded step: observation o[t] and the action that led to it (a[0] = DUMMY_ACTION)."""

    index: int
    observation: Observation
    action: np.ndarray  # (7,) float32, as sent to the arm
    is_keyframe: bool
    is_intervention: bool
    telemetry: CycleTelemetry  # of the cycle that produced ``action``
    events: tuple[str, ...] = ()


@runtime_checkable
class EpisodeSink(Protocol):
    """Where recorded episodes go (the data writer implements this; the runtime never imports it)."""

    def start_episode(self, info: EpisodeInfo) -> None: ...

    def add_step(self, step: LoopStep) -> None: ...

    def end_episode(self, outcome: EpisodeOutcome) -> None: ...


class MemorySink:
    """Keeps episodes in memory (tests, demos)."""

    def __init__(self):
        self.episodes: list[dict] = []

    def start_episode(self, info: EpisodeInfo) -> None:
        self.episodes.append({"info": info, "steps": [], "outcome": None})

    def add_step(self, step: LoopStep) -> None:
        self.episodes[-1]["steps"].append(step)

    def end_episode(self, outcome: EpisodeOutcome) -> None:
        self.episodes[-1]["outcome"] = outcome


@dataclass
class ControlLoopConfig:
    PRESETS: ClassVar[dict] = {"tiny": {}, "paper": {}}

    control_hz: float = 20.0
    mode: Literal["teleop", "policy"] = "teleop"
    task: str = ""
    infer_when_remaining: int = 2  # request the next chunk when this few steps remain
    async_inference: bool = True
    chunk_tolerance: float = 0.25  # fraction of a period a cycle may run early
    max_episode_steps: int = 0  # 0 = until stopped
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)

    def validate(self) -> None:
        if not self.control_hz > 0:
            raise ConfigError(f"ControlLoopConfig.control_hz must be > 0, got {self.control_hz}")
        if self.infer_when_remaining < 0:
            raise ConfigError("ControlLoopConfig.infer_when_remaining must be >= 0")


class ControlLoop:
    """Composes cameras + arm + (policy | teleop) + safety + an optional episode sink."""

    def __init__(self, config: ControlLoopConfig, arm: Arm, cameras: Sequence[Camera] = (),
                 safety: SafetyEnvelope | None = None, policy: PolicySource | None = None,
                 teleop: Teleop | None = None, sink: EpisodeSink | None = None,
                 clock: Callable[[], float] = time.time):
        config.validate()
        self.config = config
        self.arm = arm
        self.cameras = list(cameras)
        self.safety = safety or SafetyEnvelope()
        self.policy = policy
        self.teleop = teleop
        self.sink = sink
        self._clock = clock
        self._check_consistency()

        self.assembler = ObservationAssembler([c.name for c in self.cameras], config.alignment)
        self.scheduler = ChunkScheduler(config.control_hz, config.chunk_tolerance)
        self.telemetry = TelemetryLog()
        self.rate = RateLoop(config.control_hz)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy") \
            if config.async_inference else None
        self._inflight: tuple[Future, Observation, float] | None = None
        self._lock = threading.Lock()

        self.cycle = 0
        self._episode: EpisodeInfo | None = None
        self._episode_steps = 0
        self._episode_telemetry_start = 0
        self._stop_request: tuple[bool | None, str] | None = None
        self._intervening = False
        self._last_sent = DUMMY_ACTION.copy()
        self._pending: tuple[np.ndarray, CycleTelemetry, bool] | None = None
        self._last_obs: Observation | None = None
        self._last_state: RobotState | None = None
        self._source_time: float | None = None
        self._last_latency = NAN
        self._chunks_requested = 0
        self._last_obs_requested_t = math.nan
        self.inference_errors = 0

    # ---- episode control (thread-safe requests; applied inside the next cycle) ----------------
    @property
    def recording(self) -> bool:
        return self._episode is not None

    def start_episode(self, task: str | None = None) -> None:
        with self._lock:
            if self._episode is not None:
                return
            if task is not None:
                self.config = dataclasses.replace(self.config, task=task)
            source: EpisodeSource = "policy" if self.config.mode == "policy" else \
                getattr(self.teleop, "episode_source", "teleop")
            self._episode = EpisodeInfo(task=self.config.task, source=source, t_start=self._clock())
            self._episode_steps = 0
            self._episode_telemetry_start = len(self.telemetry.records)
            self._pending = None  # the first recorded action is DUMMY_ACTION
            self._intervening = False
            self.scheduler.clear()
            self._source_time = self._episode.t_start  # the policy gets source_timeout_s to answer first
            if self.sink is not None:
                self.sink.start_episode(self._episode)

    def stop_episode(self, success: bool | None = None, reason: str = "stop") -> None:
        """Request the end of the episode: the next cycle records its observation, then closes it."""
        with self._lock:
            if self._episode is not None:
                self._stop_request = (success, reason)

    def reset_estop(self, recover_arm: bool = True) -> None:
        """Explicit operator action: clear the arm's error state and the safety latch."""
        if recover_arm:
            self.arm.recover()
        self.safety.reset_estop()

    # ---- running -------------------------------------------------------------------------------
    def run(self, max_cycles: int | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
        """Run at ``control_hz`` until ``max_cycles`` or ``should_stop()``; returns the telemetry summary."""
        for tick in self.rate.ticks(max_cycles, should_stop):
            if self.telemetry.records and tick.index > 0:
                self.telemetry.records[-1].overrun_s = self.rate.stats.last_overrun_s
            self.step()
        return self.telemetry.summary()

    def close(self) -> None:
        """End a recording episode (outcome unknown) and stop the inference worker."""
        if self._episode is not None:
            self._end_episode(None, "closed")
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def step(self) -> CycleTelemetry:
        """One control cycle (see the module docstring)."""
        t0 = self._clock()
        errors: list[str] = []
        obs, state = self._sense(errors)
        command, events = self._operate(obs, errors)
        keyframe = TeleopEvent.MARK_KEYFRAME in events
        self._handle_events_before_record(events)
        if obs is not None and self._episode is not None:
            self._record(obs, keyframe, events)
        self._handle_events_after_record(events)

        now = self._clock()
        telemetry = CycleTelemetry(cycle=self.cycle, t=now)
        decision = self._decide(command, obs, state, now, telemetry, errors)
        sent = self._act(decision, errors)

        drain = getattr(self.arm, "drain_reactions", None)  # drivers with reflex-like reactions
        if callable(drain):
            telemetry.arm_events = ",".join(event.kind for event in drain())
        telemetry.safety_status = decision.status
        telemetry.safety_reasons = ",".join(decision.reasons)
        telemetry.error = "; ".join(errors)
        telemetry.compute_s = self._clock() - t0
        self.telemetry.append(telemetry)
        self._pending = (sent, telemetry, telemetry.source == "intervention")
        self._last_sent = sent
        self.cycle += 1
        return telemetry

    # ---- cycle parts ---------------------------------------------------------------------------
    def _sense(self, errors: list[str]) -> tuple[Observation | None, RobotState | None]:
        for camera in self.cameras:
            try:
                self.assembler.add_frame(camera.read_latest(), camera.name)
            except DeviceTimeoutError:
                pass  # no frame yet: the assembler reports what is missing
            except DeviceError as exc:
                errors.append(f"camera {camera.name}: {exc}")
        state = None
        try:
            state = self.arm.state()
            self.assembler.add_state(state)
        except DeviceError as exc:
            errors.append(f"arm state: {exc}")
        obs = None
        try:
            obs = self.assembler.assemble()
        except AlignmentError as exc:
            if self._episode is not None:
                errors.append(str(exc))
        self._last_state = state
        if obs is not None:
            self._last_obs = obs
        return obs, state

    def _operate(self, obs: Observation | None, errors: list[str]) -> tuple[TeleopCommand | None, list[TeleopEvent]]:
        if self.teleop is None:
            return None, []
        try:
            self.teleop.observe(obs)
            command = self.teleop.poll()
        except (DeviceError, OSError) as exc:
            errors.append(f"teleop: {exc}")
            return None, []
        return command, list(command.events)

    def _handle_events_before_record(self, events: list[TeleopEvent]) -> None:
        if TeleopEvent.ESTOP in events:
            self.safety.estop("operator e-stop")
        if TeleopEvent.START_EPISODE in events:
            self.start_episode()
        if self.config.mode == "policy":
            if TeleopEvent.TAKE_OVER in events:
                self._intervening = True
            if TeleopEvent.HAND_BACK in events and self._intervening:
                self._intervening = False
                self.scheduler.clear()  # a chunk planned before the intervention is stale

    def _handle_events_after_record(self, events: list[TeleopEvent]) -> None:
        if self._episode is None:
            return
        request = self._stop_request
        if TeleopEvent.MARK_SUCCESS in events:
            request = (True, "success")
        elif TeleopEvent.MARK_FAILURE in events:
            request = (False, "failure")
        elif TeleopEvent.STOP_EPISODE in events and request is None:
            request = (None, "stop")
        if request is None and self.config.max_episode_steps and \
                self._episode_steps >= self.config.max_episode_steps:
            request = (None, "max_steps")
        if request is not None:
            self._end_episode(*request)

    def _record(self, obs: Observation, keyframe: bool, events: list[TeleopEvent]) -> None:
        if self._pending is None:
            action, telemetry, intervention = DUMMY_ACTION.copy(), CycleTelemetry(), False
        else:
            action, telemetry, intervention = self._pending
        step = LoopStep(index=self._episode_steps, observation=obs, action=action, is_keyframe=keyframe,
                        is_intervention=intervention, telemetry=telemetry,
                        events=tuple(e.value for e in events))
        self._episode_steps += 1
        if self.sink is not None:
            self.sink.add_step(step)

    def _end_episode(self, success: bool | None, reason: str) -> None:
        with self._lock:
            info, self._episode, self._stop_request = self._episode, None, None
        if info is None:
            return
        label: SuccessLabelSource = "none" if success is None else "operator"
        if self.config.mode == "teleop" and getattr(self.teleop, "episode_source", "") == "scripted" \
                and success is not None:
            label = "sim_predicate"
        summary = TelemetryLog()
        summary.records = self.telemetry.records[self._episode_telemetry_start:]
        outcome = EpisodeOutcome(success=success, label_source=label, steps=self._episode_steps,
                                 reason=reason, telemetry=summary.summary())
        self._intervening = False
        self.scheduler.clear()
        if self.sink is not None:
            self.sink.end_episode(outcome)

    def _decide(self, command: TeleopCommand | None, obs: Observation | None, state: RobotState | None,
                now: float, telemetry: CycleTelemetry, errors: list[str]) -> SafetyDecision:
        if obs is not None:
            telemetry.obs_age_s = now - obs.t
            telemetry.obs_skew_s = obs.skew_s
            telemetry.obs_flags = ",".join(obs.flags)
        state_time = None if state is None else state.t

        if command is not None and (self.config.mode == "teleop" or self._intervening):
            telemetry.source = "intervention" if self.config.mode == "policy" else \
                getattr(self.teleop, "episode_source", "teleop")
            # The operator acts on the live robot: the freshness that matters is the state's.
            return self.safety.filter(command.action, state, state_time, now)

        if self.config.mode == "policy" and self._episode is not None and self.policy is not None:
            self._collect_inference(errors)
            if self.scheduler.remaining(now) <= self.config.infer_when_remaining and obs is not None:
                self._request_inference(obs, errors)
            scheduled = self.scheduler.next(now)
            telemetry.inference_latency_s = self._last_latency
            if scheduled is None:
                return self.safety.hold("no_action")
            telemetry.source = "policy"
            telemetry.chunk_seq = scheduled.chunk_seq
            telemetry.chunk_step = scheduled.step
            telemetry.dropped_steps = scheduled.dropped
            # A chunk step is planned for t_obs + k*dt; it must also not outlive what we sense now.
            planned = scheduled.t_obs + scheduled.step * self.scheduler.dt
            obs_time = planned if obs is None else min(planned, obs.t)
            telemetry.obs_age_s = now - obs_time
            return self.safety.filter(scheduled.action, state, obs_time, now, self._source_time)

        return self.safety.hold("no_action")

    def _act(self, decision: SafetyDecision, errors: list[str]) -> np.ndarray:
        try:
            return np.asarray(self.arm.send_action(decision.action), dtype=np.float32)
        except DeviceError as exc:
            # Nothing more moves until an operator looks at it: latch the e-stop.
            errors.append(f"arm: {exc}")
            self.safety.estop(f"arm error: {exc}")
            return self.safety.hold_action()

    # ---- inference -----------------------------------------------------------------------------
    def _request_inference(self, obs: Observation, errors: list[str]) -> None:
        if self._inflight is not None:
            return
        if self._last_obs_requested_t == obs.t:
            return  # same observation as the last request: wait for new data
        self._last_obs_requested_t = obs.t
        self._chunks_requested += 1
        t_request = self._clock()
        if self._executor is None:
            future: Future = Future()
            try:
                future.set_result(self.policy.infer(obs, self.config.task))
            except Exception as exc:  # noqa: BLE001 - any policy failure -> safe hold, reported
                future.set_exception(exc)
            self._inflight = (future, obs, t_request)
            self._collect_inference(errors)
        else:
            self._inflight = (self._executor.submit(self.policy.infer, obs, self.config.task), obs, t_request)

    def _collect_inference(self, errors: list[str]) -> None:
        if self._inflight is None or not self._inflight[0].done():
            return
        future, obs, t_request = self._inflight
        self._inflight = None
        try:
            chunk = future.result()
            if not isinstance(chunk, ActionChunk):
                raise TypeError(f"policy returned {type(chunk).__name__}, expected ActionChunk")
        except Exception as exc:  # noqa: BLE001 - the server may be gone; safety holds on timeout
            self.inference_errors += 1
            errors.append(f"policy: {type(exc).__name__}: {exc}")
            return
        now = self._clock()
        self._last_latency = now - t_request
        self._source_time = now
        # The loop knows which observation it sent; trust that over the source's stamp.
        self.scheduler.submit(dataclasses.replace(chunk, t_obs=obs.t, seq=self._chunks_requested))

    # ---- checks --------------------------------------------------------------------------------
    def _check_consistency(self) -> None:
        s, a = self.safety.config, self.arm.config
        if abs(s.control_hz - self.config.control_hz) > 1e-9:
            raise ConfigError(f"safety control_hz {s.control_hz} != loop control_hz {self.config.control_hz}")
        if abs(s.translation_scale - a.translation_scale) > 1e-12 or abs(s.rotation_scale - a.rotation_scale) > 1e-12:
            raise ConfigError(
                f"safety scales ({s.translation_scale}, {s.rotation_scale}) differ from the arm's "
                f"({a.translation_scale}, {a.rotation_scale}): the envelope would check the wrong distances"
            )
        if self.config.mode == "policy" and self.policy is None:
            raise ConfigError("mode 'policy' needs a policy source")
        if self.config.mode == "teleop" and self.teleop is None:
            raise ConfigError("mode 'teleop' needs a teleop device")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ConfigError(f"camera names must be unique, got {names}")
