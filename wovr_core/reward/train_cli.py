"""``wovr train-reward``: train the success classifier and report held-out accuracy and calibration."""

from __future__ import annotations

import argparse

from wovr_core.cli import Command
from wovr_core.config import add_config_arguments, config_from_args


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from wovr_core.reward.config import RewardTrainConfig

    parser.add_argument("--data", action="append", required=True, metavar="DIR",
                        help="episode dataset with success labels (repeatable)")
    parser.add_argument("--out", required=True, help="output directory: the reward model checkpoint + metrics.json")
    add_config_arguments(parser, RewardTrainConfig)


def _run(args: argparse.Namespace) -> int:
    from wovr_core.reward.config import RewardTrainConfig
    from wovr_core.reward.train import train_reward_model

    cfg = config_from_args(args, RewardTrainConfig)
    report = train_reward_model(cfg, args.data, args.out, preset=args.preset)
    print(f"reward model: {args.out}")
    print(f"  held-out frames: {report['frames']} ({report['positives']} positive) from "
          f"{len(report['held_out_episodes'])} episodes")
    print(f"  accuracy {report['accuracy']:.4f}  balanced accuracy {report['balanced_accuracy']:.4f}  "
          f"precision {report['precision']:.3f}  recall {report['recall']:.3f}  ECE {report['calibration']['ece']:.4f}")
    print(f"  episode agreement {report['episode_agreement']:.3f} over {report['episodes']} episodes")
    return 0


COMMAND = Command("train-reward", "train the success classifier (reward model) on labelled episodes",
                  _add_arguments, _run)

