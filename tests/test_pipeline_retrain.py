"""``wovr retrain`` over a real workspace with the smoke stages: manifests, quarantine, idempotence, the lock,
and resuming a run killed with SIGKILL in the middle of a stage."""

from __future__ import annotations

import json
import signal
import time

import pytest
from pipeline_helpers import (
    add_inbox_dataset,
    make_workspace,
    run_wovr,
    smoke_config,
    smoke_overrides,
    start_wovr,
    write_config_file,
)

from wovr_core.data import EpisodeDataset
from wovr_core.errors import WovrError
from wovr_core.pipeline.config import STAGE_ORDER
from wovr_core.pipeline.lock import LockHeld, WorkspaceLock
from wovr_core.pipeline.manifest import sha256_path
from wovr_core.pipeline.retrain import NOTHING_TO_DO, abandon, retrain
from wovr_core.pipeline.stages import STAGES
from wovr_core.pipeline.workspace import Workspace


def _manifest(ws: Workspace, run_id: str, stage: str) -> dict:
    return json.loads(ws.manifest_path(run_id, stage).read_text())


def _snapshot(ws: Workspace) -> dict:
    """Every file under runs/ and state.json: bytes and mtime (what "does nothing" must leave alone)."""
    files = [*ws.runs.rglob("*"), ws.state_path]
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in files if p.is_file()}


def test_a_run_writes_a_manifest_per_stage_and_promotes_a_better_candidate(tmp_path):
    workspace, initial = make_workspace(tmp_path)
    outcome = retrain(workspace, smoke_config(initial), "smoke")
    ws = Workspace(workspace)
    assert outcome.status == "pending_push" and "promoted" in outcome.message  # no server: push waits
    run_id = outcome.run_id
    assert (ws.run_dir(run_id) / "config.json").exists()
    for stage in STAGE_ORDER:
        m = _manifest(ws, run_id, stage)
        assert m["stage"] == stage and m["run_id"] == run_id and m["attempts"] == 1 and m["duration_s"] >= 0
        assert m["status"] == ("pending_push" if stage == "push" else "done")
        assert m["config"], stage
    ingest = _manifest(ws, run_id, "ingest")
    assert ingest["outputs"]["new_episodes"] == 3 and ingest["outputs"]["new_datasets"] == ["data/real/session-a"]
    assert ingest["inputs"] == {"data/real/session-a": sha256_path(ws.real_data / "session-a")}
    assert not (workspace / "inbox" / "session-a").exists()
    promote = _manifest(ws, run_id, "promote")["outputs"]
    assert promote["promote"] is True and any("lower bound" in r for r in promote["reasons"])
    state = ws.load_state()
    assert state.deployed.checkpoint == "registry/sft"
    assert state.pending_push.checkpoint == f"registry/policy-{run_id}" and state.pending_push.run_id == run_id
    assert (ws.registry / f"policy-{run_id}" / "config.json").exists()
    push = _manifest(ws, run_id, "push")["outputs"]
    assert push["status"] == "pending_push" and "refused" in push["detail"]


