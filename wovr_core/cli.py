"""The one command line, ``wovr <command>``.

Commands are plugins registered under the ``wovr.commands`` entry-point group, so the packages above
``wovr_core`` (the policy server, calibration) add commands without ``wovr_core`` importing them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points

from wovr_core.config import ConfigError, did_you_mean
from wovr_core.errors import WovrError

ENTRY_POINT_GROUP = "wovr.commands"


@dataclass(frozen=True)
class Command:
    """One ``wovr`` subcommand: ``add_arguments(parser)`` then ``run(args) -> exit code``.

    Keep the module that defines it light: import heavy libraries inside ``run``.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


def _discover() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def build_parser(commands: dict[str, Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wovr", description="WoVR: RL for VLA policies inside a world model.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in sorted(commands):
        cmd = commands[name]
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    found = _discover()
    wanted = next((a for a in argv if not a.startswith("-")), None)
    if wanted is not None and wanted not in found:
        print(f"wovr: unknown command {wanted!r}; commands: {', '.join(sorted(found))}."
              + did_you_mean(wanted, found), file=sys.stderr)
        return 2
    commands: dict[str, Command] = {}
    for name, ep in found.items():
        if wanted is not None and name != wanted:
            continue
        try:
            commands[name] = ep.load()
        except ImportError as e:  # a command whose extra is not installed stays listed but unusable
            commands[name] = _unavailable(name, e)
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        code = commands[args.command].run(args)
    except (WovrError, ConfigError) as e:
        if args.verbose or os.environ.get("WOVR_DEBUG"):
            raise
        print(f"wovr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wovr {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _unavailable(name: str, error: ImportError) -> Command:
    def run(_args: argparse.Namespace) -> int:
        print(f"wovr {name}: unavailable: {error} (install the extra that provides it, e.g. pip install 'wovr[train]')",
              file=sys.stderr)
        return 2

    return Command(name, f"(unavailable: {error})", lambda p: None, run)


if __name__ == "__main__":
    sys.exit(main())
