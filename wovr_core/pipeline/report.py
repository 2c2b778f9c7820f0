"""``wovr report``: one self-contained HTML page about a workspace's retrain history.

Everything is inline (CSS, plots as base64 PNG, imagined-vs-real strips as base64 PNG): the page opens
from a file or an e-mail attachment and makes no network request. Sections: success over time, budget
used (real episodes), world-model fidelity, promotion history, per-task results, imagined-vs-real strips,
quarantined data and stage durations. Runs that failed or are still running are shown as far as they got.
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wovr_core.errors import DataError
from wovr_core.pipeline import plots
from wovr_core.pipeline.config import STAGE_ORDER
from wovr_core.pipeline.gate import SuccessCount, wilson_interval
from wovr_core.pipeline.workspace import REASON_FILE, Workspace, read_json

MAX_STRIPS = 6
MAX_STRIP_BYTES = 4 * 1024 * 1024


@dataclass
class RunView:
    """What the report knows about one run (tolerant of missing stages)."""

    run_id: str
    status: str
    started_at: str
    error: str
    manifests: dict[str, dict] = field(default_factory=dict)

    def outputs(self, stage: str) -> dict:
        return self.manifests.get(stage, {}).get("outputs", {}) or {}


def load_runs(ws: Workspace) -> list[RunView]:
    views = []
    for run_id in ws.run_ids():
        record = read_json(ws.run_dir(run_id) / "run.json", "run record")
        view = RunView(run_id, record.get("status", "?"), record.get("started_at", ""), record.get("error", ""))
        for stage in STAGE_ORDER:
            path = ws.manifest_path(run_id, stage)
            if path.exists():
                view.manifests[stage] = read_json(path, "stage manifest")
        views.append(view)
    return views


def _count(d: dict | None) -> SuccessCount | None:
    if not d:
        return None
    return SuccessCount(int(d["successes"]), int(d["trials"]))


def _rate(count: SuccessCount | None) -> float | None:
    return count.rate if count is not None and count.trials else None


def _fmt_count(count: SuccessCount | None) -> str:
    if count is None or not count.trials:
        return "-"
    return f"{count.successes}/{count.trials} ({count.rate:.0%})"


def _esc(value) -> str:
    return html.escape(str(value))


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{b64}">'


# ---- sections ---------------------------------------------------------------------------------------------------
def _success_section(runs: list[RunView]) -> str:
    evaluated = [r for r in runs if r.outputs("evaluate")]
    if not evaluated:
        return "<p>No run has reached evaluation yet.</p>"
    labels = [r.run_id for r in evaluated]
    x = list(range(len(evaluated)))
    series, errors = {}, {}
    for who in ("candidate", "incumbent"):
        for kind in ("imagined", "twin"):
            counts = [_count(r.outputs("evaluate").get(who, {}).get(kind)) for r in evaluated]
            if any(c is not None for c in counts):
                name = f"{who} ({kind})"
                series[name] = (x, [_rate(c) for c in counts])
                if who == "candidate":
                    bounds = [wilson_interval(c) if c is not None else (math.nan, math.nan) for c in counts]
                    errors[name] = ([b[0] for b in bounds], [b[1] for b in bounds])
    promoted = [i for i, r in enumerate(evaluated) if r.outputs("promote").get("promote")]
    image = plots.line_plot(series, xlabel="run", ylabel="success rate", xticks=labels, ylim=(0, 1), errors=errors,
                            markers={"candidate (imagined)": promoted})
    return (_img(image, "success over time") + "<p class=note>Candidate vs incumbent success per run; bands are "
            "95% Wilson intervals of the candidate; circles mark promotions.</p>")


def _budget_section(runs: list[RunView]) -> str:
    ingested = [r for r in runs if r.outputs("ingest")]
    if not ingested:
        return "<p>No data ingested yet.</p>"
    labels = [r.run_id for r in ingested]
    new = [int(r.outputs("ingest").get("new_episodes", 0)) for r in ingested]
    total = [int(r.outputs("ingest").get("total_episodes", 0)) for r in ingested]
    image = plots.bar_line_plot(labels, new, total, bar_label="new real episodes", line_label="real episodes in all",
                                ylabel="episodes")
    return (f"<p><b>{total[-1]}</b> real trajectories used so far ({sum(new)} ingested by these runs).</p>"
            + _img(image, "real-episode budget"))


def _fidelity_section(runs: list[RunView]) -> str:
    evaluated = [r for r in runs if r.outputs("evaluate")]
    curves = {r.run_id: r.outputs("evaluate").get("psnr_curve") or [] for r in evaluated}
    curves = {k: v for k, v in curves.items() if v}
    parts = []
    if curves:
        series = {run_id: (list(range(1, len(c) + 1)), [v if math.isfinite(v) else None for v in c])
                  for run_id, c in list(curves.items())[-len(plots.COLORS):]}
        parts.append(_img(plots.line_plot(series, xlabel="imagined frame (open loop)", ylabel="PSNR (dB)"),
                          "world-model fidelity"))
    rows = []
    for r in evaluated:
        rel = r.outputs("evaluate").get("reliability", {})
        psnr = rel.get("psnr_db")
        agree = rel.get("reward_agreement")
        rows.append(f"<tr><td>{_esc(r.run_id)}</td><td>{rel.get('episodes', 0)}</td><td>{rel.get('horizon', '')}</td>"
                    f"<td>{'-' if psnr is None else f'{psnr:.2f}'}</td>"
                    f"<td>{'-' if agree is None else f'{agree:.3f}'}</td></tr>")
    if rows:
        parts.append("<table><tr><th>run</th><th>real episodes checked</th><th>horizon (frames)</th>"
                     "<th>PSNR (dB)</th><th>reward agreement</th></tr>" + "".join(rows) + "</table>")
    return "".join(parts) or "<p>No world-model evaluation yet.</p>"


def _history_section(runs: list[RunView]) -> str:
    rows = []
    for r in reversed(runs):
        ev, promote, push = r.outputs("evaluate"), r.outputs("promote"), r.outputs("push")
        decision = "-" if not promote else ("promoted" if promote.get("promote") else "rejected")
        checks = promote.get("checks", [])
        failed = [c for c in checks if not c.get("passed")]
        reasons = _check_list(failed) if failed else ("<span class=ok>all checks passed</span>" if checks else "")
        if checks:
            reasons += f"<details><summary>all {len(checks)} checks</summary>{_check_list(checks)}</details>"
        push_text = f"{push.get('status', '-')}" + (f": {push.get('detail')}" if push.get("detail") else "")
        css = {"promoted": "ok", "rejected": "bad"}.get(decision, "")
        rows.append(
            f"<tr><td>{_esc(r.run_id)}</td><td>{_esc(r.status)}"
            f"{f'<br><span class=note>{_esc(r.error)}</span>' if r.error else ''}</td>"
            f"<td>{r.outputs('ingest').get('new_episodes', '-')}</td>"
            f"<td>{_fmt_count(_count(ev.get('candidate', {}).get('imagined')))}</td>"
            f"<td>{_fmt_count(_count(ev.get('incumbent', {}).get('imagined')))}</td>"
            f"<td>{_fmt_count(_count(ev.get('candidate', {}).get('twin')))}</td>"
            f"<td>{_fmt_count(_count(ev.get('incumbent', {}).get('twin')))}</td>"
            f"<td class='{css}'>{decision}</td><td class=small>{reasons}</td><td class=small>{_esc(push_text)}</td></tr>")
    if not rows:
        return "<p>No runs yet.</p>"
    return ("<table><tr><th>run</th><th>status</th><th>new episodes</th><th>candidate imagined</th>"
            "<th>incumbent imagined</th><th>candidate twin</th><th>incumbent twin</th><th>decision</th>"
            "<th>reasons</th><th>push</th></tr>" + "".join(rows) + "</table>")


def _check_list(checks: list[dict]) -> str:
    items = "".join(f"<li class='{'ok' if c.get('passed') else 'bad'}'>{'&#10003;' if c.get('passed') else '&#10007;'} "
                    f"<span>{_esc(c.get('detail', ''))}</span></li>" for c in checks)
    return f"<ul class=checks>{items}</ul>"


def _per_task_section(runs: list[RunView]) -> str:
    parts = []
    for k, r in enumerate(reversed([r for r in runs if r.outputs("evaluate")])):
        ev = r.outputs("evaluate")
        candidate, incumbent = ev.get("candidate", {}).get("per_task", {}), ev.get("incumbent", {}).get("per_task", {})
        tasks = sorted(set(candidate) | set(incumbent))
        if not tasks:
            continue

        def cell(table: dict, task: str, kind: str) -> str:
            value = table.get(task, {}).get(kind)
            return _fmt_count(SuccessCount(int(value[0]), int(value[1]))) if value else "-"

        rows = "".join(f"<tr><td>{_esc(t)}</td><td>{cell(candidate, t, 'imagined')}</td>"
                       f"<td>{cell(incumbent, t, 'imagined')}</td><td>{cell(candidate, t, 'twin')}</td>"
                       f"<td>{cell(incumbent, t, 'twin')}</td></tr>" for t in tasks)
        table = ("<table><tr><th>task</th><th>candidate imagined</th><th>incumbent imagined</th>"
                 f"<th>candidate twin</th><th>incumbent twin</th></tr>{rows}</table>")
        parts.append(f"<details{' open' if k == 0 else ''}><summary>run {_esc(r.run_id)}</summary>{table}</details>")
    return "".join(parts) or "<p>No per-task results yet.</p>"


def _strips_section(ws: Workspace, runs: list[RunView]) -> str:
    parts = []
    for r in reversed(runs):
        strip = r.outputs("evaluate").get("strip")
        if not strip or len(parts) >= MAX_STRIPS:
            continue
        path = ws.abs(strip)
        if not path.is_file() or path.stat().st_size > MAX_STRIP_BYTES:
            parts.append(f"<p>run {_esc(r.run_id)}: strip {_esc(strip)} missing or too large to inline</p>")
            continue
        b64 = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<figure>{_img(b64, 'imagined vs real ' + r.run_id)}<figcaption>run {_esc(r.run_id)}: "
                     "per episode, real frames (top) and imagined frames (bottom) from the same start and "
                     "actions</figcaption></figure>")
    return "".join(parts) or "<p>No imagined-vs-real strips yet.</p>"


def _quarantine_section(ws: Workspace) -> str:
    rows = []
    for path in sorted(ws.quarantine.glob(f"*/{REASON_FILE}")) if ws.quarantine.is_dir() else []:
        try:
            reason = read_json(path, "quarantine reason")
        except DataError as e:
            rows.append(f"<tr><td>{_esc(path.parent.name)}</td><td colspan=3>{_esc(e)}</td></tr>")
            continue
        bad = reason.get("bad_episodes", {})
        why = "; ".join(reason.get("errors", [])) or "; ".join(f"episode {i}: {'; '.join(v)}" for i, v in bad.items())
        rows.append(f"<tr><td>{_esc(path.parent.name)}</td><td>{_esc(reason.get('run_id', ''))}</td>"
                    f"<td class=small>{_esc(why)}</td><td>{_esc(reason.get('salvaged_to') or '-')}</td></tr>")
    if not rows:
        return "<p>Nothing quarantined.</p>"
    return ("<table><tr><th>dataset</th><th>run</th><th>why</th><th>valid episodes copied to</th></tr>"
            + "".join(rows) + "</table>")


def _durations_section(runs: list[RunView]) -> str:
    head = "".join(f"<th>{s}</th>" for s in STAGE_ORDER)
    rows = []
    for r in reversed(runs):
        cells = "".join(f"<td>{r.manifests[s]['duration_s']:.1f}</td>" if s in r.manifests else "<td>-</td>"
                        for s in STAGE_ORDER)
        rows.append(f"<tr><td>{_esc(r.run_id)}</td>{cells}</tr>")
    return f"<table><tr><th>run</th>{head}</tr>{''.join(rows)}</table>" if rows else ""


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0} td,th{padding:3px 8px;border-bottom:1px solid #e3e3e3;text-align:left;
vertical-align:top} th{background:#f4f4f4} .ok{color:#176317;font-weight:bold} .bad{color:#a31515;font-weight:bold}
.small{font-size:.85em} .note{color:#666;font-size:.9em} img{max-width:100%;image-rendering:pixelated}
.facts td:first-child{color:#555} td.small{min-width:22em;max-width:36em}
ul.checks{margin:0;padding-left:1em;list-style:none} ul.checks li{font-weight:normal} ul.checks span{color:#222}
"""


