"""wovr_core value types <-> standard ROS 2 messages (no logic beyond packing)."""

from __future__ import annotations

import math
import threading
from collections import deque

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TransformStamped
from sensor_msgs.msg import CameraInfo, Image, JointState

from wovr.topics import ACTION_NAMES, ARM_JOINTS, FINGER_JOINTS
from wovr_core.types import ACTION_DIM, Frame, RobotState


class MessageError(ValueError):
    """A message that cannot be turned into a wovr value (wrong encoding, size, names, NaN)."""


def to_stamp(t: float) -> Time:
    sec = math.floor(t)
    nanosec = int(round((t - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(sec=int(sec), nanosec=nanosec)


def from_stamp(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def frame_to_image(frame: Frame, frame_id: str) -> Image:
    rgb = np.ascontiguousarray(frame.rgb)
    msg = Image()
    msg.header.stamp = to_stamp(frame.t_capture)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = int(rgb.shape[1]) * 3
    msg.data = rgb.tobytes()  # bytes assign fast; a numpy array is converted element by element
    return msg


def image_to_frame(msg: Image, camera: str, t_receive: float, seq: int = 0) -> Frame:
    if msg.encoding not in ("rgb8", "bgr8"):
        raise MessageError(f"camera {camera}: image encoding {msg.encoding!r} is not rgb8/bgr8")
    h, w = int(msg.height), int(msg.width)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if msg.step < w * 3 or data.size != msg.step * h:
        raise MessageError(f"camera {camera}: {data.size} bytes for {w}x{h} step {msg.step}")
    rgb = data.reshape(h, msg.step)[:, : w * 3].reshape(h, w, 3)
    if msg.encoding == "bgr8":
        rgb = rgb[..., ::-1]
    return Frame(rgb=rgb, t_capture=from_stamp(msg.header.stamp), t_receive=t_receive, seq=seq, camera=camera)


def state_to_msgs(state: RobotState, frame_id: str = "base") -> tuple[JointState, PoseStamped]:
    stamp = to_stamp(state.t)
    fingers = state.gripper_qpos
    if fingers is None:
        fingers = np.array([state.gripper_width / 2, -state.gripper_width / 2])
    joints = JointState()
    joints.header.stamp = stamp
    joints.header.frame_id = frame_id
    joints.name = [*ARM_JOINTS, *FINGER_JOINTS]
    joints.position = [float(v) for v in np.concatenate([np.asarray(state.joint_pos, float).reshape(-1)[:7],
                                                        np.asarray(fingers, float)])]
    if state.joint_vel is not None:
        joints.velocity = [float(v) for v in np.asarray(state.joint_vel, float).reshape(-1)[:7]] + [0.0, 0.0]
    pose = PoseStamped()
    pose.header.stamp = stamp
    pose.header.frame_id = frame_id
    pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in state.ee_pos)
    q = state.ee_quat
    pose.pose.orientation.x, pose.pose.orientation.y = float(q[0]), float(q[1])
    pose.pose.orientation.z, pose.pose.orientation.w = float(q[2]), float(q[3])
    return joints, pose


def msgs_to_state(joints: JointState, pose: PoseStamped) -> RobotState:
    index = {name: i for i, name in enumerate(joints.name)}
    missing = [n for n in (*ARM_JOINTS, *FINGER_JOINTS) if n not in index]
    if missing:
        raise MessageError(f"joint state lacks joints {missing}")
    position = np.asarray(joints.position, dtype=np.float64)
    arm = position[[index[n] for n in ARM_JOINTS]]
    fingers = position[[index[n] for n in FINGER_JOINTS]]
    p, o = pose.pose.position, pose.pose.orientation
    ee_pos = np.array([p.x, p.y, p.z])
    ee_quat = np.array([o.x, o.y, o.z, o.w])
    if not (np.all(np.isfinite(arm)) and np.all(np.isfinite(fingers)) and np.all(np.isfinite(ee_pos))
            and np.all(np.isfinite(ee_quat))):
        raise MessageError("robot state contains NaN or infinity")
    return RobotState(t=from_stamp(joints.header.stamp), joint_pos=arm, ee_pos=ee_pos, ee_quat=ee_quat,
                      gripper_width=float(abs(fingers[0] - fingers[1])), gripper_qpos=fingers)


def action_to_msg(action: np.ndarray, t: float, source: str) -> JointState:
    msg = JointState()
    msg.header.stamp = to_stamp(t)
    msg.header.frame_id = source
    msg.name = list(ACTION_NAMES)
    msg.position = [float(v) for v in np.asarray(action, dtype=np.float64).reshape(-1)]
    return msg


def msg_to_action(msg: JointState) -> tuple[np.ndarray, float, str]:
    """(action, stamp, source); the action may hold NaN (the safety envelope decides what to do with it)."""
    if tuple(msg.name) not in (ACTION_NAMES, ()):
        raise MessageError(f"action names {list(msg.name)} are not {list(ACTION_NAMES)}")
    if len(msg.position) != ACTION_DIM:
        raise MessageError(f"action has {len(msg.position)} values, expected {ACTION_DIM}")
    return np.asarray(msg.position, dtype=np.float64), from_stamp(msg.header.stamp), msg.header.frame_id


def camera_info_from_fields(fields: dict, stamp: Time) -> CameraInfo:
    """Fill CameraInfo from ``calibration.ros_fields.camera_info_fields`` (or the same dict shape)."""
    msg = CameraInfo()
    msg.header.stamp = stamp
    msg.header.frame_id = fields["header"]["frame_id"]
    msg.width, msg.height = int(fields["width"]), int(fields["height"])
    msg.distortion_model = fields["distortion_model"]
    msg.d = [float(v) for v in fields["d"]]
    msg.k = [float(v) for v in fields["k"]]
    msg.r = [float(v) for v in fields["r"]]
    msg.p = [float(v) for v in fields["p"]]
    msg.binning_x, msg.binning_y = int(fields["binning_x"]), int(fields["binning_y"])
    return msg


def transform_from_fields(fields: dict, stamp: Time) -> TransformStamped:
    """Fill TransformStamped from ``calibration.ros_fields.static_transform_fields``."""
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = fields["header"]["frame_id"]
    msg.child_frame_id = fields["child_frame_id"]
    t, r = fields["transform"]["translation"], fields["transform"]["rotation"]
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = t["x"], t["y"], t["z"]
    msg.transform.rotation.x, msg.transform.rotation.y = r["x"], r["y"]
    msg.transform.rotation.z, msg.transform.rotation.w = r["z"], r["w"]
    return msg


class StatePairer:
    """JointState and PoseStamped are published together with one stamp; pair them back into a state.
    Thread-safe, so a node may serve the two subscriptions from different threads."""

    def __init__(self, horizon: int = 50):
        self._joints: deque[JointState] = deque(maxlen=horizon)
        self._poses: deque[PoseStamped] = deque(maxlen=horizon)
        self._lock = threading.Lock()

    def add_joints(self, msg: JointState) -> RobotState | None:
        with self._lock:
            pose = _pop_same_stamp(self._poses, msg.header.stamp)
            if pose is None:
                self._joints.append(msg)
                return None
        return msgs_to_state(msg, pose)

    def add_pose(self, msg: PoseStamped) -> RobotState | None:
        with self._lock:
            joints = _pop_same_stamp(self._joints, msg.header.stamp)
            if joints is None:
                self._poses.append(msg)
                return None
        return msgs_to_state(joints, msg)


def _pop_same_stamp(messages: deque, stamp: Time):
    for i, msg in enumerate(messages):
        if msg.header.stamp == stamp:
            del messages[i]
            return msg
    return None
