"""The twin's devices (camera type "sim", arm type "sim"): one LiberoTwin per process, shared; frames, state and
time describe the same step; the ROS-free control loop runs them with the privileged expert."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wovr_core.config import ConfigError
from wovr_core.hardware import ArmConfig, CameraConfig, DeviceError, make_arm, make_camera
from wovr_core.hardware.safety import SafetyConfig, SafetyEnvelope
from wovr_core.hardware.scripted import ScriptedTeleop
from wovr_core.hardware.sim import SimWorld
from wovr_core.hardware.teleop import TeleopConfig
from wovr_core.runtime import ControlLoop, ControlLoopConfig, MemorySink
from wovr_core.sim.experts import PickPlaceExpert

pytestmark = pytest.mark.sim

TWIN = {"suite": "libero_object", "task_id": 0, "image_size": 64, "cameras": ["agentview", "wrist"]}
SIM_CLOCK = {"clock": "sim", "time_origin": 10.0}


def devices(world=None):
    options = {"twin": TWIN, "world": world or {}}
    arm = make_arm(ArmConfig(type="sim", options=options))
    cams = [make_camera(CameraConfig(type="sim", name=n, width=64, height=64, options=options))
            for n in ("agentview", "wrist")]
    return arm, cams


@pytest.fixture(scope="module")
def connected():
    arm, cams = devices(SIM_CLOCK)
    arm.connect()
    for cam in cams:
        cam.connect()
    yield arm, cams
    for cam in cams:
        cam.disconnect()
    arm.disconnect()
    assert SimWorld._shared is None  # the last device closed the twin


def test_devices_share_one_twin_and_each_step_renders_every_camera(connected):
    arm, (agentview, wrist) = connected
    assert agentview.world is arm.world is wrist.world
    before = agentview.read_latest()
    state_before = arm.state()
    arm.send_action(np.array([0.5, 0, 0, 0, 0, 0, -1.0]))
    after, after_wrist = agentview.read(), wrist.read()
    assert after.seq == before.seq + 1 and after_wrist.seq == after.seq
    assert after.t_capture == pytest.approx(before.t_capture + 0.05)  # sim clock: one control period per step
    assert arm.state().t == after.t_capture and arm.state().ee_pos[0] > state_before.ee_pos[0]
    assert not np.array_equal(after.rgb, before.rgb)
    assert arm.state().gripper_qpos.shape == (2,) and arm.state().proprio().shape == (8,)


def test_sim_time_never_goes_back_across_resets(connected):
    arm, (agentview, _) = connected
    t = agentview.read_latest().t_capture
    arm.reset(3)
    assert agentview.read_latest().t_capture > t and arm.world.twin.init_state_index == 3


def test_intrinsics_are_mujocos_pinhole_model(connected):
    _, (agentview, _) = connected
    model = agentview.world.twin._env.sim.model._model
    import mujoco

    fovy = model.cam_fovy[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "agentview")]
    K = np.asarray(agentview.intrinsics()["K"])
    assert K[0, 0] == pytest.approx(32 / math.tan(math.radians(fovy) / 2)) and K[0, 2] == 32


def test_a_second_twin_config_in_one_process_is_refused(connected):
    with pytest.raises(ConfigError, match="must share one twin"):
        make_arm(ArmConfig(type="sim", options={"twin": {**TWIN, "task_id": 1}, "world": SIM_CLOCK})).connect()
    bad = make_camera(CameraConfig(type="sim", name="agentview", width=128, height=128,
                                   options={"twin": TWIN, "world": SIM_CLOCK}))
    with pytest.raises(ConfigError, match="twin renders 64x64"):
        bad.connect()
    with pytest.raises(ConfigError, match="twin has cameras"):
        make_camera(CameraConfig(type="sim", name="top", options={"twin": TWIN}))
    arm, _ = connected
    with pytest.raises(DeviceError, match="7 finite numbers"):
        arm.send_action(np.array([np.nan, 0, 0, 0, 0, 0, -1]))


def test_the_control_loop_runs_the_twin_with_the_expert_as_teleop(connected):
    arm, cams = connected
    world = arm.world
    world.reset(0)
    expert = PickPlaceExpert()
    expert.reset(world.twin)

    class Privileged:  # the scripted teleop hands the loop's observation to the expert; it needs sim state
        def act(self, observation):
            return expert.act(world.twin.privileged())

    safety = SafetyEnvelope(SafetyConfig(workspace_min=(-0.5, -0.5, -0.05), workspace_max=(0.4, 0.5, 1.5),
                                         max_step_translation_m=0.05, max_speed_mps=1.0, max_accel_mps2=20,
                                         max_jerk_mps3=1000, stale_obs_s=1e9))
    sink = MemorySink()
    loop = ControlLoop(ControlLoopConfig(task=world.twin.task.language), arm, cams, safety=safety,
                       teleop=ScriptedTeleop(TeleopConfig("scripted"), expert=Privileged()), sink=sink,
                       clock=lambda: world.sim_time)
    loop.teleop.connect()
    for _ in range(40):
        loop.step()
    loop.close()
    steps = sink.episodes[0]["steps"]
    assert len(steps) >= 35 and sink.episodes[0]["info"].source == "scripted"
    assert all(s.telemetry.safety_status in ("", "ok", "clipped") for s in steps)
    assert np.linalg.norm(arm.state().ee_pos - steps[0].observation.state.ee_pos) > 0.03  # it approached
