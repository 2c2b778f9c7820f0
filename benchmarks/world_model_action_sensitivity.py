"""Which parts of the action a world model uses: its denoising loss on real clips under altered actions.

    python benchmarks/world_model_action_sensitivity.py --run RUN_DIR [--run RUN_DIR ...] --data DIR [--data DIR ...]

For ``--clips`` windows ``[o_0] + memory + chunk`` drawn from the episodes of ``--data`` (seeded), the rectified-flow
loss of each run's model (several fixed noise draws per window, the same for every variant) with:

- ``true``: the recorded actions;
- ``other_clip``: the actions of another window of the batch (the dummy action of o_0 kept);
- ``translation_zeroed`` / ``rotation_zeroed``: the arm's translation / rotation commands of the memory and chunk set
  to zero;
- ``chunk_translation_flipped``: the generated chunk's translation commands reversed.

``--noise-levels 0.3 0.9``: also the same at these fixed noise levels t (1 = pure noise), where the arm's
layout is still undecided (high t) or already visible in the noisy chunk (low t).

A model that follows its actions pays for each alteration; the increase over ``true`` (as a fraction) says how
much of the future it reads from each part of the action rather than from the frames before. Writes
benchmarks/results/world_model_action_sensitivity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
NOISE_DRAWS = 4  # noise/timestep draws per window: the loss of one draw varies more than the variants differ


def variants(actions, memory_frames: int):
    """The altered action windows, (B, window, 7) each; index 0 (o_0's dummy action) is never changed."""
    import numpy as np

    other = np.roll(actions, 1, axis=0)
    other[:, 0] = actions[:, 0]
    translation_zeroed, rotation_zeroed, flipped = actions.copy(), actions.copy(), actions.copy()
    translation_zeroed[:, 1:, :3] = 0.0
    rotation_zeroed[:, 1:, 3:6] = 0.0
    flipped[:, 1 + memory_frames:, :3] *= -1
    return {"true": actions, "other_clip": other, "translation_zeroed": translation_zeroed,
            "rotation_zeroed": rotation_zeroed, "chunk_translation_flipped": flipped}


def measure(run: Path, data: list[str], clips: int, batch: int, seed: int,
            noise_levels: tuple[float, ...] = ()) -> dict:
    import numpy as np
    import torch

    from wovr_core.world_model.data import (
        ClipSampler,
        load_episode,
        open_datasets,
        pick_episode,
        window_frames,
    )
    from wovr_core.world_model.eval_cli import resolve_run
    from wovr_core.world_model.model import WorldModel

    model_dir, _ = resolve_run(str(run))
    model = WorldModel.load(model_dir).eval()
    cfg = model.config
    datasets = open_datasets(data, cfg.cameras)
    sampler = ClipSampler(cfg.memory_frames, cfg.chunk_frames, static_prob=0.0, reset_prob=0.0)
    episodes = [load_episode(datasets, (d, ep.episode_index), cfg.cameras, cfg.image_size)
                for d, ds in enumerate(datasets) for ep in ds.episodes]
    episodes = [e for e in episodes if len(e) >= sampler.min_length]
    rng = np.random.default_rng(seed)
    lengths = np.array([len(e) for e in episodes], float)
    specs = [(e, sampler.sample(rng, e.key, e.actions)) for e in (episodes[pick_episode(rng, lengths)]
                                                                   for _ in range(clips))]
    levels = (None, *noise_levels)  # None: t drawn as in training
    losses: dict[float | None, dict[str, list[float]]] = {level: {} for level in levels}
    with torch.no_grad():
        for i in range(0, len(specs), batch):
            part = specs[i:i + batch]
            frames = {c: np.stack([window_frames(e, s, cfg.cameras)[c] for e, s in part]) for c in cfg.cameras}
            latents = model.codec.encode(model.to_video(frames)).float()
            actions = np.stack([s.actions for _, s in part])
            for name, altered in variants(actions, cfg.memory_frames).items():
                norm = torch.as_tensor(model.normalize_actions(altered))
                for level in levels:
                    draws = [model.loss(latents, norm, generator=torch.Generator().manual_seed(NOISE_DRAWS * i + k),
                                        noise_level=level).item() for k in range(NOISE_DRAWS)]
                    losses[level].setdefault(name, []).append(float(np.mean(draws)))

    def summary(per_variant: dict[str, list[float]]) -> dict:
        mean = {k: float(np.mean(v)) for k, v in per_variant.items()}
        return {"loss": mean, "increase_over_true": {k: v / mean["true"] - 1 for k, v in mean.items() if k != "true"}}

    result = {**summary(losses[None]), "model": str(model_dir)}
    if noise_levels:
        result["by_noise_level"] = {str(level): summary(losses[level]) for level in noise_levels}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="RUN_DIR", help="train-wm run (repeatable)")
    parser.add_argument("--data", action="append", required=True, metavar="DIR", help="episodes to draw clips from")
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-levels", type=float, nargs="*", default=[], metavar="T",
                        help="also measure at these fixed noise levels t in (0, 1]")
    parser.add_argument("--out", default=str(RESULTS / "world_model_action_sensitivity.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    data = [str(Path(d).expanduser()) for d in args.data]
    runs = {}
    for run in args.run:
        path = Path(run).expanduser()
        runs[str(path)] = result = measure(path, data, args.clips, args.batch, args.seed, tuple(args.noise_levels))
        for label, part in [("drawn t", result), *((f"t={t}", r) for t, r in result.get("by_noise_level", {}).items())]:
            print(f"{path} ({label}): loss {part['loss']['true']:.4f}; increase "
                  + ", ".join(f"{k} {v:+.1%}" for k, v in part["increase_over_true"].items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "what": "denoising loss on real clips with their recorded actions vs altered ones (mean of "
                f"{NOISE_DRAWS} fixed noise draws per window); increase_over_true: how much the model reads from "
                "that part of the action",
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "data": data, "clips": args.clips, "runs": runs,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
