"""Synthetic camera/arm: registered devices with real threads and timestamps (used by runtime tests)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from wovr_core.hardware import (
    ArmConfig,
    CameraConfig,
    DeviceError,
    DeviceNotConnectedError,
    DeviceTimeoutError,
    make_arm,
    make_camera,
)
from wovr_core.hardware.rotations import quat_angle
from wovr_core.hardware.synthetic import SyntheticCamera


def test_camera_streams_timestamped_frames_at_fps():
    cam = make_camera(CameraConfig(type="synthetic", name="cam", width=40, height=30, fps=50, depth=True,
                                   options={"capture_delay_s": 0.01}))
    with pytest.raises(DeviceNotConnectedError):
        cam.read_latest()
    cam.connect()
    try:
        frames = [cam.read() for _ in range(10)]
        seqs = [f.seq for f in frames]
        assert seqs == sorted(set(seqs))
        assert [SyntheticCamera.decode_seq(f) for f in frames] == seqs
        periods = np.diff([f.t_capture for f in frames]) / np.diff(seqs)
        np.testing.assert_allclose(periods, 1 / 50, rtol=1e-6)  # device clock: exact grid
        assert all(0.01 <= f.t_receive - f.t_capture < 0.1 for f in frames)
        assert frames[0].rgb.shape == (30, 40, 3) and frames[0].depth.shape == (30, 40)
        assert not np.array_equal(frames[0].rgb, frames[1].rgb)  # the pattern moves
        assert cam.read_latest().seq >= seqs[-1]
    finally:
        cam.disconnect()


def test_camera_drops_and_failures_surface():
    cam = make_camera(CameraConfig(type="synthetic", fps=100, options={"drop_every": 3, "fail_after": 12}))
    cam.connect()
    try:
        seen = []
        with pytest.raises(DeviceError, match="failed on purpose"):
            for _ in range(20):
                seen.append(cam.read().seq)
        assert 2 not in seen and 5 not in seen and len(seen) >= 6
    finally:
        cam.disconnect()
    # Every frame arrives a second after its capture instant: none can come within the 50 ms read timeout,
    # wherever the connect falls on the capture grid.
    slow = make_camera(CameraConfig(type="synthetic", fps=1, options={"capture_delay_s": 1.0}))
    slow.connect()
    try:
        with pytest.raises(DeviceTimeoutError):
            slow.async_read(timeout_s=0.05)
    finally:
        slow.disconnect()


def test_arm_integrates_actions_and_gripper():
    arm = make_arm(ArmConfig(type="synthetic", translation_scale=0.05, rotation_scale=0.5))
    arm.connect()
    s0 = arm.state()
    sent = arm.send_action(np.array([0.2, -0.1, 0.0, 0, 0, 0.1, 1.0]))
    s1 = arm.state()
    np.testing.assert_allclose(s1.ee_pos - s0.ee_pos, [0.01, -0.005, 0.0])
    assert quat_angle(s0.ee_quat, s1.ee_quat) == pytest.approx(0.05)
    assert sent.dtype == np.float32
    time.sleep(0.5)
    assert arm.state().gripper_width == pytest.approx(0.0, abs=1e-9)  # closed at 0.2 m/s
    with pytest.raises(DeviceError, match="finite"):
        arm.send_action(np.array([np.inf, 0, 0, 0, 0, 0, 0]))
    arm.disconnect()
