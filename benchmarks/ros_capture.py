"""ROS capture throughput: 3 synthetic cameras (640x480 rgb8, 30 Hz) + joint states at 100 Hz through real
rclpy (separate processes, FastDDS on loopback) into the recorder, which writes one episode per frame set.

Figures:
* fraction of frames stored: capture instants of every camera found in the committed episode, over the
  instants its 30 Hz grid had between the episode's first and last step (a frame lost anywhere - transport,
  alignment, the writer's queue - is missing from the episode);
* capture-to-disk latency p50 / p99: capture time -> ``EpisodeWriter.add_frame`` returned, i.e. the frame
  is encoded into the episode's staged file (per frame, over the whole run);
* commit time of the episode at stop.

Goals (issue #3): fraction >= 99.5 %, p99 < 100 ms. Writes ``benchmarks/results/ros_capture.json``; the
dataset goes to a workspace outside the repository and is deleted unless ``--keep``.

    python benchmarks/ros_capture.py [--seconds 60] [--qos sensor_data|reliable] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "robot_ws" / "src" / "wovr"))

from wovr import topics  # noqa: E402
from wovr.launching import NodeProcess, RosProbe, reserved_domain, ros_env  # noqa: E402

from wovr_core.data import EpisodeDataset  # noqa: E402

CAMERAS = ("cam0", "cam1", "cam2")
GOALS = {"fraction_stored": 0.995, "latency_p99_s": 0.100}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--state-hz", type=float, default=100.0)
    parser.add_argument("--qos", default="reliable", choices=["sensor_data", "reliable"],
                        help="image QoS of cameras and recorder (best effort loses frames under CPU load)")
    parser.add_argument("--video-preset", default="veryfast", help="libx264 preset of the recorded dataset")
    parser.add_argument("--workspace", type=Path, default=Path.home() / ".cache" / "wovr" / "bench" / "ros_capture")
    parser.add_argument("--keep", action="store_true", help="keep the recorded dataset")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ros_capture.json")
    args = parser.parse_args()
    with reserved_domain() as domain_id:
        return run(args, domain_id)


def run(args: argparse.Namespace, domain_id: int) -> int:
    from std_srvs.srv import Trigger

    run_dir = args.workspace / time.strftime("%Y%m%dT%H%M%S")
    record_dir, logs, stats_path = run_dir / "episodes", run_dir / "logs", run_dir / "recorder_stats.json"
    env = ros_env(domain_id)
    camera = {"camera_type": "synthetic", "width": args.width, "height": args.height, "fps": args.fps,
              "qos": args.qos, "require_calibration": False}
    procs = [NodeProcess("camera_node", {**camera, "camera_name": c}, env, logs, name=f"camera_{c}") for c in CAMERAS]
    procs.append(NodeProcess("arm_node", {"arm_type": "synthetic", "state_hz": args.state_hz}, env, logs))
    recorder = NodeProcess("recorder_node", {
        "record_dir": str(record_dir), "cameras": list(CAMERAS), "record_hz": 0.0, "task": "benchmark",
        "qos": args.qos, "stats_path": str(stats_path), "episode_source": "teleop",
        "video_preset": args.video_preset}, env, logs)
    procs.append(recorder)
    load_before = os.getloadavg()
    try:
        with RosProbe(domain_id) as probe:
            for proc in procs:
                if not proc.wait_for_log(" active", 120):
                    raise SystemExit(f"{proc.name} did not start:\n{proc.log()}")
            time.sleep(2.0)  # let discovery settle and the streams run
            reply = probe.call(topics.SRV_START_EPISODE, Trigger, timeout_s=60, retry_while="no images yet")
            if not reply.success:
                raise SystemExit(f"start failed: {reply.message}\n{recorder.log()}")
            print(f"recording {args.seconds:.0f} s: {len(CAMERAS)} x {args.width}x{args.height} rgb8 @ {args.fps} Hz "
                  f"+ joint states @ {args.state_hz:.0f} Hz, qos {args.qos}", flush=True)
            time.sleep(args.seconds)
            t_stop = time.monotonic()
            reply = probe.call(topics.SRV_STOP_EPISODE, Trigger, timeout_s=600)
            commit_s = time.monotonic() - t_stop
            if not reply.success:
                raise SystemExit(f"stop failed: {reply.message}\n{recorder.log()}")
    finally:
        for proc in procs:
            proc.stop()
    load_after = os.getloadavg()

    stats = json.loads(stats_path.read_text())
    episode = EpisodeDataset(record_dir).episode(0)
    t0 = episode.meta.t0
    period = 1.0 / args.fps
    per_camera = {}
    for cam, stamps in episode.camera_timestamps.items():
        captured = np.unique(np.round((np.asarray(stamps) + t0) / period).astype(np.int64))
        expected = int(captured.max() - captured.min()) + 1
        per_camera[cam] = {"stored": int(captured.size), "expected": expected,
                           "fraction": captured.size / expected}
    stored = sum(c["stored"] for c in per_camera.values())
    expected = sum(c["expected"] for c in per_camera.values())
    latency = stats.get("capture_to_disk_s", {})
    result = {
        "benchmark": "ros_capture",
        "setup": {"cameras": len(CAMERAS), "resolution": [args.width, args.height], "encoding": "rgb8",
                  "fps": args.fps, "state_hz": args.state_hz, "seconds": args.seconds, "qos": args.qos,
                  "transport": "rclpy (ROS 2 Kilted wheels), rmw_fastrtps_cpp, loopback, separate processes",
                  "recorder": f"record_hz 0 (one step per frame set), H.264 (libx264 {args.video_preset} crf 18) "
                              "per camera, image queue depth 30"},
        "episode_steps": len(episode),
        "frames_stored": stored,
        "frames_expected": expected,
        "fraction_stored": stored / expected,
        "per_camera": per_camera,
        "capture_to_disk_latency_s": latency,
        "commit_s": commit_s,
        "recorder": {k: stats.get(k) for k in ("frames_received", "steps_written", "steps_dropped_queue_full",
                                               "sets_incomplete", "steps_refused")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1min_before_after": [load_before[0], load_after[0]]},
        "goals": GOALS,
        "goals_met": {"fraction_stored": stored / expected >= GOALS["fraction_stored"],
                      "latency_p99": latency.get("p99", float("inf")) < GOALS["latency_p99_s"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"fraction of frames stored: {result['fraction_stored'] * 100:.2f} % ({stored}/{expected})")
    print(f"capture-to-disk latency: p50 {latency.get('p50', float('nan')) * 1e3:.1f} ms, "
          f"p99 {latency.get('p99', float('nan')) * 1e3:.1f} ms; commit {commit_s:.1f} s")
    print(f"load average (1 min) before/after: {load_before[0]:.1f} / {load_after[0]:.1f} on {os.cpu_count()} cpus")
    print(f"wrote {args.out}")
    if not args.keep:
        shutil.rmtree(run_dir / "episodes", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
