"""Imagination speed: world-model imagined frames/s vs the twin's env steps/s, measured in one run.

    python benchmarks/imagination_speed.py [--model RUN_OR_MODEL_DIR] [--rounds 3]

World model: the ``tiny`` preset (or the given checkpoint: speed does not depend on the weights),
128x128, batch 8, chunks of 8 frames, 5 Euler steps, compiled with torch.compile, on this CPU. One
imagined frame = one time step with every camera the model imagines (agentview + wrist), like one twin
step renders both cameras. Twin: ``LiberoTwin(TwinConfig(image_size=128))``, single process, agentview +
wrist rendered each step, small random actions. The two are measured in short alternating rounds (a few
seconds each) and ``ratio`` is the median of the per-round ratios, so load from other processes on a shared
machine hits both sides of each ratio alike. Where a GPU is available, the world model is
also timed there at 256x256.

Writes benchmarks/results/imagination_speed.json (``ratio`` = imagined frames/s / twin steps/s).
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


def build_model(model_dir: str | None, image_size: int, dtype: str, device: str = "cpu"):
    from wovr_core.config import make_config
    from wovr_core.world_model.config import WorldModelConfig
    from wovr_core.world_model.model import WorldModel

    if model_dir:
        from wovr_core.world_model.eval_cli import resolve_run

        model = WorldModel.load(resolve_run(model_dir)[0])
        model.config.dtype = dtype or model.config.dtype  # default: the dtype the model imagines in
    else:
        model = WorldModel.build(make_config(WorldModelConfig, "tiny", {"image_size": image_size,
                                                                        "dtype": dtype or "float32"}))
    return model.prepare_for_inference(device)


def time_world_model(model, batch: int, calls: int) -> float:
    """Imagined frames/s over ``calls`` imagine() calls (after a warm-up call)."""
    cfg = model.config
    rng = np.random.default_rng(0)
    size = cfg.image_size
    frames = {c: rng.integers(0, 255, (batch, 1, size, size, 3), dtype=np.uint8) for c in cfg.cameras}
    state = model.observe(frames)
    actions = rng.uniform(-0.3, 0.3, (batch, cfg.chunk_frames, 7)).astype(np.float32)
    _, state = model.imagine(state, actions)  # warm-up (and compilation)
    _sync(model)
    start = time.perf_counter()
    for _ in range(calls):
        _, state = model.imagine(state, actions)
    _sync(model)
    return calls * batch * cfg.chunk_frames / (time.perf_counter() - start)


def breakdown(model, batch: int) -> dict[str, float]:
    """Seconds per imagine() call spent denoising (5 Euler steps of the transformer) and decoding frames."""
    import torch

    cfg = model.config
    rng = np.random.default_rng(1)
    frames = {c: rng.integers(0, 255, (batch, 1, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
              for c in cfg.cameras}
    state = model.observe(frames)
    actions = torch.as_tensor(model.normalize_actions(rng.uniform(-0.3, 0.3, (batch, cfg.chunk_frames, 7))),
                              dtype=model.dtype)
    window = torch.cat([state.actions, actions], dim=1)
    with torch.no_grad():
        t0 = time.perf_counter()
        latents = model.sample(state.latents, window)
        _sync(model)
        t1 = time.perf_counter()
        model.codec.decode_chunk(state.latents, latents)
        _sync(model)
        t2 = time.perf_counter()
    return {"denoise_s": t1 - t0, "decode_s": t2 - t1}


def _sync(model) -> None:
    import torch

    if model.device.type == "cuda":
        torch.cuda.synchronize()


class TwinTimer:
    def __init__(self, size: int):
        from wovr_core.sim.twin import LiberoTwin, TwinConfig

        self.twin = LiberoTwin(TwinConfig(image_size=size))
        self.twin.reset(0)
        self.rng = np.random.default_rng(0)

    def steps_per_second(self, steps: int) -> float:
        actions = np.clip(self.rng.normal(0, 0.2, (steps, 7)), -0.5, 0.5)
        actions[:, 6] = -1.0
        for a in actions[:5]:
            self.twin.step(a)
        start = time.perf_counter()
        for a in actions:
            result = self.twin.step(a)
            if result.done:
                self.twin.reset(0)
        return steps / (time.perf_counter() - start)

    def close(self) -> None:
        self.twin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="world model run or checkpoint (default: a fresh tiny-preset model)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=2, help="imagine() calls per world-model round")
    parser.add_argument("--twin-steps", type=int, default=40, help="env steps per twin round")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                        help="inference dtype (default: the checkpoint's own; float32 for a fresh model)")
    parser.add_argument("--no-compile", action="store_true", help="time the eager model")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the twin is one single-threaded process too, and on a "
                             "shared machine OpenMP threads waiting for busy cores can slow torch down many times)")
    parser.add_argument("--out", default=str(RESULTS / "imagination_speed.json"))
    args = parser.parse_args()

    import torch

    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(args.threads)
    model = build_model(args.model, 128, args.dtype)
    if not args.no_compile:
        model.compile_for_inference()
    print(f"compiling/warming up the world model ({'eager' if args.no_compile else 'torch.compile'})...", flush=True)
    t0 = time.perf_counter()
    time_world_model(model, args.batch, 1)
    print(f"  ready in {time.perf_counter() - t0:.0f} s", flush=True)
    twin = TwinTimer(128)
    wm_rates, twin_rates = [], []
    for r in range(args.rounds):
        twin_rates.append(twin.steps_per_second(args.twin_steps))
        wm_rates.append(time_world_model(model, args.batch, args.calls))
        print(f"round {r + 1}: twin {twin_rates[-1]:.1f} steps/s, world model {wm_rates[-1]:.1f} imagined frames/s",
              flush=True)
    twin.close()
    split = breakdown(model, args.batch)
    print(f"one call: denoising {split['denoise_s']:.2f} s, decoding {split['decode_s']:.2f} s", flush=True)
    wm_fps, twin_sps = float(np.median(wm_rates)), float(np.median(twin_rates))
    ratios = [w / t for w, t in zip(wm_rates, twin_rates, strict=True)]
    ratio = float(np.median(ratios))
    print(f"median imagined frames/s {wm_fps:.1f}, median twin steps/s {twin_sps:.1f}; median per-round ratio "
          f"{ratio:.2f} (goal >= 10)")

    gpu = None
    if torch.cuda.is_available():
        # The tiny architecture at 256 px (a 128 px checkpoint cannot run at 256; speed does not need weights).
        gmodel = build_model(None, 256, "bfloat16", "cuda")
        gpu = {"device": torch.cuda.get_device_name(0), "image_size": 256, "dtype": "bfloat16",
               "imagined_fps": time_world_model(gmodel, args.batch, max(4, args.calls))}
        print(f"GPU {gpu['device']}: {gpu['imagined_fps']:.1f} imagined frames/s at 256x256")

    cfg = model.config
    result = {
        "what": "world-model imagined frames/s divided by twin env steps/s, measured in alternating rounds of one run",
        "command": "python benchmarks/imagination_speed.py" + (f" --model {args.model}" if args.model else "")
                   + (f" --threads {args.threads}" if args.threads != 1 else ""),
        "ratio": ratio, "goal": 10.0,
        "imagined_fps": wm_fps, "twin_steps_per_s": twin_sps,
        "rounds": {"imagined_fps": wm_rates, "twin_steps_per_s": twin_rates, "ratio": ratios},
        "seconds_per_call": split,
        "world_model": {"preset": "tiny" if not args.model else args.model, "image_size": cfg.image_size,
                        "cameras": list(cfg.cameras), "batch": args.batch, "chunk_frames": cfg.chunk_frames,
                        "euler_steps": cfg.euler_steps, "dtype": cfg.dtype, "compiled": not args.no_compile,
                        "torch_threads": torch.get_num_threads()},
        "twin": {"image_size": 128, "cameras": ["agentview", "wrist"], "processes": 1, "render_quality": "fast"},
        "gpu": gpu,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_1m": os.getloadavg()[0]},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
