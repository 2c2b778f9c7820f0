"""recorder_node: cameras + arm state + applied actions -> crash-safe episodes (and optional raw MCAP).

Services (std_srvs): ``start_episode``, ``stop_episode`` (commits), ``discard_episode``, ``mark_keyframe``
(Trigger) and ``set_success`` (SetBool) under ``/wovr/recorder/``. Each episode stores its task (parameter
``task``, else the latched ``/wovr/task`` topic), its source (from the applied actions, or the
``episode_source`` parameter), keyframe / intervention flags per step, the success label, and the ids of
the calibrations the cameras published (see :mod:`wovr.camera_calibration`).

A recorder killed mid-episode loses only that episode: committed ones are never rewritten in place, and
the next recorder to open the folder discards the partial one with a warning.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from geometry_msgs.msg import PoseStamped
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from wovr import topics
from wovr.conversions import MessageError, image_to_frame, msg_to_action
from wovr.node_base import LATCHED, RELIABLE, WovrNode, image_qos, run
from wovr.recording import EpisodeRecorder, RecorderError
from wovr_core.data.video import VideoConfig
from wovr_core.runtime.alignment import AlignmentConfig
from wovr_core.types import RobotState

CALIBRATION_STATUS_WAIT_S = 5.0


class RecorderNode(WovrNode):
    PARAMETERS = {
        "record_dir": "",  # dataset folder (created on the first episode)
        "cameras": ["agentview"],
        "record_hz": 0.0,  # 0: one step per frame of the first camera; > 0: control-rate steps
        "dataset_fps": 0.0,  # 0: record_hz, or 20 when record_hz is 0
        "max_skew_s": 0.035,
        "on_skew": "flag",  # a source further than max_skew_s: flag (keep the step, counted) | reject (skip it)
        "wait_s": 0.5,  # stream time a step waits for a late camera, robot state or applied action
        "task": "",  # '' = from /wovr/task
        "episode_source": "auto",  # auto (from the applied actions) | teleop | scripted | policy
        "success_label_source": "auto",  # auto (sim_predicate for scripted, else operator) | operator | ...
        "qos": "sensor_data",  # must match the camera publishers: sensor_data (best effort) or reliable
        "queue_depth": 30,  # images buffered per camera while the recorder is busy (30 = 1 s at 30 Hz)
        "video_preset": "veryfast",  # libx264 preset of a NEW dataset (an existing one keeps its own)
        "durable": True,
        "robot_type": "franka",
        "commit_on_shutdown": True,
        "mcap_dir": "",  # '' = off; else one raw .mcap per episode there
        "stats_path": "",  # '' = off; else recorder statistics as JSON, refreshed every second
    }

    def __init__(self, **kwargs):
        super().__init__("recorder_node", **kwargs)
        self.recorder: EpisodeRecorder | None = None
        self._task_from_topic = ""
        self._calibration: dict[str, dict] = {}
        self._first_image_at: dict[str, float] = {}  # monotonic time of each camera's first image
        self._mcap = None
        self._entities: list = []

    # ---- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            if not self.param("record_dir"):
                raise ValueError("parameter record_dir is required (the dataset folder)")
            cameras = [str(c) for c in self.param("cameras")]
            alignment = AlignmentConfig(max_skew_s=float(self.param("max_skew_s")), on_skew=self.param("on_skew"))
            alignment.validate()
            self.recorder = EpisodeRecorder(
                self.param("record_dir"), cameras, record_hz=float(self.param("record_hz")),
                dataset_fps=float(self.param("dataset_fps")), alignment=alignment,
                durable=bool(self.param("durable")), robot_type=self.param("robot_type") or None,
                episode_source=self.param("episode_source"),
                success_label_source=self.param("success_label_source"), wait_s=float(self.param("wait_s")),
                video=VideoConfig(preset=str(self.param("video_preset"))), clock=self.now_s)
            qos = image_qos(self.param("qos"), int(self.param("queue_depth")))
        except Exception as exc:  # noqa: BLE001
            return self.failed("recorder not configured", exc)
        sub = self.create_subscription
        for cam in cameras:
            self._entities.append(sub(Image, topics.camera_image(cam), lambda m, c=cam: self._on_image(m, c), qos))
            self._entities.append(sub(String, topics.camera_calibration_status(cam),
                                      lambda m, c=cam: self._on_calibration(m, c), LATCHED))
        self._entities += [
            *self.subscribe_robot_state(self._on_state),
            sub(JointState, topics.APPLIED_ACTION, self._on_applied, RELIABLE),
            sub(String, topics.TASK, self._on_task, LATCHED),
            self.create_service(Trigger, topics.SRV_START_EPISODE, self._srv_start),
            self.create_service(Trigger, topics.SRV_STOP_EPISODE, self._srv_stop),
            self.create_service(Trigger, topics.SRV_DISCARD_EPISODE, self._srv_discard),
            self.create_service(Trigger, topics.SRV_MARK_KEYFRAME, self._srv_keyframe),
            self.create_service(SetBool, topics.SRV_SET_SUCCESS, self._srv_success),
        ]
        self._status_pub = self.create_publisher(String, topics.RECORDER_STATUS, RELIABLE)
        self._entities.append(self._status_pub)
        self._entities.append(self.create_timer(1.0, self._publish_status))
        if float(self.param("record_hz")) > 0:
            self._entities.append(self.create_timer(1.0 / float(self.param("record_hz")), self.recorder.tick))
        if self.param("mcap_dir"):
            from wovr.mcap_log import RawTopicLog

            self._mcap = RawTopicLog(self, Path(self.param("mcap_dir")).expanduser(),
                                     [(topics.camera_image(c), Image, qos) for c in cameras]
                                     + [(topics.JOINT_STATES, JointState, RELIABLE), (topics.EE_POSE, PoseStamped, RELIABLE),
                                        (topics.APPLIED_ACTION, JointState, RELIABLE)])
        return TransitionCallbackReturn.SUCCESS

    # ---- streams ------------------------------------------------------------------------------
    def _on_image(self, msg: Image, camera: str) -> None:
        if self.recorder is None:
            return
        try:
            frame = image_to_frame(msg, camera, self.now_s())
        except MessageError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)
            return
        self._first_image_at.setdefault(camera, time.monotonic())
        self.recorder.add_frame(frame)

    def _on_state(self, state: RobotState) -> None:
        if self.recorder is not None:
            self.recorder.add_state(state)

    def _on_applied(self, msg: JointState) -> None:
        try:
            action, stamp, source = msg_to_action(msg)
        except MessageError as exc:
            self.get_logger().warning(f"applied action ignored: {exc}", throttle_duration_sec=5.0)
            return
        if self.recorder is not None:
            self.recorder.add_applied_action(stamp, action, source)

    def _on_task(self, msg: String) -> None:
        self._task_from_topic = msg.data

    def _on_calibration(self, msg: String, camera: str) -> None:
        try:
            self._calibration[camera] = json.loads(msg.data)
        except ValueError:
            self.get_logger().error(f"camera {camera}: unreadable calibration status {msg.data!r}")

    # ---- services -----------------------------------------------------------------------------
    def _reply(self, response, fn, *args):
        try:
            response.message = fn(*args)
            response.success = True
        except (RecorderError, ValueError, OSError, TimeoutError) as exc:
            response.success, response.message = False, f"{type(exc).__name__}: {exc}"
            self.get_logger().warning(response.message)
        except Exception as exc:  # noqa: BLE001 - a service must answer; the error is logged in full
            response.success, response.message = False, f"{type(exc).__name__}: {exc}"
            self.get_logger().error(response.message)
        else:
            self.get_logger().info(response.message)
        return response

    def _srv_start(self, request, response):
        return self._reply(response, self._start)

    def _start(self) -> str:
        assert self.recorder is not None
        # No waiting for late cameras here (it would stall the executor that delivers them): the recorder
        # refuses with "not ready: ..." and the caller retries.
        now = time.monotonic()
        # A camera's latched calibration status can arrive after its first images (DDS discovery order):
        # wait for it a little, then record it as unknown (a camera driver may publish none).
        pending = [cam for cam in self.recorder.cameras if cam not in self._calibration
                   and now - self._first_image_at.get(cam, now) < CALIBRATION_STATUS_WAIT_S]
        if pending and all(cam in self._first_image_at for cam in self.recorder.cameras):
            raise RecorderError(f"not ready: no calibration status yet from cameras {pending} (waiting up to "
                                f"{CALIBRATION_STATUS_WAIT_S:.0f} s after their first image)")
        calibration = {cam: self._calibration.get(cam) for cam in self.recorder.cameras}
        ids = [(c or {}).get("episode_id", f"{cam}:unknown") for cam, c in calibration.items()]
        for cam, c in calibration.items():
            if c is None or not c.get("calibrated"):
                self.get_logger().warning(f"camera {cam}: recording without a known calibration "
                                          f"({(c or {}).get('detail', 'no calibration status received')})")
        message = self.recorder.start_episode(self.param("task") or self._task_from_topic, ";".join(ids),
                                              extra={"calibration": calibration})
        if self._mcap is not None:
            self._mcap.start(self.recorder.root.name)
        return message

    def _srv_stop(self, request, response):
        def stop() -> str:
            assert self.recorder is not None
            if self._mcap is not None:
                self._mcap.stop()
            return self.recorder.stop_episode()
        return self._reply(response, stop)

    def _srv_discard(self, request, response):
        def discard() -> str:
            assert self.recorder is not None
            if self._mcap is not None:
                self._mcap.stop(keep=False)
            return self.recorder.discard_episode()
        return self._reply(response, discard)

    def _srv_keyframe(self, request, response):
        return self._reply(response, self.recorder.mark_keyframe)

    def _srv_success(self, request, response):
        return self._reply(response, self.recorder.set_success, bool(request.data))

    def _publish_status(self) -> None:
        if self.recorder is None:
            return
        status = self.recorder.status()
        self._status_pub.publish(String(data=json.dumps(status)))
        self._write_stats(status)

    def _write_stats(self, status: dict) -> None:
        if self.param("stats_path"):
            path = Path(self.param("stats_path")).expanduser()
            tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(status))
            tmp.replace(path)

    # ---- teardown -----------------------------------------------------------------------------
    def release(self) -> None:
        if self._mcap is not None:
            self._mcap.stop()
            self._mcap = None
        if self.recorder is not None:
            self.recorder.close(commit_open_episode=bool(self.param("commit_on_shutdown")))
            self._write_stats({**self.recorder.status(), "final": True})
            self.recorder = None
        self.destroy_entities(self._entities)
        super().release()


def main(args: list[str] | None = None) -> int:
    return run(RecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
