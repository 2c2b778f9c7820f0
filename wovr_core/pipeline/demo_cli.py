"""``wovr demo``: the whole loop on the MuJoCo twin, no hardware (see :mod:`wovr_core.pipeline.demo`)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

from wovr_core.cli import Command

DEFAULT_WORKSPACE = Path.home() / ".cache" / "wovr" / "demo"


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from wovr_core.config import add_config_arguments
    from wovr_core.pipeline.demo import DemoConfig

    parser.add_argument("--workspace", default=str(DEFAULT_WORKSPACE),
                        help="output directory, outside the repository; a rerun resumes there")
    parser.add_argument("--fresh", action="store_true", help="delete the workspace first and run every stage")
    add_config_arguments(parser, DemoConfig)


def _run(args: argparse.Namespace) -> int:
    from wovr_core.config import config_from_args
    from wovr_core.pipeline.demo import DemoConfig, DemoLoop

    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workspace = Path(args.workspace).expanduser()
    if args.fresh and workspace.exists():
        shutil.rmtree(workspace)
    config = config_from_args(args, DemoConfig)
    summary = DemoLoop(config, workspace, args.preset).run()
    twin = summary["twin_success"]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.0f}%"

    served = summary["served"]
    print(f"success in the twin: base {pct(twin['base'])} -> after RL in imagination {pct(twin['post_rl'])}; "
          f"{'promoted' if summary['promoted'] else 'not promoted'}; the server serves {served['checkpoint_id']} "
          f"({served['successes']}/{served['episodes']} through the client); "
          f"{summary['minutes_total_stages']:.1f} min of stages")
    print(f"report: {summary['report']}")
    return 0


COMMAND = Command("demo", "run the whole loop on the MuJoCo twin (no hardware): demos, SFT, robot runs, retrain "
                  "(world model, reward, RL in imagination, gate, push to a real policy server), report",
                  _add_arguments, _run)
