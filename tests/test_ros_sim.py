"""The acceptance run on the twin: sim_node (LIBERO, MuJoCo), the scripted teleop and the recorder as three
processes over real rclpy on sim time. The teleop drives the arm; the recorder writes an episode with a
keyframe and LIBERO's success label, and the episode reader loads it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robot_ws" / "src" / "wovr"))

from wovr.launching import NodeProcess, ros_env  # noqa: E402

from wovr_core.data import EpisodeDataset  # noqa: E402
from wovr_core.types import DUMMY_ACTION, GRIPPER_CLOSED  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]


def test_scripted_teleop_drives_the_twin_and_the_recorder_writes_labelled_episodes(tmp_path, ros_domain):
    env = ros_env(ros_domain)
    record_dir = tmp_path / "episodes"
    sim = {"image_size": 64, "cameras": ["agentview", "wrist"], "real_time_factor": 0.0, "expert": "clean",
           "step_timeout_s": 2.0}
    recorder = {"use_sim_time": True, "record_dir": str(record_dir), "cameras": ["agentview", "wrist"],
                "record_hz": 0.0, "qos": "reliable", "robot_type": "panda_sim"}
    teleop = {"use_sim_time": True, "teleop_type": "scripted", "episodes": 1, "max_episode_steps": 300}
    with NodeProcess("sim_node", sim, env, tmp_path) as sim_proc, \
            NodeProcess("recorder_node", recorder, env, tmp_path) as rec_proc, \
            NodeProcess("teleop_node", teleop, env, tmp_path) as teleop_proc:
        finished = teleop_proc.wait_for_log("1 scripted episodes done", timeout_s=900)
        assert finished, f"teleop:\n{teleop_proc.log()[-3000:]}\nsim:\n{sim_proc.log()[-3000:]}\n" \
                         f"recorder:\n{rec_proc.log()[-3000:]}"
    for proc in (sim_proc, rec_proc, teleop_proc):
        assert proc.proc.returncode == 0, proc.log()[-3000:]

    ds = EpisodeDataset(record_dir)
    assert len(ds) == 1
    meta = ds.meta(0)
    assert meta.task == "pick up the alphabet soup and place it in the basket"
    assert (meta.source, meta.success, meta.success_source) == ("scripted", True, "sim_predicate")
    assert meta.calibration_id == "agentview:device;wrist:device"  # the twin's known intrinsics, said so
    assert meta.num_keyframes == 1
    episode = ds.episode(0)
    n = len(episode)
    assert 40 <= n <= 320
    np.testing.assert_array_equal(episode.actions[0], DUMMY_ACTION)
    # one step per twin step: 1/20 s of sim time apart, no frame set skipped or repeated
    np.testing.assert_allclose(np.diff(episode.timestamps), 0.05, atol=1e-6)
    for cam in ("agentview", "wrist"):
        np.testing.assert_allclose(episode.camera_timestamps[cam], episode.timestamps, atol=1e-6)
        frames = episode.frames(cam)
        assert frames.shape == (n, 64, 64, 3) and frames.std() > 5
    # the expert's grasp: the keyframe is where the gripper starts closing, and the arm moved
    keyframe = int(episode.keyframes[0])
    assert np.any(episode.actions[keyframe:, 6] == GRIPPER_CLOSED)
    assert np.all(episode.actions[1:keyframe, 6] < 0)
    assert np.linalg.norm(episode.states[-1, :3] - episode.states[0, :3]) > 0.05
    assert "e-stop" not in rec_proc.log().lower()
