"""Twin success of one policy when its action tokens are sampled at several temperatures.

GRPO learns from the policy's *sampled* rollouts (reference temperature 1.6, chosen for OpenVLA-OFT) while the
evaluation decodes greedily. If sampling at the training temperature already ruins the tiny policy, the
groups' returns say little about the greedy policy that is evaluated. This measures that gap.

    python benchmarks/sampling_temperature.py --temperatures 1.0,1.6 --episodes-per-task 3

Temperature 0 is argmax decoding; ``greedy`` (always run) is the checkpoint's own greedy decoding (e.g. the
median of the token distribution). Each setting runs the same tasks and init states (``--first-init-state``,
default 10: the starts RL trains on, not the evaluation's 0-9). Resumable: one ``wovr eval`` folder per setting
in ``--workspace``. Writes benchmarks/results/sampling_temperature.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

BENCH = Path("~/.cache/wovr/bench").expanduser()
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default=str(BENCH / "base_policy/libero_object-n3-s0/run/policy"))
    parser.add_argument("--suite", default="libero_object")
    parser.add_argument("--temperatures", default="1.0,1.6", help="comma-separated sampling temperatures")
    parser.add_argument("--episodes-per-task", type=int, default=3)
    parser.add_argument("--first-init-state", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--workspace", default=str(BENCH / "sampling_temperature"))
    parser.add_argument("--out", default=str(RESULTS / "sampling_temperature.json"))
    args = parser.parse_args()

    from wovr_core.policy.evaluate import EvalConfig, evaluate_checkpoint, success_summary

    temperatures = [float(t) for t in args.temperatures.split(",") if t.strip()]
    settings: list[tuple[str, float | None]] = [("greedy", None)] + [(f"t{t:g}", t) for t in temperatures]
    rows = {}
    for name, temperature in settings:
        cfg = EvalConfig(suite=args.suite, episodes_per_task=args.episodes_per_task,
                         first_init_state=args.first_init_state, workers=args.workers, videos=0,
                         temperature=temperature, threads=1)
        t0 = time.perf_counter()
        results = evaluate_checkpoint(args.policy, cfg, Path(args.workspace) / name, progress=True)
        rows[name] = {"temperature": temperature, **success_summary(results),
                      "minutes": round((time.perf_counter() - t0) / 60, 1)}
        print(f"{name:>8}: success {results['average_success']:.2f} over {results['episodes']} episodes")

    report = {
        "what": "twin success of one policy, action tokens decoded greedily or sampled at each temperature, "
                "same tasks and init states",
        "command": "python benchmarks/sampling_temperature.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("workspace", "out")),
        "policy": args.policy,
        "suite": args.suite,
        "init_states": [args.first_init_state, args.first_init_state + args.episodes_per_task - 1],
        "settings": rows,
        "machine": {"cpu": platform.machine(), "platform": platform.platform()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
