"""sim_node: the MuJoCo twin standing in for the cameras AND the arm, with its own clock.

One process hosts the twin (``SimArm`` + ``SimCamera`` devices sharing one ``LiberoTwin``) and publishes on
exactly the topics of ``camera_node`` and ``arm_node``, so the recorder, teleop and policy nodes cannot tell
the difference. Rendering is slow on a CPU, so the sim publishes ``/clock``: every twin step advances sim
time by ``1 / control_hz``; run the other nodes with ``use_sim_time:=true``.

``lockstep`` (default): each step waits (up to ``step_timeout_s`` of wall time) for a command computed from
the current observation, so a slow teleop or policy does not see the world run away. Without commands the
twin still steps, holding (``step_timeout_s`` per step).

For the scripted teleop, the privileged pick-and-place expert's suggestion for the current state is
published on ``/wovr/sim/expert`` (JSON: action, phase, LIBERO success); the twin's task instruction is
latched on ``/wovr/task``; ``/wovr/sim/reset`` starts the next LIBERO init state.
"""

from __future__ import annotations

import json
import threading
import time

from rclpy.lifecycle import State, TransitionCallbackReturn
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String
from std_srvs.srv import Trigger

from wovr import topics
from wovr.arm_node import SAFETY_FROM_ARM
from wovr.bridges import ArmBridge, CameraPublisher
from wovr.camera_calibration import resolve_calibration
from wovr.conversions import to_stamp
from wovr.node_base import LATCHED, WovrNode, image_qos, run
from wovr_core.hardware.arm import ArmConfig
from wovr_core.hardware.camera import CameraConfig
from wovr_core.hardware.safety import SafetyConfig, SafetyEnvelope
from wovr_core.hardware.sim import SimArm, SimCamera, SimSnapshot

# The twin's world frame is not a Franka base frame, and the privileged expert moves fast: the sim's
# envelope keeps the workspace box, e-stop and NaN/stale holds, with rate limits that do not slow the expert.
SIM_SAFETY_DEFAULTS = {
    "workspace_min": (-0.5, -0.5, -0.05), "workspace_max": (0.4, 0.5, 1.5),
    "max_step_translation_m": 0.05, "max_step_rotation_rad": 0.5, "max_speed_mps": 1.0,
    "max_angular_speed_radps": 10.0, "max_accel_mps2": 20.0, "max_jerk_mps3": 1000.0,
    "max_angular_accel_radps2": 200.0, "max_angular_jerk_radps3": 10000.0, "max_gripper_rate": 40.0,
}


