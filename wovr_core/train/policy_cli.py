"""``wovr train-policy``: supervised fine-tuning of the VLA on episode datasets, resumable.

    wovr train-policy --data ~/data/libero_object --out runs/vla-object            # tiny preset, CPU
    wovr train-policy --data DIR --out RUN --preset paper                           # pretrained backbones, GPU
    accelerate launch -m wovr_core.cli train-policy --data DIR --out RUN --preset paper   # several GPUs

Run the same command again to resume an interrupted run.
"""

from __future__ import annotations

import argparse

from wovr_core.cli import Command
from wovr_core.config import add_config_arguments, config_from_args


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from wovr_core.train.policy_config import PolicyTrainConfig

    parser.add_argument("--data", action="append", required=True, metavar="DIR",
                        help="episode dataset to imitate (repeatable)")
    parser.add_argument("--out", required=True, help="run directory (an existing run there is resumed)")
    parser.add_argument("--steps", type=int, help="optimizer steps (max_steps)")
    parser.add_argument("--batch-size", type=int, help="samples per step and process")
    parser.add_argument("--eval-every", type=int, help="evaluate in the LIBERO twin every N steps (0: never)")
    parser.add_argument("--eval-suite", help="suite of the periodic evaluation, e.g. libero_object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    add_config_arguments(parser, PolicyTrainConfig)


def _run(args: argparse.Namespace) -> int:
    from wovr_core.train.policy_config import PolicyTrainConfig
    from wovr_core.train.policy_trainer import train_policy

    shortcuts = {"max_steps": args.steps, "batch_size": args.batch_size, "eval.every": args.eval_every,
                 "eval.suite": args.eval_suite}
    # The shortcuts are --set overrides (validated with the rest); an explicit --set comes after them.
    args.overrides = [f"{k}={v}" for k, v in shortcuts.items() if v is not None] + list(args.overrides)
    cfg = config_from_args(args, PolicyTrainConfig)
    summary = train_policy(cfg, args.data, args.out, preset=args.preset, progress=not args.no_progress)
    if summary:
        val = summary.get("validation") or {}
        extra = f", validation token accuracy {val['token_accuracy']:.3f}" if "token_accuracy" in val else ""
        print(f"trained {summary['steps']} steps on {summary['train_episodes']} episodes{extra}; "
              f"policy: {summary['policy']}")
    return 0


COMMAND = Command("train-policy", "train the VLA policy on demonstrations (SFT)", _add_arguments, _run)
