"""Names and conventions of every topic and service of the ``wovr`` nodes (standard messages only).

Actions travel as ``sensor_msgs/JointState``: ``name`` = :data:`ACTION_NAMES`, ``position`` = the 7-D
normalized delta end-effector action, ``header.frame_id`` = the command source (:data:`SOURCES`), and
``header.stamp`` = for commands, the capture time of the observation the command was computed from (the
safety envelope refuses stale ones); for applied actions, the time the arm executed it.
"""

from __future__ import annotations

NAMESPACE = "/wovr"

ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("panda_finger_joint1", "panda_finger_joint2")

# header.frame_id of commands / applied actions
SOURCE_TELEOP = "teleop"
SOURCE_SCRIPTED = "scripted"
SOURCE_POLICY = "policy"
SOURCE_INTERVENTION = "intervention"
SOURCE_HOLD = "hold"  # applied only: the envelope held (no command, stale command, e-stop...)
SOURCES = (SOURCE_TELEOP, SOURCE_SCRIPTED, SOURCE_POLICY, SOURCE_INTERVENTION)


def camera_image(camera: str) -> str:
    return f"{NAMESPACE}/cameras/{camera}/image_raw"  # sensor_msgs/Image rgb8, stamp = capture time


def camera_info(camera: str) -> str:
    return f"{NAMESPACE}/cameras/{camera}/camera_info"  # sensor_msgs/CameraInfo, latched


def camera_extrinsics(camera: str) -> str:
    return f"{NAMESPACE}/cameras/{camera}/extrinsics"  # geometry_msgs/TransformStamped (hand-eye), latched


def camera_calibration_status(camera: str) -> str:
    return f"{NAMESPACE}/cameras/{camera}/calibration_status"  # std_msgs/String JSON, latched


# arm (arm_node, or sim_node standing in for it)
JOINT_STATES = f"{NAMESPACE}/arm/joint_states"  # sensor_msgs/JointState: ARM_JOINTS + FINGER_JOINTS
EE_POSE = f"{NAMESPACE}/arm/ee_pose"  # geometry_msgs/PoseStamped, same stamp as the joint state
ARM_COMMAND = f"{NAMESPACE}/arm/command"  # JointState action (see module docstring)
APPLIED_ACTION = f"{NAMESPACE}/arm/applied_action"  # JointState action as sent after the envelope
SAFETY_STATUS = f"{NAMESPACE}/arm/safety"  # std_msgs/String: "<status>:<reasons>" per cycle
SRV_ARM_ESTOP = f"{NAMESPACE}/arm/estop"  # std_srvs/Trigger: latch the e-stop
SRV_ARM_RESET_ESTOP = f"{NAMESPACE}/arm/reset_estop"  # std_srvs/Trigger: recover + clear the latch
ESTOP = f"{NAMESPACE}/estop"  # std_msgs/Bool, True latches every arm's e-stop (reset only by the service)

# teleop
INTERVENING = f"{NAMESPACE}/teleop/intervening"  # std_msgs/Bool: the operator has taken over
TELEOP_EVENTS = f"{NAMESPACE}/teleop/events"  # std_msgs/String: TeleopEvent values, for logs and UIs

# recorder
SRV_START_EPISODE = f"{NAMESPACE}/recorder/start_episode"  # std_srvs/Trigger
SRV_STOP_EPISODE = f"{NAMESPACE}/recorder/stop_episode"  # std_srvs/Trigger: commit the episode
SRV_DISCARD_EPISODE = f"{NAMESPACE}/recorder/discard_episode"  # std_srvs/Trigger
SRV_MARK_KEYFRAME = f"{NAMESPACE}/recorder/mark_keyframe"  # std_srvs/Trigger: flag the latest step
SRV_SET_SUCCESS = f"{NAMESPACE}/recorder/set_success"  # std_srvs/SetBool: label the open episode
RECORDER_STATUS = f"{NAMESPACE}/recorder/status"  # std_msgs/String JSON, 1 Hz
TASK = f"{NAMESPACE}/task"  # std_msgs/String, latched: the language instruction of the current task

# sim
SIM_EXPERT = f"{NAMESPACE}/sim/expert"  # std_msgs/String JSON: the privileged expert's suggestion per step
SRV_SIM_RESET = f"{NAMESPACE}/sim/reset"  # std_srvs/Trigger: next LIBERO init state, expert replanned

# policy
SRV_POLICY_ENABLE = f"{NAMESPACE}/policy/enable"  # std_srvs/SetBool: run / pause the policy
