"""policy_node: observations to the policy server (torch-free WebSocket client), action chunks to the arm.

Each control tick: the newest aligned observation (cameras + arm state, ``ObservationAssembler``) is sent
for inference when the current chunk is about to run out (in a worker thread, never blocking the tick);
the step of the newest chunk that is due now is published as a ``policy`` command, stamped with the
capture time it is based on, and the arm's envelope filters it. Steps that went stale while the server
was thinking are dropped (``ChunkScheduler``), never executed late. The node pauses while the operator
intervenes (``/wovr/teleop/intervening``) and when disabled (``/wovr/policy/enable``, parameter ``enabled``).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool

from wovr import topics
from wovr.conversions import MessageError, action_to_msg, image_to_frame
from wovr.node_base import LATCHED, RELIABLE, WovrNode, image_qos, run
from wovr_core.runtime.alignment import AlignmentConfig, AlignmentError, Observation, ObservationAssembler
from wovr_core.runtime.chunking import ChunkScheduler
from wovr_core.types import ActionChunk, RobotState

IMAGE_PREFIX = "observation.images."


def observation_payload(obs: Observation, task: str, image_keys: dict[str, str],
                        image_shapes: dict[str, list[int]]) -> dict:
    """The policy server's observation dict; images resized to the contract's sizes when they differ."""
    payload = {"observation.state": obs.state.proprio(), "task": task}
    for camera, key in image_keys.items():
        rgb = obs.frames[camera].rgb
        shape = image_shapes.get(key)
        if shape is not None and tuple(rgb.shape) != tuple(shape):
            import cv2

            rgb = cv2.resize(np.ascontiguousarray(rgb), (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_AREA)
        payload[key] = np.ascontiguousarray(rgb, dtype=np.uint8)
    return payload


class PolicyNode(WovrNode):
    PARAMETERS = {
        "policy_server_url": "ws://127.0.0.1:8000/ws",
        "cameras": ["agentview", "wrist"],
        "image_keys": "",  # YAML {camera: contract key}; default observation.images.<camera>
        "control_hz": 20.0,
        "infer_when_remaining": 2,  # request the next chunk when this few steps are left
        "task": "",  # '' = from /wovr/task
        "enabled": True,
        "max_skew_s": 0.035,
        "request_timeout_s": 5.0,
        "reconnect_timeout_s": 5.0,  # a lost server is retried this long per request, then reported
        "qos": "sensor_data",
    }

    def __init__(self, **kwargs):
        super().__init__("policy_node", **kwargs)
        self.client = None
        self.assembler: ObservationAssembler | None = None
        self.scheduler: ChunkScheduler | None = None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: tuple[Future, Observation] | None = None
        self._intervening = False
        self._enabled = True
        self._task_from_topic = ""
        self._chunks = 0
        self._entities: list = []
        self.inference_errors = 0

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        from policy_server.client import PolicyClient

        cameras = [str(c) for c in self.param("cameras")]
        try:
            keys = self.options("image_keys") or {c: f"{IMAGE_PREFIX}{c}" for c in cameras}
            self._image_keys = {str(c): str(k) for c, k in keys.items()}
            self.client = PolicyClient(self.param("policy_server_url"), timeout_s=float(self.param("request_timeout_s")),
                                       reconnect_timeout_s=float(self.param("reconnect_timeout_s")),
                                       connect_now=False)
            self.assembler = ObservationAssembler(cameras, AlignmentConfig(max_skew_s=float(self.param("max_skew_s"))))
            self.scheduler = ChunkScheduler(float(self.param("control_hz")))
            qos = image_qos(self.param("qos"))
        except Exception as exc:  # noqa: BLE001
            return self.failed("policy node not configured", exc)
        self._image_shapes: dict[str, list[int]] | None = None
        self._enabled = bool(self.param("enabled"))
        sub = self.create_subscription
        for cam in cameras:
            self._entities.append(sub(Image, topics.camera_image(cam), lambda m, c=cam: self._on_image(m, c), qos,
))
        self._command_pub = self.create_publisher(JointState, topics.ARM_COMMAND, RELIABLE)
        self._entities += [
            self._command_pub,
            *self.subscribe_robot_state(self._on_state),
            sub(Bool, topics.INTERVENING, self._on_intervening, RELIABLE),
            sub(String, topics.TASK, self._on_task, LATCHED),
            self.create_service(SetBool, topics.SRV_POLICY_ENABLE, self._srv_enable),
        ]
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._timer = self.create_timer(1.0 / float(self.param("control_hz")), self._tick)
        self._entities.append(self._timer)
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.destroy_timer(self._timer)
        self._entities.remove(self._timer)
        return super().on_deactivate(state)

    # ---- inputs -------------------------------------------------------------------------------
    def _on_image(self, msg: Image, camera: str) -> None:
        try:
            frame = image_to_frame(msg, camera, self.now_s())
        except MessageError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)
            return
        with self._lock:
            self.assembler.add_frame(frame, camera)

    def _on_state(self, state: RobotState) -> None:
        with self._lock:
            self.assembler.add_state(state)

    def _on_intervening(self, msg: Bool) -> None:
        if self._intervening and not msg.data:
            self.scheduler.clear()  # a chunk planned before the intervention is stale
        self._intervening = bool(msg.data)

    def _on_task(self, msg: String) -> None:
        self._task_from_topic = msg.data

    def _srv_enable(self, request, response):
        self._enabled = bool(request.data)
        if not self._enabled:
            self.scheduler.clear()
        response.success, response.message = True, f"policy {'enabled' if self._enabled else 'paused'}"
        return response

    # ---- control ------------------------------------------------------------------------------
    def _tick(self) -> None:
        if not self._enabled or self._intervening:
            return
        now = self.now_s()
        with self._lock:
            try:
                obs = self.assembler.assemble()
            except AlignmentError as exc:
                self.get_logger().warning(f"no observation: {exc}", throttle_duration_sec=5.0)
                obs = None
        self._collect()
        if obs is not None and self.scheduler.remaining(now) <= int(self.param("infer_when_remaining")):
            self._request(obs)
        scheduled = self.scheduler.next(now)
        if scheduled is None:
            return  # the arm holds by itself when no command arrives
        planned = scheduled.t_obs + scheduled.step * self.scheduler.dt
        # A chunk step must not outlive what is sensed now: the envelope checks this stamp's age.
        stamp = planned if obs is None else min(planned, obs.t)
        self._command_pub.publish(action_to_msg(scheduled.action, stamp, topics.SOURCE_POLICY))

    def _request(self, obs: Observation) -> None:
        if self._inflight is not None:
            return
        task = self.param("task") or self._task_from_topic
        if not task:
            self.get_logger().warning("no task: set the 'task' parameter or publish /wovr/task",
                                      throttle_duration_sec=5.0)
            return
        self._inflight = (self._executor.submit(self._infer, obs, task), obs)

    def _infer(self, obs: Observation, task: str) -> np.ndarray:
        if self._image_shapes is None:
            self._image_shapes = self.client.metadata["action_contract"]["image_keys"]
        reply = self.client.infer(observation_payload(obs, task, self._image_keys, self._image_shapes))
        return np.asarray(reply["actions"], dtype=np.float32)

    def _collect(self) -> None:
        if self._inflight is None or not self._inflight[0].done():
            return
        future, obs = self._inflight
        self._inflight = None
        try:
            actions = future.result()
        except Exception as exc:  # noqa: BLE001 - the server may be down: no chunk, the arm holds
            self.inference_errors += 1
            self.get_logger().error(f"inference failed: {type(exc).__name__}: {exc}", throttle_duration_sec=2.0)
            return
        self._chunks += 1
        self.scheduler.submit(ActionChunk(actions=actions, t_obs=obs.t, seq=self._chunks))

    def release(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self.client is not None:
            self.client.close()
            self.client = None
        self.destroy_entities(self._entities)
        super().release()


def main(args: list[str] | None = None) -> int:
    return run(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
