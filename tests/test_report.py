"""``wovr report``: a self-contained HTML page of a workspace's runs; rendered by headless Chromium with no
request leaving the page."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import add_inbox_dataset, make_workspace, run_wovr, smoke_config

from wovr_core.pipeline.report import build_report, write_report
from wovr_core.pipeline.retrain import retrain

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Two runs: one promoted (push pending: no server), one rejected with a quarantined dataset."""
    tmp = tmp_path_factory.mktemp("report")
    workspace, initial = make_workspace(tmp)
    first = retrain(workspace, smoke_config(initial), "smoke")
    assert first.status == "pending_push"
    add_inbox_dataset(workspace, "session-b", [10, 11])
    broken = add_inbox_dataset(workspace, "session-c", [10])
    (broken / "meta/info.json").write_text("{")
    second = retrain(workspace, smoke_config(initial, smoke={"bias_step": -1.5}), "smoke")
    assert second.status == "finished"  # rejected; the first run's push still waits
    return workspace


def _attributes(page: str) -> list[str]:
    return re.findall(r"""(?:src|href|poster|data)\s*=\s*["']([^"']*)["']""", page, flags=re.I)


def test_the_page_holds_every_section_and_references_nothing_outside(workspace):
    page = build_report(workspace)
    for title in ("Success over time", "Budget used: real trajectories", "World-model fidelity",
                  "Promotion history", "Per-task results", "Imagined vs real", "Quarantined data"):
        assert f"<h2>{title}</h2>" in page
    assert "<b>5</b> real trajectories" in page  # 3 + 2 ingested; the broken dataset never counted
    assert page.count("class='ok'>promoted") == 1 and page.count("class='bad'>rejected") == 1
    assert "session-c" in page and "info.json" in page
    assert "pick up the bowl" in page and "open the drawer" in page  # per-task tables
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 5  # 3 plots + 2 strips
    assert all(value.startswith("data:") for value in _attributes(page))
    assert not re.search(r"<(script|iframe|object|embed|link\s+rel=.?stylesheet)|@import|url\(", page, re.I)


def test_wovr_report_writes_the_page_and_refuses_a_folder_that_is_not_a_workspace(workspace, tmp_path):
    result = run_wovr("report", str(workspace))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"report: {workspace / 'report.html'}"
    assert (workspace / "report.html").read_text().startswith("<!doctype html>")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = run_wovr("report", str(empty))
    assert refused.returncode == 2 and "not a wovr retrain workspace" in refused.stderr


def test_a_run_that_stopped_half_way_still_renders(tmp_path):
    workspace, initial = make_workspace(tmp_path)
    retrain(workspace, smoke_config(initial), "smoke")
    run = next((workspace / "runs").iterdir())
    for stage in ("evaluate", "promote", "push"):
        (run / stage / "manifest.json").unlink()
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "status": "failed", "error": "evaluate: boom"}))
    page = build_report(workspace)
    assert "No run has reached evaluation yet." in page and "failed" in page and "evaluate: boom" in page


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    requested: list[str] = []

    def do_GET(self):
        self.requested.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium found (apt-get install chromium)")
def test_headless_chromium_renders_it_without_any_request_leaving_the_page(workspace, tmp_path):
    from PIL import Image

    site = tmp_path / "site"
    site.mkdir()
    write_report(workspace, site / "report.html")
    handler = type("Handler", (_RecordingHandler,), {"requested": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/report.html"
    shot, netlog = tmp_path / "shot.png", tmp_path / "net.json"
    try:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
             # Nothing may leave the machine, even if the page asked for it (the net log still shows the ask).
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             f"--user-data-dir={tmp_path / 'profile'}", f"--log-net-log={netlog}",
             f"--screenshot={shot}", "--window-size=1200,2400", url],
            capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert shot.exists(), result.stderr[-2000:]
    assert handler.requested == ["/report.html"]
    # Every request made on behalf of the page (its network isolation key is the page's site) is the page.
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    page_requests = [e["params"]["url"] for e in log["events"] if e["type"] == start_job
                     and "127.0.0.1" in e.get("params", {}).get("network_isolation_key", "")]
    assert page_requests == [url]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.02, "the screenshot looks blank"

