"""VLA policy latency on this machine: batch-1 ``infer`` (p50/p90/p99), batched rollout sampling, SFT step.

    python benchmarks/policy_latency.py                       # tiny preset, random init, CPU
    python benchmarks/policy_latency.py --checkpoint DIR      # a trained checkpoint

Times ``policy.infer(obs)`` end to end (input transforms incl. the resize to the model's size, tokenization,
forward, decoding, unnormalization) on 128x128 agentview + wrist observations (what the twin renders) with
proprio, batch 1, after a warm-up; also the model-only part,
sampled inference at the RL temperature (1.6), ``model.sample`` on a batch of 64 observations (what a GRPO
rollout step costs per chunk) and one SFT optimizer step at batch 32. The figures depend on how busy the CPU
is: the load average is recorded with them. Saves benchmarks/results/policy_latency.json.
Runs torch with one thread unless ``--threads`` says otherwise (see the note at the option).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from wovr_core.config import make_config
from wovr_core.policy.vla_config import VLAConfig
from wovr_core.policy.vla_inputs import collate
from wovr_core.policy.vla_policy import VLAPolicy, load_vla_policy
from wovr_core.transforms import NormStats

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = ["put the black bowl on the plate", "pick up the alphabet soup and place it in the basket"]


def synthetic_stats() -> dict[str, NormStats]:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.9, 0.9, size=(1000, 7))
    actions[:, 6] = rng.choice([-1.0, 1.0], size=1000)
    return {"action": NormStats.compute(actions), "observation.state": NormStats.compute(rng.normal(size=(1000, 8)))}


def observation(rng: np.random.Generator, size: int, task: str) -> dict:
    return {"observation.images.agentview": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "observation.images.wrist": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "observation.state": rng.normal(size=8).astype(np.float32), "task": task}


def percentiles(samples_s: list[float]) -> dict:
    ms = np.asarray(samples_s) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()), "n": int(ms.size)}


def time_infer(policy: VLAPolicy, observations: list[dict], iters: int) -> tuple[dict, dict]:
    total, model_only = [], []
    for i in range(iters):
        t0 = time.perf_counter()
        reply = policy.infer(observations[i % len(observations)])
        total.append(time.perf_counter() - t0)
        model_only.append(reply["policy_timing"]["infer_ms"] / 1e3)
    return percentiles(total), percentiles(model_only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="a VLA checkpoint (default: tiny, random init)")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    # One thread by default: on a small CPU shared with other processes, torch's intra-op threads spin-wait on
    # each other and batch-1 latency collapses (measured here: p99 48 ms with 1 thread, 29 s with 2, same load).
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rollout-batch", type=int, default=64)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS / "policy_latency.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.checkpoint:
        policy = load_vla_policy(args.checkpoint, device=args.device)
    else:
        config = dataclasses.replace(make_config(VLAConfig, "tiny"),
                                     input_images={"agentview": [128, 128], "wrist": [128, 128]})
        policy = VLAPolicy.create(config, synthetic_stats(), tasks=TASKS, device=args.device)
    size = policy.contract.image_shapes["observation.images.agentview"][0]
    rng = np.random.default_rng(0)
    observations = [observation(rng, size, TASKS[i % len(TASKS)]) for i in range(16)]
    load_before = os.getloadavg()

    time_infer(policy, observations, args.warmup)
    greedy, greedy_model = time_infer(policy, observations, args.iters)
    policy.temperature = 1.6
    sampled, _ = time_infer(policy, observations, max(args.iters // 3, 10))
    policy.temperature = 0.0

    batch = policy.prepare_batch([observations[i % 16] for i in range(args.rollout_batch)])
    generator = torch.Generator(device=policy.model.device).manual_seed(0)
    rollout = []
    with torch.inference_mode():
        for i in range(6):
            t0 = time.perf_counter()
            policy.model.sample(batch, 1.6, generator)
            if i:  # the first call warms up
                rollout.append(time.perf_counter() - t0)

    transform = policy.sample_transform()
    chunk = rng.uniform(-0.5, 0.5, size=(8, 7)).astype(np.float32)
    samples = [transform({**observations[i % 16], "action": chunk}) for i in range(args.train_batch)]
    model = policy.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    train_steps = []
    for i in range(6):
        t0 = time.perf_counter()
        train_batch, tokens = collate(samples)
        loss = model.sft_loss(train_batch.augmented(generator).to(model.device), tokens)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i:
            train_steps.append(time.perf_counter() - t0)
    model.eval()

    meta = policy.metadata()
    result = {
        "policy": {k: meta[k] for k in ("checkpoint_id", "num_parameters", "dtype", "device", "image_size", "cameras",
                                         "vision_model", "language_model", "chunk_size", "num_bins")},
        "preset": "checkpoint" if args.checkpoint else "tiny (random init)",
        "infer_batch1_ms": greedy,
        "infer_batch1_model_only_ms": greedy_model,
        "infer_batch1_sampled_t1.6_ms": sampled,
        f"rollout_sample_batch{args.rollout_batch}_ms": percentiles(rollout),
        f"sft_step_batch{args.train_batch}_ms": percentiles(train_steps),
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"VLA ({meta['num_parameters'] / 1e6:.2f} M params, {meta['device']}, {meta['dtype']}), batch 1 infer: "
          f"p50 {greedy['p50']:.1f} ms, p90 {greedy['p90']:.1f} ms, p99 {greedy['p99']:.1f} ms "
          f"(model {greedy_model['p50']:.1f} ms p50); sampled T=1.6 p50 {sampled['p50']:.1f} ms")
    print(f"rollout sample batch {args.rollout_batch}: {percentiles(rollout)['p50']:.0f} ms; "
          f"SFT step batch {args.train_batch}: {percentiles(train_steps)['p50']:.0f} ms; "
          f"load avg {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
