"""Bring up the WoVR robot side: ``ros2 launch wovr bringup.launch.py [sim:=true] [arg:=value ...]``.

Real robot (``sim:=false``, default): one ``camera_node`` per entry of ``cameras_config``, ``arm_node``
(Franka via franky), ``recorder_node``, and optionally ``teleop_node`` (``teleop:=spacemouse``; the keyboard
teleop reads a terminal, so run it in its own: ``ros2 run wovr teleop_node --ros-args -p
teleop_type:=keyboard``) and ``policy_node`` (``policy:=true``; the teleop then only intervenes). Parameters come from
``config/robot.yaml`` (or ``config:=/path/to/your.yaml``), then the launch arguments.

Sim (``sim:=true``): ``sim_node`` (the LIBERO twin, publishing ``/clock``) replaces the cameras and the arm;
every other node runs on sim time. ``teleop:=scripted`` (default in sim) records expert demonstrations.
"""

from pathlib import Path

import yaml
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

ARGUMENTS = {
    "sim": ("false", "true: the MuJoCo twin stands in for cameras and arm"),
    "config": ("", "node parameters (ros__parameters YAML); default config/robot.yaml or config/sim.yaml"),
    "cameras_config": ("", "camera list YAML (name, serial, width, height, fps); default config/cameras.yaml"),
    "policy_server_url": ("ws://127.0.0.1:8000/ws", "policy server WebSocket URL"),
    "policy": ("false", "true: run policy_node (the teleop, if any, intervenes)"),
    "record_dir": ("~/wovr/data/episodes", "dataset folder the recorder writes"),
    "task": ("", "language instruction stored with each episode ('' in sim: the twin's task)"),
    "teleop": ("", "spacemouse | scripted | none; default none (robot: run the keyboard teleop in its own "
                   "terminal, it reads the TTY), scripted (sim)"),
    "arm_host": ("172.16.0.2", "Franka FCI address"),
    "calibration_dir": ("", "calibration store; default $WOVR_CALIBRATION_DIR or ~/.config/wovr/calibration"),
    "suite": ("libero_object", "sim: LIBERO suite"),
    "task_id": ("0", "sim: task index in the suite"),
}


def _arg(context, name: str) -> str:
    return LaunchConfiguration(name).perform(context)


def _is_true(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _nodes(context):
    sim = _is_true(_arg(context, "sim"))
    share = Path(FindPackageShare("wovr").perform(context)) / "launch" / "config"
    params_file = _arg(context, "config") or str(share / ("sim.yaml" if sim else "robot.yaml"))
    teleop = _arg(context, "teleop") or ("scripted" if sim else "none")
    policy = _is_true(_arg(context, "policy"))
    record_dir = str(Path(_arg(context, "record_dir")).expanduser())
    actions = [LogInfo(msg=f"wovr bringup: sim={sim} teleop={teleop} policy={policy} params={params_file} "
                           f"record_dir={record_dir}")]

    if sim:
        actions.append(Node(package="wovr", executable="sim_node", name="sim_node", output="screen",
                            parameters=[params_file, {"suite": _arg(context, "suite"),
                                                      "task_id": int(_arg(context, "task_id"))}]))
        camera_names = None  # from the params file (recorder_node.cameras)
    else:
        cameras_file = _arg(context, "cameras_config") or str(share / "cameras.yaml")
        cameras = yaml.safe_load(Path(cameras_file).read_text())["cameras"]
        camera_names = [c["name"] for c in cameras]
        for cam in cameras:
            actions.append(Node(
                package="wovr", executable="camera_node", name=f"camera_{cam['name']}", output="screen",
                parameters=[params_file, {
                    "camera_name": cam["name"], "camera_type": cam.get("type", "realsense"),
                    "serial": str(cam.get("serial", "")), "width": int(cam.get("width", 640)),
                    "height": int(cam.get("height", 480)), "fps": int(cam.get("fps", 30)),
                    "calibration_dir": _arg(context, "calibration_dir"),
                    "hand_eye": bool(cam.get("hand_eye", False)),
                }]))
        actions.append(Node(package="wovr", executable="arm_node", name="arm_node", output="screen",
                            parameters=[params_file, {"host": _arg(context, "arm_host")}]))

    recorder_params = {"record_dir": record_dir, "task": _arg(context, "task"), "use_sim_time": sim}
    if camera_names is not None:
        recorder_params["cameras"] = camera_names
    actions.append(Node(package="wovr", executable="recorder_node", name="recorder_node", output="screen",
                        parameters=[params_file, recorder_params]))

    if policy:
        policy_params = {"policy_server_url": _arg(context, "policy_server_url"), "task": _arg(context, "task"),
                         "use_sim_time": sim}
        if camera_names is not None:
            policy_params["cameras"] = camera_names
        actions.append(Node(package="wovr", executable="policy_node", name="policy_node", output="screen",
                            parameters=[params_file, policy_params]))

    if teleop != "none":
        actions.append(Node(package="wovr", executable="teleop_node", name="teleop_node", output="screen",
                            parameters=[params_file, {"teleop_type": teleop,
                                                      "mode": "intervention" if policy else "teleop",
                                                      "use_sim_time": sim}]))
    return actions


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