def test_a_waiting_push_is_retried_first_and_a_later_promotion_supersedes_it(tmp_path):
    workspace, initial = make_workspace(tmp_path)
    ws = Workspace(workspace)
    first = retrain(workspace, smoke_config(initial), "smoke")
    assert first.status == "pending_push"
    # A rejected candidate pushes nothing; the first run's checkpoint keeps waiting.
    add_inbox_dataset(workspace, "session-b", [10, 11])
    second = retrain(workspace, smoke_config(initial, smoke={"bias_step": -3.0}), "smoke")
    assert second.status == "finished" and ws.load_run(first.run_id).status == "pending_push"
    push = _manifest(ws, second.run_id, "push")["outputs"]
    assert push["status"] == "nothing_to_push" and f"run {first.run_id} still waits" in push["detail"]
    assert len(_manifest(ws, first.run_id, "push")["outputs"]["attempts"]) == 2  # retried by the second call
    # A better candidate (from the waiting one, the incumbent) replaces it in the queue.
    add_inbox_dataset(workspace, "session-c", [10, 11])
    third = retrain(workspace, smoke_config(initial, smoke={"bias_step": 3.0, "trials": 200, "twin_trials": 200}), "smoke")
    assert third.status == "pending_push"
    rl = _manifest(ws, third.run_id, "rl")["outputs"]
    assert rl["parent"]["run_id"] == first.run_id  # RL started from the promoted, not yet deployed policy
    state = ws.load_state()
    assert state.pending_push.run_id == third.run_id and state.deployed.checkpoint == "registry/sft"
    first_record = ws.load_run(first.run_id)
    assert first_record.status == "finished" and f"superseded by run {third.run_id}" in first_record.error
    assert (ws.registry / f"policy-{first.run_id}").is_dir() and (ws.registry / f"policy-{third.run_id}").is_dir()


def test_a_worse_candidate_is_rejected_and_the_deployed_policy_stays(tmp_path):
    workspace, initial = make_workspace(tmp_path)
    outcome = retrain(workspace, smoke_config(initial, smoke={"bias_step": -1.5}), "smoke")
    ws = Workspace(workspace)
    assert outcome.status == "finished"
    promote = _manifest(ws, outcome.run_id, "promote")["outputs"]
    assert promote["promote"] is False and any("<=" in r for r in promote["reasons"])
    assert _manifest(ws, outcome.run_id, "push")["outputs"]["status"] == "nothing_to_push"
    state = ws.load_state()
    assert state.pending_push is None and state.deployed.checkpoint == "registry/sft"
    assert not (ws.registry / f"policy-{outcome.run_id}").exists()


def test_rerunning_a_finished_run_does_nothing(tmp_path):
    workspace, initial = make_workspace(tmp_path)
    config = smoke_config(initial, smoke={"bias_step": -1.5})
    first = retrain(workspace, config, "smoke")
    assert first.status == "finished"
    ws = Workspace(workspace)
    before = _snapshot(ws)
    (workspace / "inbox" / "session-next").mkdir()  # made ahead of the next session: nothing to ingest yet
    again = retrain(workspace, config, "smoke")
    assert again.status == NOTHING_TO_DO and "no run started" in again.message
    by_id = retrain(workspace, config, "smoke", run_id=first.run_id)
    assert by_id.status == NOTHING_TO_DO and "finished" in by_id.message
    assert ws.run_ids() == [first.run_id]
    assert _snapshot(ws) == before
    # New data makes the next invocation a new run, which trains on the old and the new episodes (PACE).
    add_inbox_dataset(workspace, "session-b", [10, 11])
    second = retrain(workspace, config, "smoke")
    assert second.run_id != first.run_id
    assert _manifest(ws, second.run_id, "ingest")["outputs"]["new_episodes"] == 2
    assert _manifest(ws, second.run_id, "world_model")["metrics"]["episodes"] == 5


