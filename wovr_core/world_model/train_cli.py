"""``wovr train-wm``: train (or resume, or fine-tune) the world model on episode datasets."""

from __future__ import annotations

import argparse
import json

from wovr_core.cli import Command
from wovr_core.config import add_config_arguments, config_from_args


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from wovr_core.world_model.config import WorldModelTrainConfig

    parser.add_argument("--data", action="append", required=True, metavar="DIR",
                        help="episode dataset (repeatable: demos, policy rollouts, successes and failures)")
    parser.add_argument("--out", required=True, help="run directory; an existing run there is resumed")
    parser.add_argument("--init-from", metavar="MODEL_DIR",
                        help="fine-tune this world model checkpoint instead of starting from scratch")
    add_config_arguments(parser, WorldModelTrainConfig)


def _run(args: argparse.Namespace) -> int:
    from wovr_core.world_model.config import WorldModelTrainConfig
    from wovr_core.world_model.train import train_world_model

    cfg = config_from_args(args, WorldModelTrainConfig)
    summary = train_world_model(cfg, args.data, args.out, preset=args.preset, init_from=args.init_from)
    best = summary["best"]
    print(f"world model: {summary['model']}")
    for stage, metrics in best.items():
        print(f"  best {stage}: " + json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    return 0


COMMAND = Command("train-wm", "train the action-conditioned video world model (resumable)", _add_arguments, _run)

