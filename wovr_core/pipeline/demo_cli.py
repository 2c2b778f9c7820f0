"""``wovr demo``: the end-to-end job on the MuJoCo twin, no hardware.

Today it runs the stages that exist: scripted-expert demonstrations for a few LIBERO tasks -> an episode
dataset -> a short HTML report (dataset summary, validation, a contact sheet of the recorded cameras).
The training, imagination-RL and serving stages join it as they land (see the issues).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import time
from pathlib import Path

from wovr_core.cli import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", default=str(Path.home() / ".cache" / "wovr" / "demo"),
                        help="output directory (outside the repository)")
    parser.add_argument("--suite", default="libero_object")
    parser.add_argument("--tasks", default="0,1,6", help="comma-separated task ids")
    parser.add_argument("--episodes", type=int, default=3, help="episodes per task")
    parser.add_argument("--workers", type=int, default=2)


def _run(args: argparse.Namespace) -> int:
    from wovr_core.config import make_config
    from wovr_core.data import EpisodeDataset, validate_dataset
    from wovr_core.sim.collect import CollectConfig, collect

    workspace = Path(args.workspace).expanduser()
    run_dir = workspace / time.strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    cfg = make_config(CollectConfig, "tiny", {
        "suite": args.suite, "tasks": [int(t) for t in args.tasks.split(",")],
        "episodes_per_task": args.episodes, "workers": args.workers,
        "expert": {"action_noise": 0.05, "grasp_offset": 0.004, "failure_prob": 0.15},
    })
    print(f"[1/2] collecting {args.episodes} noisy expert demos per task for {args.suite} tasks {args.tasks}")
    summary = collect(cfg, run_dir / "demos")
    print(f"      {summary['episodes']} episodes, {summary['successes']} successful, {summary['frames']} frames")
    print("[2/2] validating the dataset and writing the report")
    report = validate_dataset(run_dir / "demos")
    dataset = EpisodeDataset(run_dir / "demos")
    page = _report_html(dataset, report, summary, time.time() - start)
    (run_dir / "report.html").write_text(page)
    (run_dir / "summary.json").write_text(json.dumps({**summary, "seconds": round(time.time() - start, 1)}, indent=2))
    latest = workspace / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name)
    print(f"report: {run_dir / 'report.html'}")
    return 0


def _contact_sheet(dataset, max_episodes: int = 6, frames_per_episode: int = 6) -> str:
    import numpy as np
    from PIL import Image

    rows = []
    for i in range(min(len(dataset), max_episodes)):
        ep = dataset.episode(i)
        picks = np.linspace(0, len(ep) - 1, frames_per_episode).astype(int)
        row = [np.concatenate([ep.frame(int(t), cam) for cam in dataset.cameras], axis=0) for t in picks]
        rows.append(np.concatenate(row, axis=1))
    if not rows:
        return ""
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(rows, axis=0)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _report_html(dataset, validation, summary: dict, seconds: float) -> str:
    rows = "".join(
        f"<tr><td>{m.episode_index}</td><td>{html.escape(m.task)}</td><td>{m.length}</td>"
        f"<td>{'yes' if m.success else 'no'}</td><td>{html.escape(str(m.extra.get('expert_mistake', '')))}</td></tr>"
        for m in dataset.episodes
    )
    sheet = _contact_sheet(dataset)
    image = f'<img alt="frames" src="data:image/png;base64,{sheet}">' if sheet else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>WoVR demo</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}
img{{image-rendering:pixelated;max-width:100%}}</style></head><body>
<h1>WoVR demo on the MuJoCo twin</h1>
<p>{summary['episodes']} scripted episodes ({summary['successes']} successful by LIBERO's predicate),
{summary['frames']} frames, in {seconds:.0f} s. Validation: {html.escape(str(validation.summary()))}</p>
<h2>Episodes</h2><table><tr><th>#</th><th>task</th><th>frames</th><th>success</th><th>expert mistake</th></tr>
{rows}</table>
<h2>Recorded cameras</h2><p>Each row is an episode; each column a moment in it (agentview above wrist).</p>{image}
<p>Next stages (SFT, world model, imagination RL, serving) join this report as they land.</p>
</body></html>
"""


COMMAND = Command("demo", "run the end-to-end demo on the MuJoCo twin (no hardware)", _add_arguments, _run)
