"""Arm and gripper base classes and registries (model: lerobot's ``Robot``, franky's value types)."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from wovr_core.registry import Registry
from wovr_core.types import RobotState


@dataclass
class ArmConfig:
    type: str = "sim"
    host: str = "172.16.0.2"  # franka FCI address; the sim ignores it
    control_hz: float = 20.0
    # metres / radians per unit of normalized action; the safety envelope clips before this scaling
    translation_scale: float = 0.05
    rotation_scale: float = 0.5
    options: dict | None = None


class Arm(abc.ABC):
    """A 7-DoF arm commanded with 7-D delta end-effector actions (gripper handled by ``Gripper``).

    ``send_action`` takes the action AFTER the safety envelope and returns what was actually sent.
    """

    def __init__(self, config: ArmConfig):
        self.config = config

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def state(self) -> RobotState: ...

    @abc.abstractmethod
    def send_action(self, action: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def recover(self) -> None:
        """Clear a reflex/error state so motion can resume."""

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    def __enter__(self) -> Arm:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        if self.is_connected:
            self.disconnect()


class Gripper(abc.ABC):
    """Parallel gripper; ``command(g)`` with g in [-1 (open), +1 (closed)]."""

    @abc.abstractmethod
    def command(self, g: float) -> float: ...

    @abc.abstractmethod
    def width(self) -> float: ...


ARMS: Registry[Arm] = Registry("arm")


def make_arm(config: ArmConfig) -> Arm:
    return ARMS.create(config.type, config)
ARMS.register("synthetic", "wovr_core.hardware.synthetic:SyntheticArm")
ARMS.register("franka", "wovr_core.hardware.franka:FrankaArm")
ARMS.register("sim", "wovr_core.hardware.sim:SimArm")
