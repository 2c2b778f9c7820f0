"""Episode dataset round trip: write speed, decode speed, random clip latency, codec fidelity.

    python benchmarks/episode_roundtrip.py --episodes 20 --length 100 --size 128

Writes N episodes (2 cameras, smooth synthetic scenes) with EpisodeWriter into a workspace outside the repo
(default ~/.cache/wovr/bench/episode_roundtrip), reads them back and reports: write fps (control steps/s,
all cameras encoded, fsync'd commits included), sequential read/decode fps, latency of random world-model
clips ([o_0] + 12 frames, both cameras) and of single frames, PSNR of the decoded frames, max abs error of
actions/states (must be 0), bytes on disk. Saves benchmarks/results/episode_roundtrip.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import av
import numpy as np
import pyarrow

from wovr_core.data import EpisodeDataset, EpisodeWriter, WriterConfig, psnr, validate_dataset
from wovr_core.types import DUMMY_ACTION, STATE_DIM

RESULTS = Path(__file__).resolve().parent / "results"
CAMERAS = ("agentview", "wrist")


def scene(t: int, size: int, phase: float) -> np.ndarray:
    """Smooth moving colour fields with a moving blob: compressible like a tabletop scene, never static."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = [np.sin(2 * np.pi * (x + 0.01 * t + k / 3 + phase)) + np.cos(2 * np.pi * (1.5 * y - 0.007 * t + k / 5))
            for k in range(3)]
    cx, cy = 0.5 + 0.3 * np.cos(0.05 * t + phase), 0.5 + 0.3 * np.sin(0.07 * t)
    blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.01)
    img = 128 + 45 * np.stack(base, -1) + 60 * blob[..., None] * np.array([1.0, -0.5, -0.8])
    return np.clip(img, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--clips", type=int, default=200, help="random clips to time")
    parser.add_argument("--clip-length", type=int, default=12)
    parser.add_argument("--workspace", type=Path, default=Path.home() / ".cache/wovr/bench/episode_roundtrip")
    parser.add_argument("--out", type=Path, default=RESULTS / "episode_roundtrip.json")
    args = parser.parse_args()

    root = args.workspace / "dataset"
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    n, T, size = args.episodes, args.length, args.size
    actions = rng.uniform(-1, 1, size=(n, T, 7)).astype(np.float32)
    actions[:, 0] = DUMMY_ACTION
    states = rng.normal(size=(n, T, STATE_DIM)).astype(np.float32)
    # Scenes are rendered before timing, so the figure is the writer's cost alone.
    frames = {cam: [[scene(t + 1000 * e, size, 0.3 * k) for t in range(T)] for e in range(n)]
              for k, cam in enumerate(CAMERAS)}

    # ---- write
    start = time.perf_counter()
    commit_s = []
    with EpisodeWriter(root, fps=10, cameras={c: (size, size) for c in CAMERAS}, config=WriterConfig()) as writer:
        for e in range(n):
            writer.start_episode("benchmark task", source="scripted", success=bool(e % 2), success_source="operator")
            for t in range(T):
                writer.add_frame({c: frames[c][e][t] for c in CAMERAS}, states[e, t], None if t == 0 else actions[e, t],
                                 latency_ms=float(t))
            c0 = time.perf_counter()
            writer.end_episode()
            commit_s.append(time.perf_counter() - c0)
        write_s = time.perf_counter() - start
    close_s = time.perf_counter() - start - write_s  # stats pass at close

    # ---- sequential read + decode (PSNR computed outside the timed decode)
    ds = EpisodeDataset(root)
    decode_s = 0.0
    psnrs = []
    max_action_err = max_state_err = 0.0
    for ep in ds.iter_episodes():
        e = ep.index
        max_action_err = max(max_action_err, float(np.abs(ep.actions - actions[e]).max()))
        max_state_err = max(max_state_err, float(np.abs(ep.states - states[e]).max()))
        for cam in CAMERAS:
            c0 = time.perf_counter()
            decoded = ep.frames(cam)
            decode_s += time.perf_counter() - c0
            psnrs += [psnr(decoded[t], frames[cam][e][t]) for t in range(T)]
    ds.close()

    ds = EpisodeDataset(root)
    start = time.perf_counter()
    decoded_frames = sum(1 for _ in ds.iter_frames())
    iter_s = time.perf_counter() - start

    # ---- random access
    starts = ds.clip_starts(args.clip_length)
    picks = starts[rng.integers(len(starts), size=args.clips)]
    clip_ms = []
    for e, s in picks:
        c0 = time.perf_counter()
        clip = ds.clip(int(e), int(s), args.clip_length)
        clip_ms.append(1000 * (time.perf_counter() - c0))
        assert clip.anchored(CAMERAS[0]).shape[0] == args.clip_length + 1
    frame_ms = []
    for _ in range(args.clips):
        e, t = int(rng.integers(n)), int(rng.integers(T))
        c0 = time.perf_counter()
        ds.frame(e, t, CAMERAS[0])
        frame_ms.append(1000 * (time.perf_counter() - c0))

    start = time.perf_counter()
    report = validate_dataset(root)
    validate_s = time.perf_counter() - start

    disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    total = n * T
    result = {
        "config": {"episodes": n, "length": T, "cameras": list(CAMERAS), "size": size, "fps": 10,
                   "codec": "libx264 crf 18 veryfast yuv420p, gop 15, no B-frames",
                   "episodes_per_file": WriterConfig().episodes_per_file},
        "write_steps_per_s": total / write_s,
        "write_camera_frames_per_s": total * len(CAMERAS) / write_s,
        "end_episode_ms": {"mean": 1000 * float(np.mean(commit_s)), "max": 1000 * float(np.max(commit_s))},
        "close_with_stats_s": close_s,
        "read_decode_steps_per_s": total / decode_s,
        "iter_frames_steps_per_s": decoded_frames / iter_s,
        "random_clip_ms": {"frames": args.clip_length + 1, "cameras": len(CAMERAS),
                           "mean": float(np.mean(clip_ms)), "p50": float(np.median(clip_ms)),
                           "p95": float(np.percentile(clip_ms, 95))},
        "random_frame_ms": {"mean": float(np.mean(frame_ms)), "p95": float(np.percentile(frame_ms, 95))},
        "psnr_db": {"mean": float(np.mean(psnrs)), "min": float(np.min(psnrs))},
        "max_abs_action_error": max_action_err,
        "max_abs_state_error": max_state_err,
        "validate_s": validate_s,
        "validation_ok": report.ok,
        "bytes_on_disk": disk,
        "bytes_per_step": disk / total,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
                    "python": platform.python_version(),
                    "av": av.__version__, "pyarrow": pyarrow.__version__},
    }
    print(f"write:   {result['write_steps_per_s']:.0f} steps/s ({result['write_camera_frames_per_s']:.0f} camera frames/s), "
          f"end_episode {result['end_episode_ms']['mean']:.1f} ms mean")
    print(f"read:    {result['read_decode_steps_per_s']:.0f} steps/s decoded (both cameras), "
          f"iter_frames {result['iter_frames_steps_per_s']:.0f} steps/s")
    print(f"random:  clip of {args.clip_length + 1} frames x {len(CAMERAS)} cameras {result['random_clip_ms']['mean']:.1f} ms "
          f"mean / {result['random_clip_ms']['p95']:.1f} ms p95; single frame {result['random_frame_ms']['mean']:.2f} ms")
    print(f"quality: PSNR mean {result['psnr_db']['mean']:.2f} dB, min {result['psnr_db']['min']:.2f} dB; "
          f"max abs error action {max_action_err}, state {max_state_err}")
    print(f"disk:    {disk / 2**20:.1f} MiB ({result['bytes_per_step']:.0f} B/step); validate {validate_s:.2f} s "
          f"({'OK' if report.ok else 'FAILED'})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
