"""policy_node against a real ``wovr serve`` (stub checkpoint): chunks become commands through the arm's
envelope, an operator intervention pauses the policy, and a dead server leaves the arm holding."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robot_ws" / "src" / "wovr"))

from wovr import topics  # noqa: E402
from wovr.launching import NodeProcess, RosProbe, ros_env  # noqa: E402

from policy_server.process import ServerProcess  # noqa: E402
from wovr_core.policy.stub import write_stub_checkpoint  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
TASK = "pick up the black bowl"


def test_policy_chunks_drive_the_arm_until_the_operator_takes_over_or_the_server_dies(tmp_path, ros_domain):
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool

    checkpoint = write_stub_checkpoint(tmp_path / "ckpt", cost_ms=5, image_shapes={
        "observation.images.agentview": [32, 32, 3]}, task=TASK)
    env = ros_env(ros_domain)
    camera = {"camera_type": "synthetic", "camera_name": "agentview", "width": 64, "height": 48, "fps": 30,
              "qos": "reliable", "require_calibration": False}
    server = ServerProcess(checkpoint, log_path=tmp_path / "server.log")
    try:
        policy = {"policy_server_url": server.ws_url, "cameras": ["agentview"], "task": TASK, "qos": "reliable",
                  "max_skew_s": 0.05, "reconnect_timeout_s": 1.0}
        with RosProbe(ros_domain) as probe, NodeProcess("camera_node", camera, env, tmp_path), \
                NodeProcess("arm_node", {"arm_type": "synthetic"}, env, tmp_path), \
                NodeProcess("policy_node", policy, env, tmp_path) as node:
            applied = probe.collect(topics.APPLIED_ACTION, JointState)
            poses = probe.collect(topics.EE_POSE, PoseStamped)

            def by_policy() -> int:
                return sum(a.header.frame_id == "policy" for a in list(applied))

            probe.wait_for(lambda: by_policy() >= 20, 90, f"policy commands\n{node.log()[-3000:]}\n{server.log()}")
            x_first = next(p.pose.position.x for p in poses)
            assert poses[-1].pose.position.x > x_first + 0.01  # the stub's chunks push +x (state-dependent)

            intervening = probe.publisher(topics.INTERVENING, Bool)
            intervening.publish(Bool(data=True))
            time.sleep(1.0)
            count = by_policy()
            time.sleep(1.0)
            assert by_policy() == count, "the policy kept commanding during an intervention"
            intervening.publish(Bool(data=False))
            probe.wait_for(lambda: by_policy() > count + 5, 30, "the policy resuming after the hand-back")

            server.stop()
            time.sleep(2.0)  # the current chunk runs out; no new one can come
            tail = [a.header.frame_id for a in list(applied)[-10:]]
            assert tail == ["hold"] * 10, tail
            assert node.wait_for_log("inference failed: ConnectionLost", 15), node.log()[-2000:]
    finally:
        server.stop()
