"""The ROS side of one camera and of one arm, shared by ``camera_node``/``arm_node`` and ``sim_node``.

:class:`CameraPublisher` turns Frames into Image + CameraInfo (same stamp) and publishes the calibration
status latched. :class:`ArmBridge` owns the ONE safety envelope of an arm: every command, from teleop or
policy, goes through it once per control cycle; the bridge publishes what was applied and the state.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from wovr import topics
from wovr.camera_calibration import CameraCalibrationStatus
from wovr.conversions import (
    MessageError,
    action_to_msg,
    camera_info_from_fields,
    frame_to_image,
    msg_to_action,
    state_to_msgs,
    transform_from_fields,
)
from wovr.node_base import LATCHED, RELIABLE
from wovr_core.hardware.arm import Arm
from wovr_core.hardware.errors import DeviceError
from wovr_core.hardware.safety import SafetyDecision, SafetyEnvelope
from wovr_core.types import Frame, RobotState


class CameraPublisher:
    """Publishes one camera: ``image_raw`` (+ ``camera_info`` with the same stamp when calibrated)."""

    def __init__(self, node: Node, camera: str, qos, status: CameraCalibrationStatus, frame_id: str):
        self.camera = camera
        self.frame_id = frame_id
        self.status = status
        self.published = 0
        self._node = node
        self._image_pub = node.create_publisher(Image, topics.camera_image(camera), qos)
        self._info_pub = node.create_publisher(CameraInfo, topics.camera_info(camera), qos)
        self._status_pub = node.create_publisher(String, topics.camera_calibration_status(camera), LATCHED)
        self._extrinsics_pub = None
        self._tf_static_pub = None
        self._status_pub.publish(String(data=json.dumps(status.to_json_dict())))
        if status.extrinsics is not None:
            self._publish_extrinsics(status.extrinsics)

    def _publish_extrinsics(self, fields: dict) -> None:
        stamp = self._node.get_clock().now().to_msg()
        transform = transform_from_fields(fields, stamp)
        self._extrinsics_pub = self._node.create_publisher(TransformStamped, topics.camera_extrinsics(self.camera),
                                                           LATCHED)
        self._extrinsics_pub.publish(transform)
        try:  # tf2_msgs ships with every ROS install, but not with the PyPI wheels used in tests
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self._node.get_logger().info("tf2_msgs not available: hand-eye transform published on "
                                         f"{topics.camera_extrinsics(self.camera)} only")
            return
        self._tf_static_pub = self._node.create_publisher(TFMessage, "/tf_static", LATCHED)
        self._tf_static_pub.publish(TFMessage(transforms=[transform]))

    def publish(self, frame: Frame) -> None:
        image = frame_to_image(frame, self.frame_id)
        self._image_pub.publish(image)
        if self.status.camera_info is not None:
            self._info_pub.publish(camera_info_from_fields(self.status.camera_info, image.header.stamp))
        self.published += 1

    def destroy(self) -> None:
        for pub in (self._image_pub, self._info_pub, self._status_pub, self._extrinsics_pub, self._tf_static_pub):
            if pub is not None:
                self._node.destroy_publisher(pub)


@dataclass
class _Command:
    action: np.ndarray
    stamp: float
    source: str


class ArmBridge:
    """Commands in, the envelope, the arm, applied actions and state out.

    ``cycle(now)`` runs one control step: the newest command received since the last cycle is filtered
    (teleop-like sources are checked against the live state's time, policy commands against the capture
    time of their observation); no command, an old command (``command_timeout_s``) or a bad message is a hold.
    """

    def __init__(self, node: Node, arm: Arm, safety: SafetyEnvelope, command_timeout_s: float = 0.5,
                 frame_id: str = "base"):
        self.node = node
        self.arm = arm
        self.safety = safety
        self.command_timeout_s = command_timeout_s
        self.frame_id = frame_id
        self.cycles = 0
        self.rejected_messages = 0
        self._cond = threading.Condition()
        self._command: _Command | None = None
        self._last_state: RobotState | None = None
        self._joint_pub = node.create_publisher(JointState, topics.JOINT_STATES, RELIABLE)
        self._pose_pub = node.create_publisher(PoseStamped, topics.EE_POSE, RELIABLE)
        self._applied_pub = node.create_publisher(JointState, topics.APPLIED_ACTION, RELIABLE)
        self._safety_pub = node.create_publisher(String, topics.SAFETY_STATUS, RELIABLE)
        self._subs = [
            node.create_subscription(JointState, topics.ARM_COMMAND, self._on_command, RELIABLE),
            node.create_subscription(Bool, topics.ESTOP, self._on_estop, RELIABLE),
        ]
        self._services = [
            node.create_service(Trigger, topics.SRV_ARM_ESTOP, self._srv_estop),
            node.create_service(Trigger, topics.SRV_ARM_RESET_ESTOP, self._srv_reset_estop),
        ]

    # ---- inputs -------------------------------------------------------------------------------
    def _on_command(self, msg: JointState) -> None:
        try:
            action, stamp, source = msg_to_action(msg)
        except MessageError as exc:
            self.rejected_messages += 1
            self.node.get_logger().warning(f"ignoring command: {exc}", throttle_duration_sec=2.0)
            return
        with self._cond:
            self._command = _Command(action, stamp, source or topics.SOURCE_TELEOP)
            self._cond.notify_all()

    def wait_for_command(self, newer_than: float, timeout_s: float) -> bool:
        """Block until a command stamped at or after ``newer_than`` is pending (lockstep sims)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._command is not None and self._command.stamp >= newer_than - 1e-9,
                                       timeout_s)

    def _on_estop(self, msg: Bool) -> None:
        if msg.data:
            self.estop("e-stop topic")

    def estop(self, reason: str) -> None:
        self.safety.estop(reason)
        self.node.get_logger().error(f"E-STOP latched ({reason}); reset with {topics.SRV_ARM_RESET_ESTOP}")

    def _srv_estop(self, request, response):
        self.estop("e-stop service")
        response.success, response.message = True, "e-stop latched"
        return response

    def _srv_reset_estop(self, request, response):
        try:
            self.arm.recover()
        except DeviceError as exc:
            response.success, response.message = False, f"arm recovery failed: {exc}"
            return response
        self.safety.reset_estop()
        self.safety.reset(self.safety.last_gripper)
        self.node.get_logger().warning("e-stop cleared by operator")
        response.success, response.message = True, "e-stop cleared"
        return response

    # ---- control ------------------------------------------------------------------------------
    def cycle(self, now: float) -> SafetyDecision:
        with self._cond:
            command, self._command = self._command, None
        state = self._read_state()
        source = topics.SOURCE_HOLD
        if command is None:
            decision = self.safety.hold("no_command")
        elif abs(now - command.stamp) > self.command_timeout_s and command.source != topics.SOURCE_POLICY:
            decision = self.safety.hold("stale_command")
        else:
            live = command.source != topics.SOURCE_POLICY
            # The operator acts on the live robot; a policy step must not outlive the observation it used.
            obs_time = (state.t if state is not None else None) if live else command.stamp
            decision = self.safety.filter(command.action, state, obs_time, now)
            if not decision.held:
                source = command.source
        try:
            sent = np.asarray(self.arm.send_action(decision.action), dtype=np.float32)
        except DeviceError as exc:
            self.estop(f"arm error: {exc}")
            sent, source = self.safety.hold_action(), topics.SOURCE_HOLD
        self._applied_pub.publish(action_to_msg(sent, now, source))
        self._safety_pub.publish(String(data=f"{decision.status}:{','.join(decision.reasons)}"))
        self.cycles += 1
        return decision

    def _read_state(self) -> RobotState | None:
        try:
            self._last_state = self.arm.state()
        except DeviceError as exc:
            self.node.get_logger().error(f"arm state: {exc}", throttle_duration_sec=2.0)
            return None
        return self._last_state

    def publish_state(self, state: RobotState | None = None) -> RobotState | None:
        state = state if state is not None else self._read_state()
        if state is not None:
            joints, pose = state_to_msgs(state, self.frame_id)
            self._joint_pub.publish(joints)
            self._pose_pub.publish(pose)
        return state

    def destroy(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        for srv in self._services:
            self.node.destroy_service(srv)
        for pub in (self._joint_pub, self._pose_pub, self._applied_pub, self._safety_pub):
            self.node.destroy_publisher(pub)