class SimNode(WovrNode):
    PARAMETERS = {
        "suite": "libero_object",
        "task_id": 0,
        "image_size": 128,
        "cameras": ["agentview", "wrist"],
        "render_quality": "fast",
        "control_hz": 20.0,
        "init_state": 0,  # LIBERO init state of the first episode; each reset takes the next one
        "time_origin": 1.0,  # sim clock at start (0 would read as "no clock yet")
        "real_time_factor": 1.0,  # at most this many sim seconds per wall second; 0 = as fast as it renders
        "lockstep": True,
        "step_timeout_s": 1.0,
        "command_timeout_s": 0.5,  # sim seconds
        "expert": "clean",  # clean | noisy | none
        "expert_seed": 0,
        "frame_id": "world",
        "qos": "reliable",
    }
    SECTIONS = {"safety": (SafetyConfig, SAFETY_FROM_ARM)}
    SECTION_DEFAULTS = {"safety": SIM_SAFETY_DEFAULTS}

    def __init__(self, **kwargs):
        super().__init__("sim_node", **kwargs)
        self.arm: SimArm | None = None
        self.cameras: list[SimCamera] = []
        self.bridge: ArmBridge | None = None
        self._camera_publishers: list[CameraPublisher] = []
        self.expert = None
        self._episode = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reset_request: threading.Event | None = None
        self._reset_done = threading.Event()
        self._reset_lock = threading.Lock()
        self._entities: list = []

    # ---- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        control_hz = float(self.param("control_hz"))
        size = int(self.param("image_size"))
        names = [str(c) for c in self.param("cameras")]
        device_options = {
            "twin": {"suite": self.param("suite"), "task_id": int(self.param("task_id")), "image_size": size,
                     "cameras": names, "render_quality": self.param("render_quality"),
                     "control_hz": int(round(control_hz))},
            "world": {"clock": "sim", "time_origin": float(self.param("time_origin")),
                      "init_state": int(self.param("init_state"))},
        }
        try:
            arm_config = ArmConfig(type="sim", control_hz=control_hz, options=device_options)
            safety = SafetyEnvelope(self.section("safety", {k: getattr(arm_config, k) for k in SAFETY_FROM_ARM}))
            self.arm = SimArm(arm_config)
            self.arm.connect()
            for name in names:
                camera = SimCamera(CameraConfig(type="sim", name=name, width=size, height=size, fps=int(control_hz),
                                                options=device_options))
                camera.connect()
                self.cameras.append(camera)
            self.expert = self._make_expert()
        except Exception as exc:  # noqa: BLE001
            return self.failed("twin not configured", exc)
        qos = image_qos(self.param("qos"))
        for camera in self.cameras:
            status = resolve_calibration(camera.name, (size, size), "device", device_intrinsics=camera.intrinsics())
            self._camera_publishers.append(CameraPublisher(self, camera.name, qos, status, f"{camera.name}_optical_frame"))
        self.bridge = ArmBridge(self, self.arm, safety, float(self.param("command_timeout_s")), self.param("frame_id"))
        self._clock_pub = self.create_publisher(Clock, "/clock", 10)
        self._expert_pub = self.create_publisher(String, topics.SIM_EXPERT, 10)
        self._task_pub = self.create_publisher(String, topics.TASK, LATCHED)
        self._reset_srv = self.create_service(Trigger, topics.SRV_SIM_RESET, self._srv_reset)
        self._entities = [self._clock_pub, self._expert_pub, self._task_pub, self._reset_srv]
        twin = self.arm.world.twin
        self._task_pub.publish(String(data=twin.task.language))
        self.get_logger().info(f"twin ready: {twin.task.name!r} ({twin.task.language!r}), cameras {names} at "
                               f"{size}px, sim clock from {self.param('time_origin')} s")
        return TransitionCallbackReturn.SUCCESS

    def _make_expert(self):
        kind = self.param("expert")
        if kind == "none":
            return None
        from wovr_core.config import make_config
        from wovr_core.sim.experts import ExpertConfig, PickPlaceExpert

        config = make_config(ExpertConfig, kind, {"seed": int(self.param("expert_seed"))})
        expert = PickPlaceExpert(config)
        expert.reset(self.arm.world.twin)
        return expert

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sim-loop", daemon=True)
        self._thread.start()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_loop()
        return super().on_deactivate(state)

    # ---- the loop -----------------------------------------------------------------------------
    def _loop(self) -> None:
        assert self.arm is not None and self.bridge is not None
        world = self.arm.world
        snapshot = world.latest()
        self._publish(snapshot)
        rtf = float(self.param("real_time_factor"))
        next_wall = time.monotonic()
        try:
            while not self._stop.is_set():
                if self._reset_request is not None:
                    snapshot = self._do_reset()
                    continue
                if self.param("lockstep"):
                    self.bridge.wait_for_command(snapshot.t, float(self.param("step_timeout_s")))
                if rtf > 0:
                    delay = next_wall - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    next_wall = max(next_wall + world.dt / rtf, time.monotonic())
                self.bridge.cycle(world.sim_time)
                snapshot = world.latest()
                self._publish(snapshot)
        except Exception as exc:  # noqa: BLE001 - a dead twin must be loud, not a silent freeze
            self.get_logger().fatal(f"sim loop stopped: {type(exc).__name__}: {exc}")

    def _publish(self, snapshot: SimSnapshot) -> None:
        self._clock_pub.publish(Clock(clock=to_stamp(snapshot.t)))
        for camera, publisher in zip(self.cameras, self._camera_publishers, strict=True):
            publisher.publish(camera.read_latest())
        self.bridge.publish_state(snapshot.state)
        if self.expert is not None:
            action = self.expert.act(self.arm.world.twin.privileged())
            self._expert_pub.publish(String(data=json.dumps({
                "t": snapshot.t, "seq": snapshot.seq, "episode": self._episode, "action": action.tolist(),
                "phase": self.expert.phase.value, "success": bool(snapshot.success)})))

    def _srv_reset(self, request, response):
        with self._reset_lock:
            self._reset_done.clear()
            self._reset_request = threading.Event()
            if not self._reset_done.wait(timeout=120.0):
                response.success, response.message = False, "the sim loop did not reset within 120 s"
                return response
        twin = self.arm.world.twin
        response.success = True
        response.message = f"episode {self._episode}: init state {twin.init_state_index} of {twin.task.name}"
        return response

    def _do_reset(self) -> SimSnapshot:
        assert self.arm is not None and self.bridge is not None
        self._episode += 1
        twin = self.arm.world.twin
        init_state = (int(self.param("init_state")) + self._episode) % twin.num_init_states
        self.arm.reset(init_state)
        if self.expert is not None:
            self.expert.reset(twin)
        self.bridge.safety.reset()
        snapshot = self.arm.world.latest()
        self._reset_request = None
        self._publish(snapshot)
        self._reset_done.set()
        return snapshot

    def _stop_loop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            self._thread = None

    def release(self) -> None:
        self._stop_loop()
        for publisher in self._camera_publishers:
            publisher.destroy()
        self._camera_publishers = []
        self.destroy_entities(self._entities)
        if self.bridge is not None:
            self.bridge.destroy()
            self.bridge = None
        for camera in self.cameras:
            if camera.is_connected:
                camera.disconnect()
        self.cameras = []
        if self.arm is not None and self.arm.is_connected:
            self.arm.disconnect()
        self.arm = None
        super().release()


def main(args: list[str] | None = None) -> int:
    return run(SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