def build_report(workspace: str | Path, preface: Sequence[tuple[str, str]] = ()) -> str:
    """The HTML page for ``workspace`` (raises DataError if it is not a retrain workspace); ``preface``:
    (title, HTML) sections placed first (``wovr demo`` puts its summary there)."""
    ws = Workspace(workspace)
    if not ws.runs.is_dir() and not ws.state_path.exists():
        raise DataError(f"{ws.root}: not a wovr retrain workspace (no runs/ and no state.json)")
    runs = load_runs(ws)
    state = ws.load_state()
    deployed = state.deployed.checkpoint_id if state.deployed else "none on record"
    pending = state.pending_push.checkpoint_id if state.pending_push else "none"
    facts = "".join(f"<tr><td>{k}</td><td>{_esc(v)}</td></tr>" for k, v in (
        ("workspace", ws.root), ("deployed policy", deployed), ("waiting to be pushed", pending),
        ("world model", state.world_model or "none yet"), ("reward model", state.reward_model or "none yet"),
        ("runs", f"{len(runs)} ({sum(r.status == 'finished' for r in runs)} finished)"),
        ("generated", time.strftime("%Y-%m-%d %H:%M:%S %Z"))))
    sections = [
        *preface,
        ("Success over time", _success_section(runs)),
        ("Budget used: real trajectories", _budget_section(runs)),
        ("World-model fidelity", _fidelity_section(runs)),
        ("Promotion history", _history_section(runs)),
        ("Per-task results", _per_task_section(runs)),
        ("Imagined vs real", _strips_section(ws, runs)),
        ("Quarantined data", _quarantine_section(ws)),
        ("Stage durations (s)", _durations_section(runs)),
    ]
    body = "".join(f"<h2>{title}</h2>{content}" for title, content in sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>WoVR retrain report</title>'
            f'<link rel="icon" href="data:,"><style>{STYLE}</style></head><body>'
            f"<h1>WoVR retrain report</h1><table class=facts>{facts}</table>{body}</body></html>\n")


def write_report(workspace: str | Path, out: str | Path | None = None,
                 preface: Sequence[tuple[str, str]] = ()) -> Path:
    """Write the page (atomically) to ``out`` or ``<workspace>/report.html``; returns the path."""
    page = build_report(workspace, preface)
    path = Path(out).expanduser() if out else Workspace(workspace).root / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
