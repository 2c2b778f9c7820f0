"""ROS 2 package ``wovr``: thin lifecycle nodes over ``wovr_core`` (hardware, runtime, data).

Every node runs as ``ros2 run wovr <node>`` after ``colcon build`` or, from a checkout, as
``python -m wovr.<node>`` with ``robot_ws/src/wovr`` on ``PYTHONPATH``. Topic and service names are in
:mod:`wovr.topics`. Only this package imports ``rclpy``; it never imports torch.
"""

from __future__ import annotations

NODES = ("camera_node", "arm_node", "teleop_node", "recorder_node", "policy_node", "sim_node")
