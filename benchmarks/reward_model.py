"""Reward-model accuracy against the LIBERO predicate on held-out episodes.

    python benchmarks/reward_model.py [--data DIR ...] [--preset tiny] [--set key=value ...]
    python benchmarks/reward_model.py --model DIR      # re-evaluate a trained model on its held-out episodes

Data (stage-cached): without ``--data``, the twin dataset ~/.cache/wovr/bench/libero_object_noisy, collected
on first use with ``wovr collect --suite libero_object --episodes 4 --noise noisy`` twice (``--set seed=0``
and ``seed=1``: 80 episodes, about 25 minutes on 2 cores); the noisy scripted expert fails some episodes, so
both classes occur. Frame labels follow LIBERO's predicate (see wovr_core.reward.data: the collector stops 5
steps after the predicate first holds, so the last 6 frames of a successful episode are its predicate-true
frames).

Trains ``wovr train-reward`` into a workspace outside the repo (default ~/.cache/wovr/bench/reward_model),
then scores every frame of the held-out test episodes (used neither for training nor for early stopping).
Writes benchmarks/results/reward_model.json with ``accuracy`` (goal >= 0.95) plus balanced accuracy,
precision, recall, calibration and the accuracy of always answering "no success", since accuracy alone is
flattered by the rarity of success frames.

With ``--world-model WM`` the reward model also trains on WM's view of the episodes (``--view imagined``:
imagined replay, each chunk imagined from the real frames before it under the recorded actions; ``codec``: each
frame through WM's codec) and ``through_world_model`` reports held-out accuracy on those frames, which is what
RL in imagination shows it. With ``--model DIR --world-model WM`` it evaluates a trained model on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import get_args

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = "~/.cache/wovr/bench/libero_object_noisy"
COLLECT = ("collect", "--suite", "libero_object", "--episodes", "4", "--workers", "2")


def ensure_dataset(root: Path, noise: str = "noisy") -> None:
    """Collect the benchmark dataset (expert noise preset ``noise``) unless a previous run left it (complete)
    at ``root``."""
    if (root / "meta" / "info.json").exists():
        return
    for seed in (0, 1):
        cmd = [sys.executable, "-m", "wovr_core.cli", *COLLECT, "--noise", noise, "--set", f"seed={seed}",
               "--out", str(root)]
        print("collecting:", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)


def main() -> None:
    from wovr_core.config import add_config_arguments, config_from_args, load_config
    from wovr_core.reward.config import RewardTrainConfig
    from wovr_core.types import RewardViewKind

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", default=[], metavar="DIR")
    parser.add_argument("--model", help="evaluate this trained reward model instead of training one")
    parser.add_argument("--workdir", default="~/.cache/wovr/bench/reward_model")
    parser.add_argument("--world-model", metavar="DIR",
                        help="also train on this world model's view of the episodes (viewed_fraction of each batch, "
                             "see --view) and report held-out accuracy on such frames: how imagination shows them")
    parser.add_argument("--view", choices=get_args(RewardViewKind),
                        help="the world model's view to train with or evaluate on (default: the config's)")
    parser.add_argument("--out", default=str(RESULTS / "reward_model.json"))
    add_config_arguments(parser, RewardTrainConfig)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    start = time.perf_counter()

    def view_of(cfg: RewardTrainConfig):
        if not args.world_model:
            return None
        from wovr_core.world_model import reward_view

        return reward_view(args.world_model, args.view or cfg.world_model_view, cfg.view_anchor_every)

    if args.model:
        from wovr_core.reward.data import open_datasets
        from wovr_core.reward.model import SuccessClassifier
        from wovr_core.reward.train import evaluate_reward_model

        model_dir = Path(args.model).expanduser()
        cfg = load_config(model_dir / "train_config.json", RewardTrainConfig)
        split = json.loads((model_dir / "split.json").read_text())
        model = SuccessClassifier.load(model_dir)
        datasets = open_datasets(split["datasets"], model.config.cameras)
        report = evaluate_reward_model(model, datasets, [tuple(k) for k in split["test"]], cfg)
        view = view_of(cfg)
        if view is not None:
            from wovr_core.reward.train import VIEWED_REPORT

            through = evaluate_reward_model(model, datasets, [tuple(k) for k in split["test"]], cfg, view)
            report["viewed"] = {k: through[k] for k in VIEWED_REPORT}
        data = split["datasets"]
        report["train_steps"] = json.loads((model_dir / "metrics.json").read_text()).get("train_steps")
    else:
        from wovr_core.reward.train import train_reward_model

        data = [str(Path(d).expanduser().resolve()) for d in args.data or [DEFAULT_DATA]]
        if not args.data:
            ensure_dataset(Path(data[0]))
        cfg = config_from_args(args, RewardTrainConfig)
        if args.view:
            cfg = dataclasses.replace(cfg, world_model_view=args.view)
        model_dir = Path(args.workdir).expanduser()
        report = train_reward_model(cfg, data, model_dir, preset=args.preset, view=view_of(cfg))

    keys = ("accuracy", "balanced_accuracy", "precision", "recall", "specificity", "f1", "frames", "positives",
            "all_negative_accuracy", "episode_agreement", "episodes", "mean_abs_done_offset_frames")
    from wovr_core.reward.metrics import json_ready

    result = json_ready({
        "what": "success-classifier frame accuracy vs the success predicate, every frame of held-out episodes",
        "command": "python benchmarks/reward_model.py" + "".join(f" --data {d}" for d in args.data)
                   + (f" --model {args.model}" if args.model else "")
                   + (f" --world-model {args.world_model}" if args.world_model else "")
                   + (f" --view {args.view}" if args.view else "")
                   + "".join(f" --set {o}" for o in args.overrides),
        "goal": {"accuracy": 0.95},
        **{k: report[k] for k in keys},
        "ece": report["calibration"]["ece"],
        "through_world_model": report.get("viewed"),
        "world_model": args.world_model,
        "world_model_view": {"kind": args.view or cfg.world_model_view, "anchor_every": cfg.view_anchor_every}
                            if args.world_model else None,
        "calibration": report["calibration"]["bins"],
        "held_out_episodes": len(report["held_out_episodes"]),
        "train_steps": report.get("train_steps"),
        "label_rule": report["label_rule"],
        "data": data,
        "model_dir": str(model_dir),
        "preset": args.preset,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_1m": os.getloadavg()[0]},
    })
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"held-out frame accuracy {result['accuracy']:.4f} (always-negative baseline "
          f"{result['all_negative_accuracy']:.4f}; balanced {result['balanced_accuracy']:.4f}, precision "
          f"{result['precision']}, recall {result['recall']}, ECE {result['ece']:.4f}) on {result['frames']} frames "
          f"of {result['held_out_episodes']} episodes; wrote {out}")


if __name__ == "__main__":
    main()
