"""ObservationAssembler: picks the best-aligned frames and state; flags/rejects beyond the skew bound."""

from __future__ import annotations

import time

import numpy as np
import pytest

from wovr_core.config import ConfigError
from wovr_core.hardware.camera import CameraConfig
from wovr_core.hardware.synthetic import SyntheticCamera
from wovr_core.runtime.alignment import (
    AlignmentConfig,
    ObservationAssembler,
    ObservationNotReady,
    ObservationRejected,
)
from wovr_core.types import Frame, RobotState

RGB = np.zeros((4, 4, 3), np.uint8)


def frame(cam: str, t: float, seq: int) -> Frame:
    return Frame(rgb=RGB, t_capture=t, t_receive=t + 0.005, seq=seq, camera=cam)


def state(t: float) -> RobotState:
    return RobotState(t=t, joint_pos=np.zeros(7), ee_pos=np.zeros(3), ee_quat=np.array([0, 0, 0, 1.0]),
                      gripper_width=0.0)


def test_not_ready_until_every_source_reported():
    asm = ObservationAssembler(["front", "wrist"])
    asm.add_frame(frame("front", 1.0, 0))
    asm.add_state(state(1.0))
    with pytest.raises(ObservationNotReady, match="wrist"):
        asm.assemble()


def test_picks_closest_frames_to_slowest_camera():
    asm = ObservationAssembler(["front", "wrist"], AlignmentConfig(max_skew_s=0.02))
    for i in range(6):  # front at 30 fps, wrist at 15 fps, wrist 5 ms late
        asm.add_frame(frame("front", 10.0 + i / 30, i))
    for i in range(3):
        asm.add_frame(frame("wrist", 10.005 + i / 15, i))
    for i in range(10):
        asm.add_state(state(10.0 + i * 0.02))
    obs = asm.assemble()
    assert obs.t == pytest.approx(10.005 + 2 / 15)
    assert obs.frames["wrist"].seq == 2
    assert obs.frames["front"].seq == 4  # 10.1333 is nearest to 10.1383, not the newest (10.1667)
    assert abs(obs.state.t - obs.t) <= 0.01
    assert obs.aligned and obs.skew_s < 0.02


def test_skew_beyond_bound_is_flagged_or_rejected():
    for mode in ("flag", "reject"):
        asm = ObservationAssembler(["front", "wrist"], AlignmentConfig(max_skew_s=0.03, on_skew=mode))
        asm.add_frame(frame("front", 5.0, 0))
        asm.add_frame(frame("wrist", 5.2, 0))  # the front camera lags 200 ms
        asm.add_state(state(5.2))
        if mode == "reject":
            with pytest.raises(ObservationRejected, match="skew"):
                asm.assemble()
            assert asm.rejected == 1
        else:
            obs = asm.assemble()
            assert not obs.aligned and obs.t == 5.0
            assert any(f.startswith("skew:wrist") for f in obs.flags)
            assert any(f.startswith("skew:robot_state") for f in obs.flags)


def test_repeated_and_backwards_frames():
    asm = ObservationAssembler(["cam"])
    asm.add_frame(frame("cam", 1.0, 0))
    asm.add_frame(frame("cam", 1.0, 0))  # read_latest twice: kept once
    asm.add_frame(frame("cam", 1.1, 1))
    assert len(asm._frames["cam"]) == 2
    asm.add_frame(frame("cam", 0.5, 0))  # device restarted: history dropped
    asm.add_state(state(0.5))
    assert asm.assemble().frames["cam"].t_capture == 0.5
    with pytest.raises(ConfigError, match="unknown camera"):
        asm.add_frame(frame("other", 1.0, 0))


def test_two_synthetic_cameras_align_within_bound():
    cams = [SyntheticCamera(CameraConfig(type="synthetic", name="a", width=32, height=24, fps=30)),
            SyntheticCamera(CameraConfig(type="synthetic", name="b", width=32, height=24, fps=15,
                                         options={"phase_s": 0.01}))]
    asm = ObservationAssembler(["a", "b"], AlignmentConfig(max_skew_s=0.02))
    for c in cams:
        c.connect()
    try:
        deadline = time.time() + 1.0
        while time.time() < deadline:
            for c in cams:
                try:
                    asm.add_frame(c.async_read(0.05))
                except Exception:  # noqa: BLE001 - the 15 fps camera often has nothing new
                    pass
            asm.add_state(state(time.time()))
            time.sleep(0.01)
        obs = asm.assemble()
        assert abs(obs.frames["a"].t_capture - obs.frames["b"].t_capture) <= 1 / 60 + 0.011
        assert obs.t == obs.frames["b"].t_capture or obs.t == obs.frames["a"].t_capture
    finally:
        for c in cams:
            c.disconnect()
