"""Push to a real ``wovr serve`` on 127.0.0.1: activation with the token, a server that is down (the
checkpoint waits in registry/, status pending_push) and the retry by the next invocation."""

from __future__ import annotations

import json

from pipeline_helpers import make_workspace, run_wovr, smoke_overrides, write_config_file
from server_harness import TOKEN, running_server

from wovr_core.pipeline.workspace import Workspace


def _args(workspace, config) -> tuple[str, ...]:
    return ("retrain", "--workspace", str(workspace), "--preset", "smoke", "--config", str(config))


def test_a_promoted_checkpoint_is_activated_on_the_server(tmp_path):
    workspace, initial = make_workspace(tmp_path)
    with running_server(initial, tmp_path / "server") as server:
        config = write_config_file(tmp_path / "retrain.yaml", smoke_overrides(initial, push={"server_url": server.url}))
        result = run_wovr(*_args(workspace, config), WOVR_API_TOKEN=TOKEN)
        assert result.returncode == 0, result.stderr
        ws = Workspace(workspace)
        state = ws.load_state()
        assert state.pending_push is None and state.deployed.run_id == ws.run_ids()[-1]
        active = server.http().checkpoints()["active"]
        assert active["checkpoint_id"] == state.deployed.checkpoint_id
        assert active["path"] == str(ws.abs(state.deployed.checkpoint))
        push = json.loads(ws.manifest_path(ws.run_ids()[-1], "push").read_text())
        assert push["status"] == "done" and push["outputs"]["status"] == "pushed"
        assert ws.load_run(ws.run_ids()[-1]).status == "finished"


def test_a_push_to_a_server_that_is_down_waits_and_the_next_run_retries_it(tmp_path):
    workspace, initial = make_workspace(tmp_path)
    ws = Workspace(workspace)
    with running_server(initial, tmp_path / "server") as server:
        url = server.url
    # The server is gone: the run promotes, keeps the checkpoint in registry/ and says the push is pending.
    config = write_config_file(tmp_path / "retrain.yaml", smoke_overrides(initial, push={"server_url": url}))
    down = run_wovr(*_args(workspace, config), WOVR_API_TOKEN=TOKEN)
    assert down.returncode == 3, down.stderr
    run_id = ws.run_ids()[-1]
    pending = ws.load_state().pending_push
    assert ws.load_run(run_id).status == "pending_push" and pending.run_id == run_id
    assert (ws.abs(pending.checkpoint) / "config.json").exists()
    assert "pending_push" in down.stdout and "cannot reach" in down.stdout

    # Back up on the same port, but our token is wrong: refused, still pending, and the message says why.
    port = int(url.rsplit(":", 1)[1])
    with running_server(initial, tmp_path / "server", port=port) as server:
        refused = run_wovr(*_args(workspace, config), WOVR_API_TOKEN="not-the-token")
        assert refused.returncode == 3, refused.stderr
        assert "401" in refused.stdout and "WOVR_API_TOKEN" in refused.stdout
        assert server.http().checkpoints()["active"]["checkpoint_id"] != pending.checkpoint_id

        # With the token: the next invocation retries the push before looking for new data.
        retried = run_wovr(*_args(workspace, config), WOVR_API_TOKEN=TOKEN)
        assert retried.returncode == 0, retried.stderr
        assert "now serves" in retried.stdout and "no run started" in retried.stdout
        assert server.http().checkpoints()["active"]["checkpoint_id"] == pending.checkpoint_id
    assert ws.run_ids() == [run_id]
    state = ws.load_state()
    assert state.pending_push is None and state.deployed == pending
    assert ws.load_run(run_id).status == "finished"
    push = json.loads(ws.manifest_path(run_id, "push").read_text())["outputs"]
    assert push["status"] == "pushed" and [a["ok"] for a in push["attempts"]] == [False, False, True]
