"""``wovr collect``: scripted-expert demonstrations from the twin into an episode dataset."""

from __future__ import annotations

import argparse

from wovr_core.cli import Command
from wovr_core.config import add_config_arguments, apply_overrides, config_from_args


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from wovr_core.sim.collect import CollectConfig

    parser.add_argument("--out", required=True, help="dataset directory (created, or appended to)")
    parser.add_argument("--suite", help="LIBERO suite, e.g. libero_object")
    parser.add_argument("--episodes", type=int, help="episodes per task")
    parser.add_argument("--noise", choices=["clean", "noisy", "exploring"],
                        help="expert noise preset (exploring: noisy + random excursions, data for world models)")
    parser.add_argument("--workers", type=int, help="parallel twin processes")
    add_config_arguments(parser, CollectConfig)


def _run(args: argparse.Namespace) -> int:
    from wovr_core.config import make_config
    from wovr_core.sim.collect import CollectConfig, collect
    from wovr_core.sim.experts import NOISE_FIELDS, ExpertConfig

    cfg = config_from_args(args, CollectConfig)
    shortcuts = {"suite": args.suite, "episodes_per_task": args.episodes, "workers": args.workers}
    cfg = apply_overrides(cfg, {k: v for k, v in shortcuts.items() if v is not None})
    if args.noise:
        noise = make_config(ExpertConfig, args.noise)
        cfg = apply_overrides(cfg, {"expert": {k: getattr(noise, k) for k in NOISE_FIELDS}})
    summary = collect(cfg, args.out)
    print(f"wrote {summary['episodes']} episodes ({summary['successes']} successful, {summary['frames']} frames) "
          f"to {args.out}")
    return 0


COMMAND = Command("collect", "collect scripted-expert episodes in the MuJoCo twin", _add_arguments, _run)
