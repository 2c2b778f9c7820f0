"""World-model fidelity on held-out episodes: PSNR/SSIM at 8/32/128 frames, reward agreement, controllability.

    python benchmarks/world_model_fidelity.py [--run RUN_DIR] [--reward-model DIR] [--set key=value ...]

The run is a ``wovr train-wm`` run directory (default ~/.cache/wovr/bench/wm_run/tiny) on the benchmark
dataset of benchmarks/reward_model.py, e.g.::

    wovr train-wm --data ~/.cache/wovr/bench/libero_object_noisy --out ~/.cache/wovr/bench/wm_run/tiny \
        --set threads=1 --set ae_max_steps=1000 --set ae_val_every=200 --set val_every=250

Open-loop replay of each held-out episode's real actions from its first frame (see ``wovr eval-wm``): the
model never sees another real frame. Videos, the full-size frame grid and the report go to a workspace
outside the repo (default ~/.cache/wovr/bench/world_model_fidelity); the summary goes to
benchmarks/results/world_model_fidelity.json and a small grid of two episodes (per camera, every 16th
frame: real row above imagined row) to benchmarks/results/world_model_fidelity.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
GRID_WIDTH = 640  # pixels of the PNG kept in the repo


def main() -> None:
    from wovr_core.config import add_config_arguments, config_from_args
    from wovr_core.world_model.config import WorldModelEvalConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="~/.cache/wovr/bench/wm_run/tiny",
                        help="train-wm run directory (held-out episodes from its split)")
    parser.add_argument("--reward-model", default="~/.cache/wovr/bench/reward_model",
                        help="reward model directory for the success-probability agreement (skipped if absent)")
    parser.add_argument("--workdir", default="~/.cache/wovr/bench/world_model_fidelity")
    parser.add_argument("--out", default=str(RESULTS / "world_model_fidelity.json"))
    add_config_arguments(parser, WorldModelEvalConfig)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import cv2
    import torch

    from wovr_core.world_model.data import open_datasets
    from wovr_core.world_model.eval_cli import resolve_run
    from wovr_core.world_model.evaluate import evaluate_world_model, load_scorer
    from wovr_core.world_model.model import WorldModel

    cfg = config_from_args(args, WorldModelEvalConfig)
    if not any(o.startswith("videos=") for o in args.overrides):
        cfg = dataclasses.replace(cfg, videos=2)  # the grid kept in the repo shows two episodes
    torch.set_num_threads(cfg.threads or 1)  # one thread: a shared machine's busy cores make OpenMP waits costly
    model_dir, split_path = resolve_run(args.run)
    if split_path is None:
        parser.error(f"{args.run}: no split.json (pass a train-wm run directory)")
    split = json.loads(split_path.read_text())
    model = WorldModel.load(model_dir).prepare_for_inference()
    datasets = open_datasets(split["datasets"], model.config.cameras)
    reward_dir = Path(args.reward_model).expanduser()
    scorer = load_scorer("reward_model", reward_dir) if (reward_dir / "config.json").exists() else None
    workdir = Path(args.workdir).expanduser()
    start = time.perf_counter()
    report = evaluate_world_model(model, datasets, [tuple(k) for k in split["val"]], cfg, workdir, scorer,
                                  [tuple(k) for k in split["train"]])
    manifest = json.loads((model_dir / "manifest.json").read_text()) if (model_dir / "manifest.json").exists() else {}
    grid = cv2.imread(str(workdir / "grid.png"))
    if grid is not None:  # downscaled, 128-colour palette: a few hundred kB in the repo
        from PIL import Image

        small = cv2.resize(grid, (GRID_WIDTH, round(grid.shape[0] * GRID_WIDTH / grid.shape[1])),
                           interpolation=cv2.INTER_AREA)
        Image.fromarray(small[..., ::-1]).quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
            RESULTS / "world_model_fidelity.png", optimize=True)
    control = report.get("controllability", {})
    result = {
        "what": "open-loop replay of held-out episodes' real actions from their first frame (PSNR dB, SSIM: mean "
                "over the first h imagined frames)",
        "command": f"python benchmarks/world_model_fidelity.py --run {args.run}"
                   + "".join(f" --set {o}" for o in args.overrides),
        "model": str(model_dir), "model_stage": manifest.get("stage"), "model_step": manifest.get("step"),
        "model_validation": manifest.get("metrics"), "datasets": split["datasets"],
        "held_out_episodes": len(report["episodes"]),
        "psnr": report["psnr"], "ssim": report["ssim"],
        "reward_agreement": report.get("reward_agreement"),
        "reward_model": str(reward_dir) if scorer is not None else None,
        "controllability": {k: v for k, v in control.items() if k != "per_command"},
        "controllability_per_command": control.get("per_command"),
        "lpips": None, "fvd": None, "note": report["lpips_fvd_note"],
        "grid_png": "benchmarks/results/world_model_fidelity.png (real rows above imagined rows, per camera)",
        "artifacts": str(workdir),
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_1m": os.getloadavg()[0]},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for h, m in report["psnr"].items():
        print(f"horizon {h:>4}: PSNR {m['mean']:.2f} dB, SSIM {report['ssim'][h]['mean']:.3f} ({m['episodes']} episodes)")
    if report.get("reward_agreement"):
        print("reward agreement:", json.dumps(report["reward_agreement"]))
    if control:
        print(f"controllability: direction accuracy {control['direction_accuracy']:.2f}, "
              f"axis selectivity {control['axis_selectivity']:.2f}, gripper {control['gripper_close_accuracy']:.2f}")
    print(f"videos and grid in {workdir}; wrote {out}")


if __name__ == "__main__":
    main()
