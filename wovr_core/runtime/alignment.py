"""Observation assembly: align the latest frames of several cameras with robot state by capture time."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

from wovr_core.config import ConfigError
from wovr_core.errors import WovrError
from wovr_core.types import Frame, RobotState


class AlignmentError(WovrError):
    """No observation could be assembled this cycle."""


class ObservationNotReady(AlignmentError):
    """A camera or the robot has not produced anything yet."""


class ObservationRejected(AlignmentError):
    """Frames/state are further apart in time than the skew bound (``on_skew="reject"``)."""


@dataclass
class AlignmentConfig:
    PRESETS: ClassVar[dict] = {"tiny": {}, "paper": {}}

    max_skew_s: float = 0.035  # about one frame at 30 fps
    on_skew: Literal["flag", "reject"] = "flag"
    buffer_size: int = 8  # frames/states kept per source to pick the closest one

    def validate(self) -> None:
        if not self.max_skew_s > 0:
            raise ConfigError(f"AlignmentConfig.max_skew_s must be > 0, got {self.max_skew_s}")
        if self.buffer_size < 1:
            raise ConfigError(f"AlignmentConfig.buffer_size must be >= 1, got {self.buffer_size}")


@dataclass(frozen=True)
class Observation:
    """Time-aligned frames + robot state; ``t`` is the reference capture time the policy sees."""

    t: float
    frames: dict[str, Frame]
    state: RobotState
    skew_s: float  # largest |t_item - t| over the frames and the state
    flags: tuple[str, ...] = ()

    @property
    def aligned(self) -> bool:
        return not self.flags

    def age(self, now: float) -> float:
        return now - self.t


class ObservationAssembler:
    """Keeps a short history per camera and of robot states; assembles the best-aligned set.

    The reference time is the newest instant every camera has covered (the minimum over cameras of
    their latest capture time); each camera contributes its frame closest to it, the robot its
    state closest to it. Sources further than ``max_skew_s`` from the reference are flagged, or
    the whole observation rejected.
    """

    def __init__(self, camera_names: Iterable[str], config: AlignmentConfig | None = None):
        self.config = config or AlignmentConfig()
        self.config.validate()
        self.camera_names = list(camera_names)
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ConfigError(f"camera names must be unique, got {self.camera_names}")
        self._frames: dict[str, deque[Frame]] = {
            name: deque(maxlen=self.config.buffer_size) for name in self.camera_names
        }
        self._states: deque[RobotState] = deque(maxlen=self.config.buffer_size)
        self.flagged = 0
        self.rejected = 0

    def add_frame(self, frame: Frame, camera: str | None = None) -> None:
        name = camera or frame.camera
        if name not in self._frames:
            raise ConfigError(f"frame from unknown camera {name!r}; expected one of {self.camera_names}")
        buffer = self._frames[name]
        if buffer and frame.seq == buffer[-1].seq and frame.t_capture == buffer[-1].t_capture:
            return  # read_latest repeated the same frame
        if buffer and frame.t_capture < buffer[-1].t_capture:
            buffer.clear()  # the device clock jumped back (reconnect): old frames are not comparable
        buffer.append(frame)

    def add_state(self, state: RobotState) -> None:
        if self._states and state.t < self._states[-1].t:
            self._states.clear()
        self._states.append(state)

    def clear(self) -> None:
        for buffer in self._frames.values():
            buffer.clear()
        self._states.clear()

    def assemble(self) -> Observation:
        missing = [name for name, buf in self._frames.items() if not buf]
        if missing or not self._states:
            what = missing + ([] if self._states else ["robot state"])
            raise ObservationNotReady(f"no data yet from: {', '.join(what)}")
        if self._frames:
            t_ref = min(buf[-1].t_capture for buf in self._frames.values())
        else:
            t_ref = self._states[-1].t
        frames = {name: min(buf, key=lambda f: abs(f.t_capture - t_ref)) for name, buf in self._frames.items()}
        state = min(self._states, key=lambda s: abs(s.t - t_ref))
        offsets = {name: frame.t_capture - t_ref for name, frame in frames.items()}
        offsets["robot_state"] = state.t - t_ref
        skew = max(abs(v) for v in offsets.values())
        flags = tuple(f"skew:{name}={off * 1e3:+.1f}ms" for name, off in offsets.items()
                      if abs(off) > self.config.max_skew_s)
        if flags:
            if self.config.on_skew == "reject":
                self.rejected += 1
                raise ObservationRejected(
                    f"observation rejected: sources {', '.join(flags)} exceed the skew bound "
                    f"{self.config.max_skew_s * 1e3:.0f} ms"
                )
            self.flagged += 1
        return Observation(t=t_ref, frames=frames, state=state, skew_s=skew, flags=flags)
