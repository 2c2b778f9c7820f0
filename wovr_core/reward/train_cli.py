"""``wovr train-reward``: train the success classifier and report held-out accuracy and calibration."""

from __future__ import annotations

import argparse

from wovr_core.cli import Command
from wovr_core.config import add_config_arguments, config_from_args
from wovr_core.registry import Registry

# A world model's view of the episodes, reached by name: the world model is a sibling package this one must not
# import (see the import-linter layers).
WORLD_MODEL_VIEWS: Registry = Registry("world-model view")
WORLD_MODEL_VIEWS.register("world_model", "wovr_core.world_model.replay:reward_view")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from wovr_core.reward.config import RewardTrainConfig

    parser.add_argument("--data", action="append", required=True, metavar="DIR",
                        help="episode dataset with success labels (repeatable)")
    parser.add_argument("--out", required=True, help="output directory: the reward model checkpoint + metrics.json")
    parser.add_argument("--world-model", metavar="DIR",
                        help="the world model whose imagined frames the reward model will score: it also trains on "
                             "that model's view of the episodes (world_model_view: imagined replay by default)")
    add_config_arguments(parser, RewardTrainConfig)


def _run(args: argparse.Namespace) -> int:
    from wovr_core.reward.config import RewardTrainConfig
    from wovr_core.reward.train import train_reward_model

    cfg = config_from_args(args, RewardTrainConfig)
    view = None
    if args.world_model:
        view = WORLD_MODEL_VIEWS.get("world_model")(args.world_model, cfg.world_model_view, cfg.view_anchor_every)
    report = train_reward_model(cfg, args.data, args.out, preset=args.preset, view=view)
    print(f"reward model: {args.out}")
    print(f"  held-out frames: {report['frames']} ({report['positives']} positive) from "
          f"{len(report['held_out_episodes'])} episodes")
    print(f"  accuracy {report['accuracy']:.4f}  balanced accuracy {report['balanced_accuracy']:.4f}  "
          f"precision {report['precision']:.3f}  recall {report['recall']:.3f}  ECE {report['calibration']['ece']:.4f}")
    print(f"  episode agreement {report['episode_agreement']:.3f} over {report['episodes']} episodes")
    if "viewed" in report:
        viewed = report["viewed"]
        print(f"  through the world model ({cfg.world_model_view}): accuracy {viewed['accuracy']:.4f}  balanced "
              f"accuracy {viewed['balanced_accuracy']:.4f}  recall {viewed['recall']:.3f}")
    return 0


COMMAND = Command("train-reward", "train the success classifier (reward model) on labelled episodes",
                  _add_arguments, _run)

