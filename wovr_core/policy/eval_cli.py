"""``wovr eval``: success rate of a policy checkpoint in the LIBERO twin, per task, with a few videos.

    wovr eval --suite libero_object --checkpoint runs/vla-object/policy --episodes-per-task 10 --workers 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from wovr_core.cli import Command
from wovr_core.config import add_config_arguments, config_from_args


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from wovr_core.policy.evaluate import EvalConfig

    parser.add_argument("--checkpoint", required=True, help="policy checkpoint directory")
    parser.add_argument("--suite", help="LIBERO suite, e.g. libero_object")
    parser.add_argument("--tasks", help="comma-separated task ids (default: every task of the suite)")
    parser.add_argument("--episodes-per-task", type=int, help="episodes per task, from LIBERO's init states 0..N-1")
    parser.add_argument("--workers", type=int, help="parallel twin processes")
    parser.add_argument("--videos", type=int, help="episodes to save as mp4")
    parser.add_argument("--temperature", type=float, help="sample at this temperature (default: the checkpoint's)")
    parser.add_argument("--out", help="results directory (default: ~/.cache/wovr/eval/<checkpoint>-<suite>-<time>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser, EvalConfig)


def _run(args: argparse.Namespace) -> int:
    from wovr_core.policy.evaluate import EvalConfig, evaluate_checkpoint, format_table

    shortcuts = {"suite": args.suite, "tasks": f"[{args.tasks}]" if args.tasks else None,
                 "episodes_per_task": args.episodes_per_task, "workers": args.workers, "videos": args.videos,
                 "temperature": args.temperature}
    args.overrides = [f"{k}={v}" for k, v in shortcuts.items() if v is not None] + list(args.overrides)
    cfg = config_from_args(args, EvalConfig)
    checkpoint = Path(args.checkpoint).expanduser()
    out = Path(args.out).expanduser() if args.out else (
        Path("~/.cache/wovr/eval").expanduser()
        / f"{checkpoint.resolve().name}-{cfg.suite}-{time.strftime('%Y%m%d-%H%M%S')}")
    results = evaluate_checkpoint(checkpoint, cfg, out, progress=not args.no_progress)
    print(format_table(results))
    for video in results["videos"]:
        print(f"video: {video}")
    print(f"results: {out / 'results.json'}")
    return 0


COMMAND = Command("eval", "evaluate a policy checkpoint in the LIBERO twin", _add_arguments, _run)
