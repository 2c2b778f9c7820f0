"""Teleoperation devices: a motion command plus the operator's buttons."""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field

import numpy as np

from wovr_core.registry import Registry


class TeleopEvent(enum.Enum):
    """Buttons every device exposes (mapped to keys, SpaceMouse buttons or scripted triggers)."""

    START_EPISODE = "start_episode"
    STOP_EPISODE = "stop_episode"
    MARK_KEYFRAME = "mark_keyframe"
    MARK_SUCCESS = "mark_success"
    MARK_FAILURE = "mark_failure"
    TAKE_OVER = "take_over"  # operator intervention starts
    HAND_BACK = "hand_back"  # intervention ends, the policy resumes
    ESTOP = "estop"


@dataclass
class TeleopCommand:
    action: np.ndarray  # (7,) normalized delta-EE action
    events: list[TeleopEvent] = field(default_factory=list)
    active: bool = True  # False when the operator is not touching the device


@dataclass
class TeleopConfig:
    type: str = "scripted"
    options: dict | None = None


class Teleop(abc.ABC):
    def __init__(self, config: TeleopConfig):
        self.config = config

    @abc.abstractmethod
    def connect(self) -> None: ...

    def observe(self, observation) -> None:  # noqa: B027 - optional hook, a no-op for real devices
        """Receive the latest observation before ``poll`` (scripted experts act on it; devices ignore it)."""

    @abc.abstractmethod
    def poll(self) -> TeleopCommand:
        """Non-blocking: the current command and the events since the last poll."""

    @abc.abstractmethod
    def disconnect(self) -> None: ...


TELEOPS: Registry[Teleop] = Registry("teleop")


def make_teleop(config: TeleopConfig) -> Teleop:
    return TELEOPS.create(config.type, config)
TELEOPS.register("keyboard", "wovr_core.hardware.keyboard:KeyboardTeleop")
TELEOPS.register("spacemouse", "wovr_core.hardware.spacemouse:SpaceMouseTeleop")
TELEOPS.register("scripted", "wovr_core.hardware.scripted:ScriptedTeleop")
