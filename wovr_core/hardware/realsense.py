"""Intel RealSense (D4xx) cameras through pyrealsense2.

The driver streams at sensor level (each sensor opened with the requested profile and started
into a ``rs.syncer``), not through ``rs.pipeline``: the same code then runs on a USB camera, a
``rs.software_device`` (tests, simulation) or a playback device. A background thread waits on the
syncer, aligns depth to color, converts to numpy and stamps each frame:

* ``global_time`` domain (default on D4xx with ``global_time_enabled``): the device clock already
  mapped by librealsense onto host time, milliseconds -> ``t_capture`` seconds;
* ``hardware_clock``: device milliseconds mapped with :class:`DeviceClockMapper`;
* ``system_time``: host arrival time (no better capture time is available).

Select a camera by ``CameraConfig.serial``; empty means "the only connected one".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from wovr_core.config import from_dict
from wovr_core.errors import DependencyError
from wovr_core.hardware.background import BackgroundCamera
from wovr_core.hardware.camera import CameraConfig
from wovr_core.hardware.clock import DeviceClockMapper
from wovr_core.hardware.errors import DeviceError
from wovr_core.types import Frame


def _import_rs():
    try:
        import pyrealsense2 as rs
    except ImportError as exc:  # pragma: no cover - only without the robot extra / libusb
        raise DependencyError(
            "RealSense cameras need pyrealsense2 (pip install 'wovr[robot]') and libusb-1.0-0 (apt)"
        ) from exc
    return rs


@dataclass
class RealSenseOptions:
    color_format: Literal["rgb8", "bgr8"] = "rgb8"  # what the device streams; frames are always RGB
    align_depth: bool = True  # reproject depth into the color camera
    global_time: bool = True  # ask the device to stamp frames on the host clock
    queue_size: int = 4


class RealSenseCamera(BackgroundCamera):
    """A RealSense color (+ depth) camera; ``device`` overrides discovery (software/playback devices)."""

    def __init__(self, config: CameraConfig, device: Any = None):
        super().__init__(config)
        self.options = from_dict(RealSenseOptions, config.options or {})
        self._given_device = device
        self._rs = None
        self._device = None
        self._sensors: list[Any] = []
        self._syncer = None
        self._align = None
        self._color_profile = None
        self._clock_map = DeviceClockMapper()
        self.timestamp_domain: str | None = None
        self.serial: str | None = None

    # ---- BackgroundCamera ---------------------------------------------------------------------
    def _open(self) -> None:
        rs = self._rs = _import_rs()
        device = self._given_device if self._given_device is not None else self._find_device(rs)
        self.serial = _info(rs, device, rs.camera_info.serial_number)
        cfg = self.config
        color_format = rs.format.rgb8 if self.options.color_format == "rgb8" else rs.format.bgr8
        wanted = [(rs.stream.color, color_format)] + ([(rs.stream.depth, rs.format.z16)] if cfg.depth else [])
        selections = []
        for stream, fmt in wanted:
            sensor, profile = self._find_profile(rs, device, stream, fmt)
            selections.append((sensor, profile))
            if stream == rs.stream.color:
                self._color_profile = profile
        self._syncer = rs.syncer(self.options.queue_size)
        self._align = rs.align(rs.stream.color) if cfg.depth and self.options.align_depth else None
        self._clock_map.reset()
        by_sensor: dict[int, tuple[Any, list]] = {}
        for sensor, profile in selections:
            by_sensor.setdefault(id(sensor), (sensor, []))[1].append(profile)
        try:
            for sensor, profiles in by_sensor.values():
                if self.options.global_time and sensor.supports(rs.option.global_time_enabled):
                    sensor.set_option(rs.option.global_time_enabled, 1.0)
                sensor.open(profiles if len(profiles) > 1 else profiles[0])
                sensor.start(self._syncer)
                self._sensors.append(sensor)
        except RuntimeError as exc:
            self._close()
            raise DeviceError(f"RealSense {self.serial}: cannot start streaming: {exc}") from exc
        self._device = device

    def _capture(self, timeout_s: float) -> Frame | None:
        rs = self._rs
        ok, frames = self._syncer.try_wait_for_frames(int(timeout_s * 1000))
        if not ok:
            return None
        t_receive = time.time()
        color = frames.get_color_frame()
        depth = frames.get_depth_frame() if self.config.depth else None
        if not color or (self.config.depth and not depth):
            return None  # the syncer hands out partial sets while streams start up
        if self._align is not None:
            frames = self._align.process(frames)
            depth = frames.get_depth_frame()
            color = frames.get_color_frame()
        rgb = np.asanyarray(color.get_data()).copy()
        if self.options.color_format == "bgr8":
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        depth_mm = None
        if depth:
            raw = np.asanyarray(depth.get_data())
            units = depth.get_units() if hasattr(depth, "get_units") else 0.001
            depth_mm = raw.copy() if abs(units - 0.001) < 1e-9 else \
                np.clip(np.rint(raw * (units * 1000.0)), 0, 65535).astype(np.uint16)
        stamp_s = color.get_timestamp() / 1000.0
        domain = color.get_frame_timestamp_domain()
        self.timestamp_domain = domain.name
        t_capture = self._clock_map.update(stamp_s, t_receive) if domain == rs.timestamp_domain.hardware_clock \
            else stamp_s
        return Frame(rgb=rgb, t_capture=t_capture, t_receive=t_receive, seq=int(color.get_frame_number()),
                     camera=self.name, depth=depth_mm)

    def _close(self) -> None:
        for sensor in self._sensors:
            for step in (sensor.stop, sensor.close):
                try:
                    step()
                except RuntimeError:
                    pass  # already stopped, or the device is gone
        self._sensors = []
        self._syncer = None
        self._device = None

    def intrinsics(self) -> dict | None:
        if self._color_profile is None:
            return None
        i = self._color_profile.as_video_stream_profile().get_intrinsics()
        return {"K": [[i.fx, 0.0, i.ppx], [0.0, i.fy, i.ppy], [0.0, 0.0, 1.0]], "dist": list(i.coeffs),
                "width": i.width, "height": i.height, "model": str(i.model)}

    # ---- discovery ----------------------------------------------------------------------------
    def _find_device(self, rs):
        devices = list(rs.context().query_devices())
        serials = [_info(rs, d, rs.camera_info.serial_number) for d in devices]
        if not devices:
            raise DeviceError(f"camera {self.name!r}: no RealSense device found (check the USB 3 cable, "
                              "udev rules, and that no other process holds the camera)")
        if not self.config.serial:
            if len(devices) > 1:
                raise DeviceError(f"camera {self.name!r}: {len(devices)} RealSense devices connected "
                                  f"({serials}); set camera serial to choose one")
            return devices[0]
        for device, serial in zip(devices, serials, strict=True):
            if serial == self.config.serial:
                return device
        raise DeviceError(f"camera {self.name!r}: no RealSense with serial {self.config.serial!r}; "
                          f"connected: {serials}")

    def _find_profile(self, rs, device, stream, fmt):
        cfg = self.config
        available = []
        for sensor in device.query_sensors():
            for profile in sensor.get_stream_profiles():
                if profile.stream_type() != stream or not profile.is_video_stream_profile():
                    continue
                video = profile.as_video_stream_profile()
                mode = (video.width(), video.height(), profile.fps(), profile.format())
                available.append(mode)
                if mode == (cfg.width, cfg.height, cfg.fps, fmt):
                    return sensor, profile
        modes = sorted({f"{w}x{h}@{f} {str(x).split('.')[-1]}" for w, h, f, x in available})
        raise DeviceError(f"camera {self.name!r}: {str(stream).split('.')[-1]} "
                          f"{cfg.width}x{cfg.height}@{cfg.fps} {str(fmt).split('.')[-1]} is not offered by "
                          f"RealSense {self.serial}; available: {modes}")


def _info(rs, device, field) -> str:
    try:
        return device.get_info(field) if device.supports(field) else "?"
    except RuntimeError:
        return "?"


class SoftwareRealSense:
    """A ``rs.software_device`` with a color and a depth sensor: frames pushed here travel through
    librealsense's real syncer/align path into :class:`RealSenseCamera` (tests, no hardware).

    ``push`` stamps frames in the ``global_time`` domain (milliseconds of host time) unless told
    ``hardware_clock`` (milliseconds of a device clock starting anywhere).
    """

    def __init__(self, width: int, height: int, fps: int, serial: str = "SW-0001",
                 color_format: Literal["rgb8", "bgr8"] = "rgb8", fx: float = 400.0):
        rs = _import_rs()
        self.rs = rs
        self.width, self.height, self.fps = width, height, fps
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.serial_number, serial)
        self.device.register_info(rs.camera_info.name, "WoVR software RealSense")
        self._depth_sensor = self.device.add_sensor("Stereo Module")
        self._color_sensor = self.device.add_sensor("RGB Camera")
        intr = rs.intrinsics()
        intr.width, intr.height, intr.ppx, intr.ppy, intr.fx, intr.fy = width, height, width / 2, height / 2, fx, fx
        intr.model, intr.coeffs = rs.distortion.brown_conrady, [0.0] * 5
        self.intrinsics = intr
        self._depth_profile = self._add_stream(self._depth_sensor, rs.stream.depth, rs.format.z16, 2, uid=0)
        fmt = rs.format.rgb8 if color_format == "rgb8" else rs.format.bgr8
        self._color_profile = self._add_stream(self._color_sensor, rs.stream.color, fmt, 3, uid=1)
        self._depth_sensor.add_read_only_option(rs.option.depth_units, 0.001)
        identity = rs.extrinsics()
        identity.rotation, identity.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
        self._depth_profile.register_extrinsics_to(self._color_profile, identity)
        self.device.create_matcher(rs.matchers.default)
        self._number = 0

    def _add_stream(self, sensor, stream, fmt, bpp: int, uid: int):
        vs = self.rs.video_stream()
        vs.type, vs.index, vs.uid, vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = (
            stream, 0, uid, self.width, self.height, self.fps, bpp, fmt)
        vs.intrinsics = self.intrinsics
        return sensor.add_video_stream(vs)

    def push(self, rgb: np.ndarray, depth_mm: np.ndarray | None, stamp_ms: float,
             domain: Literal["global_time", "hardware_clock"] = "global_time") -> int:
        """Feed one color (+ depth) frame with the same timestamp; returns its frame number."""
        rs = self.rs
        number = self._number
        self._number += 1
        rs_domain = getattr(rs.timestamp_domain, domain)
        color = rs.software_video_frame()
        color.pixels, color.bpp, color.stride = np.ascontiguousarray(rgb), 3, self.width * 3
        color.timestamp, color.domain, color.frame_number = stamp_ms, rs_domain, number
        color.profile = self._color_profile.as_video_stream_profile()
        self._color_sensor.on_video_frame(color)
        if depth_mm is not None:
            depth = rs.software_video_frame()
            depth.pixels, depth.bpp, depth.stride = np.ascontiguousarray(depth_mm, dtype=np.uint16), 2, self.width * 2
            depth.timestamp, depth.domain, depth.frame_number = stamp_ms, rs_domain, number
            depth.profile, depth.depth_units = self._depth_profile.as_video_stream_profile(), 0.001
            self._depth_sensor.on_video_frame(depth)
        return number
