"""Twin throughput: env steps/s at 128x128 with both cameras rendered every step.

    python benchmarks/twin_speed.py --steps 200 --workers 2
Single process (fast and full render quality) and N worker processes. Writes benchmarks/results/twin_speed.json.
This is the baseline the world model's imagination speed is compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _actions(steps: int, n: int, seed: int = 0) -> np.ndarray:
    # Smooth random motions like a policy's, so contacts and rendering are typical.
    rng = np.random.default_rng(seed)
    a = np.clip(np.cumsum(rng.normal(0, 0.15, size=(steps, n, 7)), axis=0), -0.5, 0.5)
    a[..., 6] = np.sign(np.sin(np.arange(steps) / 20.0))[:, None]
    return a


def single_process(size: int, steps: int, quality: str, render: bool = True) -> float:
    from wovr_core.sim.twin import LiberoTwin, TwinConfig

    twin = LiberoTwin(TwinConfig(image_size=size, render_quality=quality, render=render))
    twin.reset(0)
    acts = _actions(steps, 1)
    for a in acts[:10]:  # warm-up
        twin.step(a[0])
    start = time.perf_counter()
    for a in acts:
        twin.step(a[0])
    rate = steps / (time.perf_counter() - start)
    twin.close()
    return rate


def parallel(size: int, steps: int, workers: int) -> float:
    from wovr_core.sim.twin import TwinConfig
    from wovr_core.sim.vec_env import TwinPool

    with TwinPool(TwinConfig(image_size=size), workers) as pool:
        pool.reset([0] * workers)
        acts = _actions(steps, workers)
        for a in acts[:10]:
            pool.step(a)
        start = time.perf_counter()
        for a in acts:
            pool.step(a)
        return steps * workers / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", default=str(RESULTS / "twin_speed.json"))
    args = parser.parse_args()

    fast = single_process(args.size, args.steps, "fast")
    print(f"single process, 2 cameras {args.size}px, fast render: {fast:.1f} steps/s", flush=True)
    full = single_process(args.size, args.steps, "full")
    print(f"single process, 2 cameras {args.size}px, full render (shadows, MSAA): {full:.1f} steps/s", flush=True)
    physics = single_process(args.size, args.steps, "fast", render=False)
    print(f"single process, physics only (no rendering): {physics:.1f} steps/s", flush=True)
    par = parallel(args.size, args.steps, args.workers)
    print(f"{args.workers} worker processes, 2 cameras {args.size}px: {par:.1f} steps/s total", flush=True)
    result = {
        "what": "LIBERO twin env steps/s, libero_object task 0, agentview + wrist cameras rendered every step",
        "command": f"python benchmarks/twin_speed.py --size {args.size} --steps {args.steps} --workers {args.workers}",
        "image_size": args.size,
        "cameras": 2,
        "single_process_steps_per_s": round(fast, 2),
        "single_process_full_quality_steps_per_s": round(full, 2),
        "physics_only_steps_per_s": round(physics, 2),
        "parallel_workers": args.workers,
        "parallel_steps_per_s": round(par, 2),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "mujoco_gl": os.environ.get("MUJOCO_GL", "egl"),
                    # Other work on the machine slows rendering a lot: keep the figure honest about it.
                    "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
