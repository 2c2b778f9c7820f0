"""``wovr report WORKSPACE``: a self-contained HTML page of a workspace's retrain history."""

from __future__ import annotations

import argparse

from wovr_core.cli import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", help="the wovr retrain workspace folder")
    parser.add_argument("--out", default=None, help="output HTML file (default: WORKSPACE/report.html)")


def _run(args: argparse.Namespace) -> int:
    from wovr_core.pipeline.report import write_report

    path = write_report(args.workspace, args.out)
    print(f"report: {path}")
    return 0


COMMAND = Command("report", "write a self-contained HTML report of a retrain workspace", _add_arguments, _run)
