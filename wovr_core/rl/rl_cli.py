"""``wovr rl``: GRPO in the world model from a VLA checkpoint, PACE around it, or the twin GRPO baseline.

    wovr rl --policy SFT --world-model WM --reward RM --data DEMOS --out runs/rl            # imagination only
    wovr rl ... --pace --suite libero_object --set real_budget=1000                          # + PACE
    wovr rl --baseline-twin --policy SFT --suite libero_object --set real_budget=1000 --out runs/twin-grpo
    wovr rl ... --preset paper --set eval_every=50                                           # GPU scale

Run the same command again to resume an interrupted run (finished stages and updates are skipped).
"""

from __future__ import annotations

import argparse

from wovr_core.cli import Command
from wovr_core.config import add_config_arguments, config_from_args


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from wovr_core.rl.run_config import RLRunConfig

    parser.add_argument("--policy", required=True, help="VLA checkpoint to start from (wovr train-policy output)")
    parser.add_argument("--world-model", help="world-model checkpoint (wovr train-wm output)")
    parser.add_argument("--reward", help="reward-model checkpoint (wovr train-reward output)")
    parser.add_argument("--data", action="append", default=[], metavar="DIR",
                        help="episode dataset the starts (first frames, keyframes) come from (repeatable)")
    parser.add_argument("--out", required=True, help="run directory (an existing run there is resumed)")
    parser.add_argument("--suite", help="LIBERO suite of the twin (evaluations, PACE rollouts, the baseline)")
    parser.add_argument("--updates", type=int, help="GRPO updates (rl.updates)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--pace", action="store_true",
                      help="PACE: RL, new twin rollouts, refine the world and reward models, RL again")
    mode.add_argument("--baseline-twin", action="store_true",
                      help="the same-budget baseline: GRPO in the twin itself (needs no world or reward model)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    add_config_arguments(parser, RLRunConfig)


def _run(args: argparse.Namespace) -> int:
    from wovr_core.config import ConfigError
    from wovr_core.rl.run_config import RLRunConfig

    shortcuts = {"rl.updates": args.updates, "twin.suite": args.suite, "eval.suite": args.suite}
    args.overrides = [f"{k}={v}" for k, v in shortcuts.items() if v is not None] + list(args.overrides)
    cfg = config_from_args(args, RLRunConfig)
    progress = not args.no_progress
    if args.baseline_twin:
        from wovr_core.rl.run import run_twin_grpo

        summary = run_twin_grpo(cfg, args.policy, args.out, progress=progress)
        print(f"twin GRPO: {summary['updates']} updates, {summary.get('real_trajectories', '?')} twin trajectories; "
              f"policy: {summary.get('policy')}")
        return 0
    missing = [f"--{k}" for k, v in (("world-model", args.world_model), ("reward", args.reward), ("data", args.data))
               if not v]
    if missing:
        raise ConfigError(f"RL in imagination needs {', '.join(missing)}")
    if args.pace:
        from wovr_core.rl.pace import run_pace

        result = run_pace(cfg, args.policy, args.world_model, args.reward, args.data, args.out, progress=progress)
        print(f"PACE done ({result['real_trajectories']} real trajectories); policy: {result['policy']}")
        return 0
    from wovr_core.rl.run import run_imagination_rl

    summary = run_imagination_rl(cfg, args.policy, args.world_model, args.reward, args.data, args.out,
                                 progress=progress)
    print(f"GRPO: {summary['updates']} updates; policy: {summary.get('policy')}")
    return 0


COMMAND = Command("rl", "RL in the world model (masked GRPO, KIR starts), PACE, or the twin GRPO baseline",
                  _add_arguments, _run)
