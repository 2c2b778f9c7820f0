"""``wovr info DATASET``: what a dataset holds, and whether every episode of it is readable."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from wovr_core.cli import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--no-validate", action="store_true", help="skip checking the data and video files")
    parser.add_argument("--decode-all", action="store_true", help="validate by decoding every frame (slow)")


def summarize(dataset) -> dict:
    """Counts of a dataset (or view): episodes, frames, tasks, sources, success labels."""
    episodes = dataset.episodes
    labeled = [ep for ep in episodes if ep.success is not None]
    successes = sum(bool(ep.success) for ep in labeled)
    return {
        "root": str(dataset.root),
        "codebase_version": dataset.info.codebase_version,
        "fps": dataset.fps,
        "robot_type": dataset.info.robot_type,
        "cameras": {name: list(hw) for name, hw in dataset.info.cameras.items()},
        "extra_features": sorted(dataset.info.extra_features),
        "episodes": len(episodes),
        "frames": dataset.num_frames,
        "duration_s": dataset.num_frames / dataset.fps,
        "tasks": dict(Counter(ep.task for ep in episodes)),
        "sources": dict(Counter(ep.source for ep in episodes)),
        "success": {"labeled": len(labeled), "successes": successes,
                    "rate": successes / len(labeled) if labeled else None,
                    "label_sources": dict(Counter(ep.success_source for ep in labeled))},
        "keyframes": sum(ep.num_keyframes for ep in episodes),
        "intervention_frames": sum(ep.num_interventions for ep in episodes),
    }


def _format(summary: dict) -> str:
    cams = ", ".join(f"{name} {h}x{w}" for name, (h, w) in summary["cameras"].items())
    lines = [
        f"dataset:   {summary['root']} (LeRobot {summary['codebase_version']} layout)",
        f"recording: {summary['fps']:g} fps; cameras: {cams}"
        + (f"; extras: {', '.join(summary['extra_features'])}" if summary["extra_features"] else ""),
        f"episodes:  {summary['episodes']}, frames: {summary['frames']} ({summary['duration_s']:.1f} s)",
        "sources:   " + (", ".join(f"{k} {v}" for k, v in sorted(summary["sources"].items())) or "-"),
    ]
    s = summary["success"]
    if s["labeled"]:
        by = ", ".join(f"{k} {v}" for k, v in sorted(s["label_sources"].items()))
        lines.append(f"success:   {s['successes']}/{s['labeled']} labeled episodes ({100 * s['rate']:.1f}%; "
                     f"labels by {by}), {summary['episodes'] - s['labeled']} unlabeled")
    else:
        lines.append("success:   no labels")
    lines.append(f"keyframes: {summary['keyframes']}, intervention frames: {summary['intervention_frames']}")
    lines.append(f"tasks ({len(summary['tasks'])}):")
    lines += [f"  {n:4d} x {task}" for task, n in sorted(summary["tasks"].items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from wovr_core.data.reader import EpisodeDataset
    from wovr_core.data.validate import validate_dataset

    with EpisodeDataset(args.dataset) as dataset:
        summary = summarize(dataset)
    report = None if args.no_validate else validate_dataset(args.dataset, decode_all=args.decode_all)
    if args.json:
        if report is not None:
            summary["validation"] = report.to_dict()
        print(json.dumps(summary, indent=2))
    else:
        print(_format(summary))
        if report is not None:
            print(f"validation: {report.summary()}")
            for warning in report.warnings:
                print(f"  warning: {warning}")
    return 0 if report is None or report.ok else 1


COMMAND = Command("info", "summarize an episode dataset and validate its files", _add_arguments, _run)
