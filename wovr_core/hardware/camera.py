"""Camera base class and registry (model: lerobot's ``Camera``)."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from wovr_core.registry import Registry
from wovr_core.types import Frame


@dataclass
class CameraConfig:
    """What every camera needs; drivers read their own keys from ``options``."""

    type: str = "sim"
    name: str = "agentview"
    width: int = 128
    height: int = 128
    fps: int = 30
    depth: bool = False
    serial: str = ""  # RealSense serial number; empty = the only connected device
    options: dict | None = None


class Camera(abc.ABC):
    """A source of timestamped RGB(-D) frames.

    ``read()`` blocks for the next new frame; ``async_read()`` returns the next frame captured by the
    background thread (waiting up to ``timeout_s``); ``read_latest()`` never waits and may repeat a frame.
    """

    def __init__(self, config: CameraConfig):
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> Frame: ...

    @abc.abstractmethod
    def async_read(self, timeout_s: float = 0.2) -> Frame: ...

    @abc.abstractmethod
    def read_latest(self) -> Frame: ...

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    def intrinsics(self) -> dict | None:
        """Factory intrinsics ``{"K": 3x3 list, "dist": list, "width", "height"}`` when the device has them."""
        return None

    def __enter__(self) -> Camera:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        if self.is_connected:
            self.disconnect()


CAMERAS: Registry[Camera] = Registry("camera")


def make_camera(config: CameraConfig) -> Camera:
    return CAMERAS.create(config.type, config)
CAMERAS.register("synthetic", "wovr_core.hardware.synthetic:SyntheticCamera")
CAMERAS.register("realsense", "wovr_core.hardware.realsense:RealSenseCamera")
CAMERAS.register("sim", "wovr_core.hardware.sim:SimCamera")
