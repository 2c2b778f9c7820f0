"""The `franka` driver, unchanged, against franky-sim (a MuJoCo FR3 speaking libfranka's protocol).

Each test gets its own franky-sim process on its own loopback address (the FCI ports are fixed).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from wovr_core.hardware import ArmConfig, DeviceError, make_arm
from wovr_core.hardware.franka import FrankaArm
from wovr_core.hardware.rotations import quat_angle

pytest.importorskip("franky")
FRANKY_SIM = shutil.which("franky-sim") or str(Path(sys.executable).with_name("franky-sim"))
if not Path(FRANKY_SIM).exists():
    pytest.skip("franky-sim is not installed (dev extra)", allow_module_level=True)

HZ = 20.0
_counter = [0]


def _free_loopback_host() -> str:
    _counter[0] += 1
    return f"127.{50 + os.getpid() % 150}.{(os.getpid() // 150) % 250}.{10 + _counter[0]}"


def _die_with_parent() -> None:
    """The simulator must not outlive a crashed test process (Linux: PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class SimServer:
    def __init__(self, host: str):
        self.host = host
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        self.log = tempfile.TemporaryFile("w+")  # a pipe nobody reads could fill up and stall the sim
        self.proc = subprocess.Popen([FRANKY_SIM, "--simulator", "mujoco", "--hostname", self.host],
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"franky-sim exited with {self.proc.returncode}: {self.log.read()}")
            try:
                socket.create_connection((self.host, 1337), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"franky-sim did not listen on {self.host}:1337 within {timeout_s} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def sim():
    server = SimServer(_free_loopback_host())
    server.start()
    yield server
    server.kill()


def franka(host: str, **options) -> FrankaArm:
    arm = make_arm(ArmConfig(type="franka", host=host, control_hz=HZ, options=options))
    assert isinstance(arm, FrankaArm)
    return arm


def run_actions(arm: FrankaArm, action, steps: int) -> list[np.ndarray]:
    sent = []
    for _ in range(steps):
        sent.append(arm.send_action(np.asarray(action, dtype=np.float32)))
        time.sleep(1.0 / HZ)
    return sent


def settle(arm: FrankaArm, seconds: float = 5.0) -> None:
    """Wait until the last step motion has finished (the driver's own motions are asynchronous)."""
    assert arm.wait_until_idle(seconds)


def test_connect_state_relative_motion_and_gripper(sim):
    # franky-sim runs slower than real time on a loaded machine: let the commanded target lead freely
    # and disable the watchdog so the arm finishes the whole commanded path.
    arm = franka(sim.host, max_lead_m=0.5, step_timeout_periods=0)
    arm.connect()
    try:
        s0 = arm.state()
        assert s0.joint_pos.shape == (7,) and np.all(np.isfinite(s0.joint_pos))
        assert 0.3 < s0.ee_pos[0] < 0.7 and s0.ee_pos[2] > 0.3
        assert abs(np.linalg.norm(s0.ee_quat) - 1) < 1e-6
        assert 0.0 <= s0.gripper_width <= 0.08

        # 10 steps of +1 cm in x (action 0.2 * 5 cm) and a small yaw: the arm covers the commanded path.
        sent = run_actions(arm, [0.2, 0, 0, 0, 0, 0.04, -1], 10)
        settle(arm, 10.0)
        s1 = arm.state()
        np.testing.assert_allclose(s1.ee_pos - s0.ee_pos, [0.10, 0, 0], atol=0.01)
        assert quat_angle(s0.ee_quat, s1.ee_quat) == pytest.approx(10 * 0.04 * 0.5, abs=0.03)
        assert sent[0][6] == -1.0

        run_actions(arm, [0, 0, 0, 0, 0, 0, 1.0], 1)  # close
        arm.gripper.wait(5.0)
        assert arm.state().gripper_width < 0.01
        run_actions(arm, [0, 0, 0, 0, 0, 0, -1.0], 1)  # open
        arm.gripper.wait(5.0)
        assert arm.state().gripper_width > 0.07
        # Inside the hysteresis band nothing changes.
        assert run_actions(arm, [0, 0, 0, 0, 0, 0, 0.1], 1)[0][6] == -1.0
    finally:
        arm.disconnect()


def test_joint_move_for_homing(sim):
    arm = franka(sim.host, gripper=False)
    arm.connect()
    try:
        q0 = arm.state().joint_pos
        target = q0 + np.array([0, 0, 0, 0, 0, 0, 0.2])
        arm.move_joints(target, timeout_s=20.0)
        deadline = time.monotonic() + 3.0  # the simulated joint servo settles after the trajectory ends
        while time.monotonic() < deadline and np.abs(arm.state().joint_pos - target).max() > 0.01:
            time.sleep(0.05)
        np.testing.assert_allclose(arm.state().joint_pos, target, atol=0.01)
        with pytest.raises(DeviceError, match="7 finite"):
            arm.move_joints([0.0] * 6)
        arm.send_action(np.array([0.1, 0, 0, 0, 0, 0, -1], np.float32))  # cartesian after joint: fine
        settle(arm)
    finally:
        arm.disconnect()


def test_step_timeout_reaction_stops_a_slow_step(sim):
    # Very slow dynamics + a 2-period timeout: a 5 cm step cannot finish, the reaction stops it.
    arm = franka(sim.host, relative_dynamics_factor=0.02, step_timeout_periods=2.0, gripper=False)
    arm.connect()
    try:
        p0 = arm.state().ee_pos
        arm.send_action(np.array([0, 0, -1.0, 0, 0, 0, -1], np.float32))
        time.sleep(1.0)
        moved = np.linalg.norm(arm.state().ee_pos - p0)
        events = arm.drain_reactions()
        assert [e.kind for e in events] == ["step_timeout"]
        assert 0.0 < moved < 0.02  # stopped well short of 5 cm
        assert arm.drain_reactions() == []
        # The next step continues from where the robot stopped (no wind-up jump).
        arm.send_action(np.array([0, 0, -0.1, 0, 0, 0, -1], np.float32))
        time.sleep(0.5)
        assert np.linalg.norm(arm.state().ee_pos - p0) < moved + 0.0055
    finally:
        arm.disconnect()


def test_impedance_mode_tracks_targets(sim):
    arm = franka(sim.host, motion="impedance", gripper=False, max_lead_m=0.5)
    arm.connect()
    try:
        p0 = arm.state().ee_pos
        run_actions(arm, [0, 0.1, 0, 0, 0, 0, -1], 15)  # 15 x 5 mm in y
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and arm.state().ee_pos[1] - p0[1] < 0.07:
            time.sleep(0.1)
        np.testing.assert_allclose(arm.state().ee_pos - p0, [0, 0.075, 0], atol=0.01)
    finally:
        arm.disconnect()


def test_bad_action_is_refused_and_nothing_moves(sim):
    arm = franka(sim.host, gripper=False)
    arm.connect()
    try:
        p0 = arm.state().ee_pos
        with pytest.raises(DeviceError, match="finite"):
            arm.send_action(np.array([np.nan, 0, 0, 0, 0, 0, -1], np.float32))
        time.sleep(0.2)
        np.testing.assert_allclose(arm.state().ee_pos, p0, atol=1e-4)
        assert arm.fault is None  # a refused command is not a robot error
    finally:
        arm.disconnect()


def test_error_is_surfaced_and_recovered_after_connection_loss(sim):
    arm = franka(sim.host, max_lead_m=0.5, step_timeout_periods=0)
    arm.connect()
    try:
        run_actions(arm, [0.1, 0, 0, 0, 0, 0, -1], 3)
        # A gripper command pending on a dead connection ties up libfranka for its TCP timeout
        # (about a minute, see the driver); this test is about the arm's error path.
        assert arm.gripper.wait(5.0)
        sim.kill()  # the robot controller goes away mid-motion
        with pytest.raises(DeviceError, match="call recover"):
            t0 = time.monotonic()
            while time.monotonic() - t0 < 10.0:
                arm.send_action(np.array([0.1, 0, 0, 0, 0, 0, -1], np.float32))
                time.sleep(1.0 / HZ)
        assert arm.fault is not None
        with pytest.raises(DeviceError, match="error state"):
            arm.send_action(np.zeros(7, np.float32))  # refused until recover()

        sim.start()
        arm.recover()
        assert arm.fault is None
        p0 = arm.state().ee_pos
        run_actions(arm, [0.2, 0, 0, 0, 0, 0, -1], 5)
        settle(arm, 10.0)
        assert arm.state().ee_pos[0] - p0[0] == pytest.approx(0.05, abs=0.01)
    finally:
        arm.disconnect()


def test_unreachable_robot_gives_a_clear_error():
    arm = franka(_free_loopback_host())
    with pytest.raises(DeviceError, match="cannot connect to the Franka"):
        arm.connect()
