"""Hardware layer: ROS-free, torch-free device classes chosen by config through registries."""

from wovr_core.hardware.arm import ARMS, Arm, ArmConfig, Gripper, make_arm
from wovr_core.hardware.camera import CAMERAS, Camera, CameraConfig, make_camera
from wovr_core.hardware.errors import DeviceError, DeviceNotConnectedError, DeviceTimeoutError
from wovr_core.hardware.safety import SafetyConfig, SafetyEnvelope
from wovr_core.hardware.teleop import TELEOPS, Teleop, TeleopCommand, TeleopConfig, TeleopEvent, make_teleop

__all__ = [
    "ARMS", "CAMERAS", "TELEOPS", "Arm", "ArmConfig", "Camera", "CameraConfig", "DeviceError",
    "DeviceNotConnectedError", "DeviceTimeoutError", "Gripper", "SafetyConfig", "SafetyEnvelope", "Teleop", "TeleopCommand", "TeleopConfig",
    "TeleopEvent", "make_arm", "make_camera", "make_teleop",
]
