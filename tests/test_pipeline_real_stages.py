"""The real stages of ``wovr retrain`` end to end at test size: the world-model and reward trainers, GRPO in
imagination from a (micro, untrained) VLA, imagined evaluation with the world-model reliability check, the gate
and the push (to a server that is down). About 10 s on a CPU with the test-size models; with a short twin
evaluation (LIBERO) about 25 s, marked slow."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from pipeline_helpers import DEAD_SERVER  # noqa: E402
from vla_helpers import libero_like_stats, micro_config, single_torch_thread  # noqa: E402,F401 (autouse fixture)
from wm_helpers import TASKS, tiny_train_overrides, write_synthetic_dataset  # noqa: E402

from wovr_core.config import make_config  # noqa: E402
from wovr_core.pipeline.config import STAGE_ORDER, RetrainConfig  # noqa: E402
from wovr_core.pipeline.report import build_report  # noqa: E402
from wovr_core.pipeline.retrain import retrain  # noqa: E402
from wovr_core.pipeline.workspace import Workspace  # noqa: E402
from wovr_core.policy.vla_policy import VLAPolicy  # noqa: E402


@pytest.mark.parametrize("twin", [False, pytest.param(True, marks=[pytest.mark.slow, pytest.mark.sim])])
def test_the_real_stages_run_end_to_end_at_test_size(tmp_path, twin):
    workspace = tmp_path / "ws"
    write_synthetic_dataset(workspace / "inbox" / "session-a", n_episodes=8, length=40, size=32)
    initial = VLAPolicy.create(micro_config(use_state=False), libero_like_stats(), tasks=list(TASKS), device="cpu",
                               seed=0).save(tmp_path / "sft")
    overrides = [f"world_model.{o}" for o in tiny_train_overrides()] + [
        f"initial_policy={initial}", f"push.server_url={DEAD_SERVER}", "push.timeout_s=5",
        "reward.model.image_size=32", "reward.max_steps=4", "reward.val_every=2", "reward.batch_size=8",
        "reward.threads=1",
        "rl.updates=1", "rl.groups_per_update=2", "rl.grpo.group_size=2", "rl.env.max_steps=16",
        "evaluate.starts=2", "evaluate.rollouts_per_start=2", "evaluate.reliability_episodes=2",
        "evaluate.reliability_horizon=8", "evaluate.device=cpu", "gate.min_trials=2", "gate.min_twin_trials=1",
    ]
    if twin:  # one short episode per policy in the LIBERO twin (its own predicate), through wovr eval's API
        overrides += ["evaluate.twin=true", "evaluate.twin_eval.tasks=[0]", "evaluate.twin_eval.episodes_per_task=1",
                      "evaluate.twin_eval.max_steps=8", "evaluate.twin_eval.workers=1", "evaluate.twin_eval.videos=0"]
    config = make_config(RetrainConfig, "tiny", overrides)
    outcome = retrain(workspace, config, "tiny")
    ws = Workspace(workspace)
    assert outcome.status in ("finished", "pending_push"), outcome.message
    manifests = {s: json.loads(ws.manifest_path(outcome.run_id, s).read_text()) for s in STAGE_ORDER}
    assert (ws.abs(manifests["world_model"]["outputs"]["path"]) / "config.json").exists()
    assert (ws.abs(manifests["rl"]["outputs"]["checkpoint"]) / "model.safetensors").exists()
    evaluation = manifests["evaluate"]["outputs"]
    assert evaluation["candidate"]["imagined"]["trials"] == 4 and evaluation["incumbent"]["imagined"]["trials"] == 4
    if twin:
        assert evaluation["candidate"]["twin"]["trials"] == 1 and evaluation["incumbent"]["twin"]["trials"] == 1
        assert (ws.run_dir(outcome.run_id) / "evaluate" / "twin-candidate" / "results.json").exists()
    else:
        assert evaluation["candidate"]["twin"] is None and "no twin evaluation" in evaluation["notes"][0]
    assert evaluation["reliability"]["episodes"] == 2 and evaluation["reliability"]["psnr_db"] is not None
    assert evaluation["strip"] and ws.abs(evaluation["strip"]).exists()
    promote = manifests["promote"]["outputs"]
    assert promote["reasons"] and isinstance(promote["promote"], bool)
    assert (outcome.status == "pending_push") == promote["promote"]
    assert "Imagined vs real" in build_report(workspace)