def test_corrupt_episodes_are_quarantined_with_a_reason_and_never_used(tmp_path):
    workspace, initial = make_workspace(tmp_path, lengths=(12,))
    mixed = add_inbox_dataset(workspace, "session-b", [10, 11, 13], episodes_per_file=1)
    bad_file = mixed / "data/chunk-000/file-001.parquet"
    bad_file.write_bytes(bad_file.read_bytes()[:100])  # episode 1 truncated
    broken = add_inbox_dataset(workspace, "session-c", [10])
    (broken / "meta/info.json").write_text("{not json")
    outcome = retrain(workspace, smoke_config(initial), "smoke")
    ws = Workspace(workspace)
    ingest = _manifest(ws, outcome.run_id, "ingest")["outputs"]
    assert not any((workspace / "inbox").iterdir())
    # Partly corrupt: the original goes to quarantine with the reason; its valid episodes are copied.
    reason = json.loads((ws.quarantine / "session-b" / "reason.json").read_text())
    assert list(reason["bad_episodes"]) == ["1"] and "file-001.parquet" in reason["bad_episodes"]["1"][0]
    assert reason["salvaged_episodes"] == [0, 2] and reason["run_id"] == outcome.run_id
    salvaged = EpisodeDataset(ws.real_data / "session-b")
    assert [e.length for e in salvaged.episodes] == [10, 13]
    assert [e.extra["original_episode_index"] for e in salvaged.episodes] == [0, 2]
    # Unusable as a whole: quarantined, nothing copied.
    reason_c = json.loads((ws.quarantine / "session-c" / "reason.json").read_text())
    assert reason_c["errors"] and "info.json" in reason_c["errors"][0] and reason_c["salvaged_to"] is None
    assert sorted(q["dataset"] for q in ingest["quarantined"]) == ["session-b", "session-c"]
    assert sorted(ingest["datasets"]) == ["data/real/session-a", "data/real/session-b"]
    # The training stages saw only valid episodes: 1 + 2.
    assert _manifest(ws, outcome.run_id, "world_model")["metrics"]["episodes"] == 3
    assert not any("quarantine" in k for k in _manifest(ws, outcome.run_id, "world_model")["inputs"])


def test_a_dataset_still_being_recorded_waits_for_the_next_run(tmp_path):
    from wovr_core.data import DatasetLock

    workspace, initial = make_workspace(tmp_path)
    recording = add_inbox_dataset(workspace, "session-live", [10])
    with DatasetLock(recording):  # a recorder still has it open
        outcome = retrain(workspace, smoke_config(initial), "smoke")
    ws = Workspace(workspace)
    ingest = _manifest(ws, outcome.run_id, "ingest")["outputs"]
    assert [w["dataset"] for w in ingest["waiting"]] == ["session-live"] and recording.exists()
    assert ingest["new_datasets"] == ["data/real/session-a"]


def test_an_unavailable_stage_fails_clearly_and_the_run_resumes_there(tmp_path):
    workspace, initial = make_workspace(tmp_path)
    STAGES.register("reward.unavailable", "wovr_core.pipeline.no_such_trainer:train")
    ws = Workspace(workspace)
    try:
        config = smoke_config(initial, stages={"reward": "unavailable"})
        with pytest.raises(WovrError, match="stage reward.*'unavailable' is not available here.*resumes at this stage"):
            retrain(workspace, config, "smoke")
        run_id = ws.run_ids()[-1]
        record = ws.load_run(run_id)
        assert record.status == "failed" and record.current_stage == "reward" and "no_such_trainer" in record.error
        ingest_before = ws.manifest_path(run_id, "ingest").read_bytes()
        # The next invocation resumes that run with its saved config (which still names the missing trainer).
        with pytest.raises(WovrError, match="not available"):
            retrain(workspace, smoke_config(initial), "smoke")
    finally:
        STAGES._entries.pop("reward.unavailable")
    assert ws.load_run(run_id).stages["reward"]["attempts"] == 2
    assert ws.manifest_path(run_id, "ingest").read_bytes() == ingest_before
    # The operator gives up on it: the next invocation starts a new run instead of resuming.
    assert abandon(workspace).status == "abandoned" and ws.load_run(run_id).status == "abandoned"
    add_inbox_dataset(workspace, "session-b", [10, 11])
    fresh = retrain(workspace, smoke_config(initial), "smoke")
    assert fresh.run_id != run_id and fresh.status == "pending_push"


