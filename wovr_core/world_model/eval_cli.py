"""``wovr eval-wm``: open-loop fidelity of a world model on held-out episodes (PSNR/SSIM per horizon,
reward-model agreement, controllability, side-by-side videos)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wovr_core.cli import Command
from wovr_core.config import add_config_arguments, config_from_args


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from wovr_core.world_model.config import WorldModelEvalConfig

    parser.add_argument("--model", required=True,
                        help="a train-wm run directory (its held-out episodes are used) or a model directory")
    parser.add_argument("--data", action="append", default=[], metavar="DIR",
                        help="evaluate every episode of these datasets instead of the run's held-out episodes")
    parser.add_argument("--out", required=True, help="where report.json, grid.png and videos/ go")
    parser.add_argument("--reward-model", metavar="DIR", help="reward model for the success-probability agreement")
    add_config_arguments(parser, WorldModelEvalConfig)


def resolve_run(path: str | Path) -> tuple[Path, Path | None]:
    """(model directory, split.json or None) for a run directory or a model directory."""
    from wovr_core.errors import DataError

    path = Path(path).expanduser()
    if (path / "model" / "config.json").exists():
        split = path / "split.json"
        return path / "model", split if split.exists() else None
    if (path / "config.json").exists():
        manifest = path / "manifest.json"
        split = json.loads(manifest.read_text()).get("split") if manifest.exists() else None
        return path, Path(split) if split and Path(split).exists() else None
    raise DataError(f"{path}: neither a world model directory nor a train-wm run directory")


def _run(args: argparse.Namespace) -> int:
    import torch

    from wovr_core.errors import DataError
    from wovr_core.world_model.config import WorldModelEvalConfig
    from wovr_core.world_model.data import open_datasets
    from wovr_core.world_model.evaluate import evaluate_world_model, format_controllability, load_scorer
    from wovr_core.world_model.model import WorldModel

    cfg = config_from_args(args, WorldModelEvalConfig)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model_dir, split_path = resolve_run(args.model)
    model = WorldModel.load(model_dir).prepare_for_inference().use_action_guidance(cfg.action_guidance)
    probe_keys: list = []
    if args.data:
        datasets = open_datasets(args.data, model.config.cameras)
        keys = [(d, ep.episode_index) for d, ds in enumerate(datasets) for ep in ds.episodes]
    elif split_path is not None:
        split = json.loads(split_path.read_text())
        datasets = open_datasets(split["datasets"], model.config.cameras)
        keys = [tuple(k) for k in split["val"]]
        probe_keys = [tuple(k) for k in split["train"]]
        if not keys:
            raise DataError(f"{split_path}: the run has no held-out episodes; pass --data")
    else:
        raise DataError(f"{model_dir}: no split.json of its run found; pass --data DIR")
    scorer = load_scorer("reward_model", args.reward_model) if args.reward_model else None
    report = evaluate_world_model(model, datasets, keys, cfg, args.out, scorer, probe_keys)
    print(f"world model {model_dir} on {len(report['episodes'])} episodes (report: {Path(args.out) / 'report.json'})")
    for h, m in report["psnr"].items():
        print(f"  horizon {h:>4}: PSNR {m['mean']:.2f} dB  SSIM {report['ssim'][h]['mean']:.3f}  "
              f"({m['episodes']} episodes)")
    if "reward_agreement" in report:
        ra = report["reward_agreement"]
        print(f"  reward agreement: |p_real - p_imagined| {ra['mean_abs_prob_diff']:.3f}, "
              f"label agreement {ra['label_agreement']:.3f}")
    if "outcomes" in report:
        o = report["outcomes"]
        print(f"  whole episodes imagined ({o['episodes']}, {o['successes']} successes): imagined success given a "
              f"real success {o['imagined_success_given_success']}, given a real failure "
              f"{o['imagined_success_given_failure']}")
    if "controllability" in report:
        print(f"  controllability: {format_controllability(report['controllability'])}")
    return 0


COMMAND = Command("eval-wm", "open-loop fidelity of a world model on held-out episodes", _add_arguments, _run)

