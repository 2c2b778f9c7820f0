"""The recorder's logic without ROS (``wovr.recording``): alignment into steps, action attribution,
episode commands and labels, written with the real EpisodeWriter and read back with the reader."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robot_ws" / "src" / "wovr"))

from wovr.recording import EpisodeRecorder, FrameSetMatcher, RecorderError, StateBuffer  # noqa: E402

from wovr_core.data import EpisodeDataset  # noqa: E402
from wovr_core.types import DUMMY_ACTION, Frame, RobotState  # noqa: E402

CAMS = ["front", "wrist"]
DT = 0.05


def frame(cam: str, t: float, seq: int, value: int = 0) -> Frame:
    rgb = np.full((16, 24, 3), value % 256, dtype=np.uint8)
    return Frame(rgb=rgb, t_capture=t, t_receive=t + 0.003, seq=seq, camera=cam)


def state(t: float, x: float = 0.5) -> RobotState:
    return RobotState(t=t, joint_pos=np.arange(7) * 0.1, ee_pos=np.array([x, 0.0, 0.3]),
                      ee_quat=np.array([1.0, 0.0, 0.0, 0.0]), gripper_width=0.08)


def action(k: int) -> np.ndarray:
    a = np.zeros(7, dtype=np.float32)
    a[0] = 0.01 * (k + 1)
    a[6] = -1.0
    return a


def feed_step(rec: EpisodeRecorder, k: int, t0: float = 100.0, actions_late: bool = False,
              source: str = "teleop") -> None:
    """Step k of a 20 Hz robot: the action applied at t_k, then the observation captured at t_{k+1}."""
    t_apply, t_obs = t0 + k * DT, t0 + (k + 1) * DT
    if not actions_late:
        rec.add_applied_action(t_apply, action(k), source)
    rec.add_state(state(t_obs, 0.5 + 0.01 * k))
    for cam in CAMS:
        rec.add_frame(frame(cam, t_obs, k, value=k))
    if actions_late:  # topics do not arrive in publishing order
        rec.add_applied_action(t_apply, action(k), source)


@pytest.fixture
def recorder(tmp_path):
    rec = EpisodeRecorder(tmp_path / "ds", CAMS, durable=False)
    yield rec
    rec.close(commit_open_episode=False)


@pytest.mark.parametrize("actions_late", [False, True])
def test_episode_steps_carry_the_action_that_led_to_them(tmp_path, actions_late):
    rec = EpisodeRecorder(tmp_path / "ds", CAMS, durable=False)
    feed_step(rec, 0)  # before the episode: only tells the recorder the image sizes
    rec.start_episode("push the block", calibration_id="front:abc;wrist:device", extra={"operator": "ada"})
    for k in range(1, 11):
        feed_step(rec, k, actions_late=actions_late)
        if k == 5:
            rec.mark_keyframe()
    rec.set_success(True)
    message = rec.stop_episode()
    rec.close()
    assert "episode 0 committed" in message

    ds = EpisodeDataset(tmp_path / "ds")
    meta = ds.meta(0)
    assert (meta.task, meta.source, meta.success, meta.success_source) == ("push the block", "teleop", True, "operator")
    assert meta.calibration_id == "front:abc;wrist:device" and meta.extra == {"operator": "ada"}
    episode = ds.episode(0)
    n = len(episode)
    assert n >= 9  # the recording starts with the newest frame set at start time
    np.testing.assert_array_equal(episode.actions[0], DUMMY_ACTION)
    # Each step's frame value k identifies its observation o_k; the action that led to it was applied at t_{k-1}.
    first_k = int(round((episode.timestamps[0] + 0.0) / DT))  # timestamps are relative: recover k from states
    ks = np.rint((episode.states[:, 0] - 0.5) / 0.01).astype(int)
    assert list(np.diff(ks)) == [1] * (n - 1), "a frame set was skipped or repeated"
    for t in range(1, n):
        np.testing.assert_allclose(episode.actions[t], action(ks[t]), atol=1e-6)
    assert episode.keyframes.size == 1 and ks[episode.keyframes[0]] == 5
    np.testing.assert_allclose(np.diff(episode.timestamps), DT, atol=1e-6)
    np.testing.assert_allclose(episode.column("joint_pos")[0], np.arange(7) * 0.1, atol=1e-6)
    assert first_k == 0


def test_scripted_and_policy_episodes_get_their_source_and_label(recorder, tmp_path):
    feed_step(recorder, 0)
    recorder.start_episode("pick")
    for k in range(1, 6):
        feed_step(recorder, k, source="scripted")
    recorder.set_success(True)
    recorder.stop_episode()
    recorder.start_episode("pick")
    for k in range(6, 12):
        feed_step(recorder, k, source="intervention" if k in (8, 9) else "policy")
    recorder.set_success(False)
    recorder.stop_episode()
    recorder.close()
    ds = EpisodeDataset(tmp_path / "ds")
    first, second = ds.meta(0), ds.meta(1)
    assert (first.source, first.success, first.success_source) == ("scripted", True, "sim_predicate")
    assert (second.source, second.success, second.success_source) == ("policy", False, "operator")
    flags = ds.episode(1).is_intervention
    assert flags.sum() == 2  # the steps whose action came from the operator


def test_commands_that_cannot_run_say_why(recorder):
    with pytest.raises(RecorderError, match=r"no images yet from cameras \['front', 'wrist'\]"):
        recorder.start_episode("task")
    feed_step(recorder, 0)
    with pytest.raises(RecorderError, match="no task"):
        recorder.start_episode("")
    with pytest.raises(RecorderError, match="no episode is recording"):
        recorder.stop_episode()
    recorder.start_episode("task")
    with pytest.raises(RecorderError, match="already recording"):
        recorder.start_episode("task")
    with pytest.raises(RecorderError, match="no steps"):
        recorder.stop_episode()  # nothing arrived after start


def test_a_bad_step_is_refused_and_the_episode_goes_on(recorder, tmp_path):
    feed_step(recorder, 0)
    recorder.start_episode("task")
    feed_step(recorder, 1)
    t_bad = 100.0 + 3 * DT  # the observation of step 2, with a NaN state
    recorder.add_applied_action(100.0 + 2 * DT, action(2), "teleop")
    recorder.add_state(RobotState(t=t_bad, joint_pos=np.zeros(7), ee_pos=np.array([np.nan, 0, 0]),
                                  ee_quat=np.array([1.0, 0, 0, 0]), gripper_width=0.08))
    for cam in CAMS:
        recorder.add_frame(frame(cam, t_bad, 2))
    feed_step(recorder, 3)
    feed_step(recorder, 4)
    assert "committed: 4 steps" in recorder.stop_episode()
    assert recorder.stats.steps_refused == 1
    recorder.close()
    states = EpisodeDataset(tmp_path / "ds").episode(0).states
    assert np.all(np.isfinite(states)) and len(states) == 4


def test_control_rate_mode_records_each_new_observation_once(tmp_path):
    rec = EpisodeRecorder(tmp_path / "ds", CAMS, record_hz=20.0, durable=False)
    feed_step(rec, 0)
    rec.start_episode("task")
    for k in range(1, 6):
        feed_step(rec, k)
        assert rec.tick()
        assert not rec.tick()  # nothing new since the last tick
    rec.stop_episode()
    rec.close()
    assert len(EpisodeDataset(tmp_path / "ds").episode(0)) == 5


def test_frame_sets_pair_unsynchronized_cameras_by_nearest_capture_time():
    matcher = FrameSetMatcher(["a", "b"], max_skew_s=0.02, wait_s=0.05, on_skew="reject")
    states = StateBuffer()
    for k in range(6):
        states.add(state(k * 0.033))
        matcher.add(frame("a", k * 0.033, k))
        matcher.add(frame("b", k * 0.033 + 0.012, k))  # b captures 12 ms after a
    sets = matcher.ready(states)
    assert [s.frames["a"].seq for s in sets] == [0, 1, 2, 3, 4, 5]
    assert all(s.frames["b"].seq == s.frames["a"].seq for s in sets)
    # b stops: a set waits for b until the reference stream is wait_s further, then b is too far: rejected
    for k in range(6, 9):
        states.add(state(k * 0.033))
        matcher.add(frame("a", k * 0.033, k))
    assert matcher.ready(states) == [] and matcher.incomplete == 1


def test_with_on_skew_flag_a_late_source_is_waited_for_and_a_gap_is_flagged_not_dropped():
    matcher = FrameSetMatcher(["a", "b"], max_skew_s=0.02, wait_s=0.2, on_skew="flag")
    states = StateBuffer()
    for k in range(3):
        matcher.add(frame("a", k * 0.033, k))
    assert matcher.ready(states) == []  # b and the state are late, not missing: wait
    for k in range(3):
        matcher.add(frame("b", k * 0.033, k))
    states.add(state(0.0))
    states.add(state(0.066))  # the state stream has a gap around 0.033
    sets = matcher.ready(states)
    assert [s.frames["b"].seq for s in sets] == [0, 1, 2] and matcher.flagged == 1