def test_a_second_run_is_refused_naming_the_holder(tmp_path):
    workspace, initial = make_workspace(tmp_path, lengths=(10, 10, 10, 10))
    config = write_config_file(tmp_path / "retrain.yaml", smoke_overrides(initial, smoke={
        "bias_step": 1.5, "seconds_per_episode": 1.0}))
    first = start_wovr("retrain", "--workspace", str(workspace), "--preset", "smoke", "--config", str(config))
    try:
        _wait_for(lambda: (workspace / "runs").is_dir() and any((workspace / "runs").glob("*/world_model/progress.json")),
                  first)
        second = run_wovr("retrain", "--workspace", str(workspace), "--preset", "smoke", "--config", str(config))
        assert second.returncode == 75, second.stderr
        assert f"pid {first.pid}" in second.stdout and "retrain.lock" in second.stdout
        with pytest.raises(LockHeld, match=f"pid {first.pid}"):
            retrain(workspace, smoke_config(initial), "smoke")
    finally:
        first.kill()
        first.wait()


def test_a_run_killed_mid_stage_resumes_at_that_stage(tmp_path):
    workspace, initial = make_workspace(tmp_path, lengths=(10, 10, 10, 10, 10))
    config = write_config_file(tmp_path / "retrain.yaml", smoke_overrides(initial, smoke={
        "bias_step": 1.5, "seconds_per_episode": 0.5}))
    args = ("retrain", "--workspace", str(workspace), "--preset", "smoke", "--config", str(config))
    proc = start_wovr(*args)
    progress = None
    try:
        def in_world_model():
            nonlocal progress
            progress = next((workspace / "runs").glob("*/world_model/progress.json"), None) \
                if (workspace / "runs").is_dir() else None
            return progress is not None
        _wait_for(in_world_model, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
    ws = Workspace(workspace)
    run_id = progress.parts[-3]
    record = ws.load_run(run_id)
    assert record.status == "running" and record.current_stage == "world_model"  # as the kill left it
    assert not ws.manifest_path(run_id, "world_model").exists()
    ingest_path = ws.manifest_path(run_id, "ingest")
    ingest_before = (ingest_path.read_bytes(), ingest_path.stat().st_mtime_ns)

    resumed = run_wovr(*args)
    assert resumed.returncode == 3, resumed.stderr  # finished, push pending (no server)
    assert f"resuming run {run_id}" in resumed.stderr and "ingest: done earlier" in resumed.stderr
    assert ws.run_ids() == [run_id]
    assert (ingest_path.read_bytes(), ingest_path.stat().st_mtime_ns) == ingest_before
    world_model = _manifest(ws, run_id, "world_model")
    assert world_model["attempts"] == 2 and world_model["metrics"]["resumed_from_episode"] >= 1
    assert world_model["metrics"]["episodes"] == 5
    assert ws.load_run(run_id).status == "pending_push"
    assert "retrain.log" in [p.name for p in ws.logs.iterdir()]
    assert f"run {run_id} started" in (ws.logs / "retrain.log").read_text()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "retrain.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # An orphaned child still holds the flock, but the owner it records is dead: the lock is replaced.
    holder = subprocess.Popen([sys.executable, "-c", f"""
import fcntl, json, os, socket, sys, time
fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({{"pid": {dead.pid}, "host": socket.gethostname()}}).encode())
print("held", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with WorkspaceLock(path) as lock:
            assert lock.held and json.loads(path.read_text())["pid"] != dead.pid
    finally:
        holder.kill()
        holder.wait()
    # A live holder is refused, and the message names it.
    with WorkspaceLock(path, {"run_id": "r1"}):
        other = subprocess.run([sys.executable, "-c", f"""
from wovr_core.pipeline.lock import WorkspaceLock, LockHeld
try:
    WorkspaceLock({str(path)!r}).acquire()
except LockHeld as e:
    print(e)
"""], capture_output=True, text=True, timeout=60)
    import os

    assert f"pid {os.getpid()}" in other.stdout and "run r1" in other.stdout


def _wait_for(condition, proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"wovr retrain exited with {proc.returncode}:\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the run to reach the world-model stage")
        time.sleep(0.05)
