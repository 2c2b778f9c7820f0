"""``wovr retrain``: the nightly job (ingest -> world model -> reward -> RL -> evaluate -> promote -> push)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from wovr_core.cli import Command

DEFAULT_WORKSPACE = "~/wovr/workspace"
WORKSPACE_ENV = "WOVR_WORKSPACE"

# Exit codes a timer or a script can act on.
EXIT_OK, EXIT_FAILED, EXIT_BUSY, EXIT_PENDING_PUSH = 0, 1, 75, 3


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from wovr_core.config import add_config_arguments
    from wovr_core.pipeline.config import RetrainConfig

    parser.add_argument("--workspace", default=os.environ.get(WORKSPACE_ENV, DEFAULT_WORKSPACE),
                        help=f"workspace folder (default: ${WORKSPACE_ENV} or {DEFAULT_WORKSPACE})")
    parser.add_argument("--run-id", default=None, help="resume (or check) this run instead of the latest")
    parser.add_argument("--new", action="store_true", help="start a new run even with nothing new in the inbox")
    parser.add_argument("--abandon", action="store_true",
                        help="mark the unfinished run (latest, or --run-id) abandoned instead of resuming it")
    add_config_arguments(parser, RetrainConfig)


def _log_to_workspace(workspace: Path) -> logging.Handler:
    (workspace / "logs").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(workspace / "logs" / "retrain.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _run(args: argparse.Namespace) -> int:
    from wovr_core.config import config_from_args
    from wovr_core.pipeline.config import RetrainConfig
    from wovr_core.pipeline.lock import LockHeld
    from wovr_core.pipeline.retrain import NOTHING_TO_DO, abandon, retrain
    from wovr_core.pipeline.workspace import ABANDONED, FINISHED, PENDING_PUSH

    workspace = Path(args.workspace).expanduser().resolve()
    handler = _log_to_workspace(workspace)
    try:
        if args.abandon:
            outcome = abandon(workspace, args.run_id)
        else:
            config = config_from_args(args, RetrainConfig)
            outcome = retrain(workspace, config, args.preset, run_id=args.run_id, force_new=args.new)
    except LockHeld as e:
        print(f"wovr retrain: {e}", flush=True)
        logging.getLogger("wovr.retrain").warning("%s", e)
        return EXIT_BUSY
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    print(outcome.message, flush=True)
    if outcome.status in (FINISHED, NOTHING_TO_DO, ABANDONED):
        return EXIT_OK
    if outcome.status == PENDING_PUSH:
        return EXIT_PENDING_PUSH
    return EXIT_FAILED


COMMAND = Command("retrain", "nightly retrain over a workspace: ingest, refine the world model and reward, "
                  "RL in imagination, evaluate, promote, push (resumable, one at a time)", _add_arguments, _run)
