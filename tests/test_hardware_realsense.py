"""RealSenseCamera without a camera: frames fed through pyrealsense2's software_device travel the real
syncer + align path; discovery runs against the (empty) real device list."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from wovr_core.hardware import CameraConfig, DeviceError, DeviceTimeoutError, make_camera

rs = pytest.importorskip("pyrealsense2")
from wovr_core.hardware.realsense import RealSenseCamera, SoftwareRealSense  # noqa: E402

W, H, FPS = 64, 48, 30


def pattern(n: int) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = n % 256
    rgb[..., 1] = np.arange(W, dtype=np.uint8)[None, :]
    rgb[..., 2] = 7
    depth = np.full((H, W), 800 + n, np.uint16)
    return rgb, depth


class Feeder:
    """Pushes numbered frames at FPS from a thread, remembering what it sent."""

    def __init__(self, sw: SoftwareRealSense, domain: str = "global_time", device_clock_start_ms: float = 5000.0):
        self.sw, self.domain = sw, domain
        self.sent: dict[int, tuple[float, float]] = {}  # frame number -> (stamp_ms, host push time)
        self._stop = threading.Event()
        self._t0 = time.time()
        self._device_start = device_clock_start_ms
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        n = 0
        while not self._stop.is_set():
            now = time.time()
            stamp = now * 1000.0 if self.domain == "global_time" else self._device_start + (now - self._t0) * 1000.0
            rgb, depth = pattern(n)
            number = self.sw.push(rgb, depth, stamp, domain=self.domain)
            self.sent[number] = (stamp, now)
            n += 1
            time.sleep(1.0 / FPS)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(2.0)


def camera(sw: SoftwareRealSense, **kw) -> RealSenseCamera:
    cfg = CameraConfig(type="realsense", name="front", width=W, height=H, fps=FPS, **kw)
    return RealSenseCamera(cfg, device=sw.device)


def test_color_and_aligned_depth_with_global_time():
    sw = SoftwareRealSense(W, H, FPS)
    cam = camera(sw, depth=True)
    cam.connect()
    try:
        with Feeder(sw) as feeder:
            frames = [cam.read() for _ in range(6)]
        assert [f.seq for f in frames] == sorted({f.seq for f in frames})  # each read is a new frame
        for f in frames:
            rgb, depth = pattern(f.seq)
            np.testing.assert_array_equal(f.rgb, rgb)
            assert f.depth.dtype == np.uint16 and f.depth.shape == (H, W)
            # identity extrinsics + equal intrinsics: aligned depth is the pushed depth (edges excepted)
            assert np.mean(f.depth == depth) > 0.9
            stamp_ms, pushed_at = feeder.sent[f.seq]
            assert f.t_capture == pytest.approx(stamp_ms / 1000.0, abs=1e-6)
            assert 0.0 <= f.t_receive - f.t_capture < 0.5
            assert f.camera == "front"
        assert cam.timestamp_domain == "global_time"
        assert cam.serial == "SW-0001"
        k = cam.intrinsics()["K"]
        assert k[0][0] == pytest.approx(400.0) and k[0][2] == pytest.approx(W / 2)
        latest = cam.read_latest()
        assert latest.seq >= frames[-1].seq
        with pytest.raises(DeviceTimeoutError, match="no new frame"):
            cam.async_read(timeout_s=0.3)  # the feeder stopped
    finally:
        cam.disconnect()


def test_hardware_clock_is_mapped_onto_host_time():
    sw = SoftwareRealSense(W, H, FPS, serial="SW-HW")
    cam = camera(sw, depth=False)
    cam.connect()
    try:
        with Feeder(sw, domain="hardware_clock", device_clock_start_ms=123456.0) as feeder:
            frames = [cam.read() for _ in range(10)]
        assert cam.timestamp_domain == "hardware_clock"
        for f in frames[3:]:
            _, pushed_at = feeder.sent[f.seq]
            assert abs(f.t_capture - pushed_at) < 0.05  # device clock 123 s apart, mapped to host time
            assert f.depth is None
        spacing = np.diff([f.t_capture for f in frames])
        assert np.all(spacing > 0)
    finally:
        cam.disconnect()


def test_bgr_device_gives_rgb_frames():
    sw = SoftwareRealSense(W, H, FPS, color_format="bgr8")
    cam = camera(sw, depth=False, options={"color_format": "bgr8"})
    cam.connect()
    try:
        with Feeder(sw):
            f = cam.read()
        rgb, _ = pattern(f.seq)
        np.testing.assert_array_equal(f.rgb, rgb[..., ::-1])  # the device sent BGR bytes = our RGB reversed
    finally:
        cam.disconnect()


def test_unsupported_mode_lists_available_modes():
    sw = SoftwareRealSense(W, H, FPS)
    cam = RealSenseCamera(CameraConfig(type="realsense", width=640, height=480, fps=30), device=sw.device)
    with pytest.raises(DeviceError, match=r"available: \['64x48@30 rgb8'\]"):
        cam.connect()
    assert not cam.is_connected


def test_discovery_without_devices_is_a_clear_error():
    cam = make_camera(CameraConfig(type="realsense", serial="123456789"))
    assert isinstance(cam, RealSenseCamera)
    if len(rs.context().query_devices()):
        pytest.skip("a real RealSense is connected")
    with pytest.raises(DeviceError, match="no RealSense device found"):
        cam.connect()
