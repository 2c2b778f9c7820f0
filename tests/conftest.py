"""Shared test setup: headless rendering, loopback-only ROS 2, a private cache."""

from __future__ import annotations

import os

# Set before anything imports MuJoCo, robosuite or rclpy.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(40 + os.getpid() % 50))
