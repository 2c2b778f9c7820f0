"""``wovr demo``: the whole WoVR loop on the MuJoCo twin, with no hardware and the ``tiny`` models.

Stages, each recorded in ``<workspace>/stages.json`` when it finishes (a rerun skips finished stages; the
interrupted one resumes where its trainer can, see :class:`~wovr_core.pipeline.stage_cache.StageCache`):

1. ``demos``    noise-injected scripted demonstrations of a few LIBERO tasks (what teleoperation gives)
2. ``sft``      ``wovr train-policy``: the base VLA, trained from scratch on the successful demonstrations
3. ``robot``    twin episodes of the base policy, recorded as the robot records its runs (source ``policy``,
                LIBERO's predicate as the success label) into the retrain workspace's inbox
4. (serve)      ``wovr serve`` on 127.0.0.1 (free port, random API token) with the deployed checkpoint; it
                runs for the rest of the invocation, like the robot's server
5. ``retrain``  ``wovr retrain`` over ``<workspace>/retrain``: ingest -> world model on demos + robot data
                -> reward model -> masked GRPO in imagination from the deployed policy -> evaluate both
                policies (imagined, and in the twin with LIBERO's predicate) -> promotion gate -> push to
                the server of step 4
6. ``client``   whatever the server serves now, run in the twin through the WebSocket client
7. ``report``   ``wovr report`` of the retrain workspace with this loop's summary on top

``<workspace>/summary.json`` holds the figures: base vs post-RL success in the twin, the gate's decision,
the served checkpoint's success through the client, minutes per stage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from wovr_core.config import ConfigError, make_config, to_dict
from wovr_core.errors import DataError
from wovr_core.pipeline.config import RetrainConfig
from wovr_core.pipeline.push import API_TOKEN_ENV
from wovr_core.pipeline.stage_cache import StageCache
from wovr_core.pipeline.workspace import Workspace
from wovr_core.registry import Registry
from wovr_core.sim.experts import ExpertConfig
from wovr_core.train.policy_config import PolicyTrainConfig

log = logging.getLogger(__name__)

# wovr_core never imports the server package: its process wrapper and client are named here, resolved when
# the demo runs (like hardware drivers and the push client).
SERVING: Registry[Any] = Registry("policy serving part")
SERVING.register("process", "policy_server.process:ServerProcess")
SERVING.register("client", "policy_server.client:PolicyClient")

CONFIG_FILE = "demo_config.json"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"


def _policy_defaults() -> PolicyTrainConfig:
    # One torch thread: the trainer shares two cores with nothing else, and a second intra-op thread mostly
    # spin-waits at this model size (see benchmarks/base_policy.py).
    return make_config(PolicyTrainConfig, "tiny", {"max_steps": 1200, "val_every": 300, "checkpoint_every": 300,
                                                   "threads": 1})


def _retrain_defaults() -> RetrainConfig:
    return make_config(RetrainConfig, "tiny", {
        "world_model": {"model": {"image_size": 64}, "ae_max_steps": 500, "ae_val_every": 250, "max_steps": 3000,
                        "val_every": 500, "checkpoint_every": 250, "val_clips": 16, "val_rollout_frames": 16,
                        "log_images_every": 500},
        "reward": {"model": {"image_size": 64}, "max_steps": 400, "val_every": 100},
        "rl": {"updates": 4, "groups_per_update": 4, "grpo": {"group_size": 4}, "env": {"max_steps": 128}},
        "evaluate": {"starts": 8, "rollouts_per_start": 4, "reliability_episodes": 4, "reliability_horizon": 32,
                     "twin": True, "twin_eval": {"episodes_per_task": 5, "videos": 2, "workers": 2}},
        "gate": {"min_trials": 32, "min_twin_trials": 10},
    })


# Every stage at toy size (one task, a few steps): checks the plumbing in a few minutes; the numbers mean nothing.
_SMOKE = {
    "tasks": [0], "demos_per_task": 4, "robot_rollouts_per_task": 3, "client_episodes_per_task": 1,
    "max_episode_steps": 40,
    "policy": {"max_steps": 20, "batch_size": 4, "val_every": 10, "checkpoint_every": 10, "optim": {"warmup_steps": 2}},
    "retrain": {
        "world_model": {"model": {"image_size": 32, "codec": {"frame_ae": {
                            "block_channels": [8, 16], "decoder_block_channels": [8, 16], "latent_channels": 4,
                            "mid_blocks": 0, "decoder_mid_blocks": 0}},
                                  "denoiser": {"transformer": {"patch_size": [1, 2, 2], "num_attention_heads": 2,
                                                               "attention_head_dim": 16, "ffn_dim": 64, "num_layers": 1,
                                                               "freq_dim": 32, "rope_max_seq_len": 32},
                                               "action_hidden": 32, "action_token_dim": 16}},
                        "batch_size": 4, "ae_batch_size": 8, "ae_max_steps": 3, "max_steps": 3, "ae_val_every": 2,
                        "val_every": 2, "checkpoint_every": 2, "val_clips": 4, "val_rollout_frames": 8,
                        "log_images_every": 2, "warmup_steps": 1, "val_fraction": 0.34},
        "reward": {"model": {"image_size": 32}, "max_steps": 4, "val_every": 2, "batch_size": 8},
        "rl": {"updates": 1, "groups_per_update": 1, "grpo": {"group_size": 2}, "env": {"max_steps": 16}},
        "evaluate": {"starts": 2, "rollouts_per_start": 2, "reliability_episodes": 2, "reliability_horizon": 8,
                     "twin_eval": {"episodes_per_task": 1, "videos": 0, "workers": 1}},
        "gate": {"min_trials": 4, "min_twin_trials": 1},
    },
}


@dataclass
class DemoConfig:
    """Sizes of the demo loop. ``tiny`` (default) fits in 30 minutes on a 2-core CPU; ``smoke`` is for tests."""

    PRESETS: ClassVar[dict] = {"tiny": {}, "smoke": _SMOKE}

    suite: str = "libero_object"
    tasks: tuple[int, ...] = (0, 1)
    demos_per_task: int = 8
    expert: ExpertConfig = field(default_factory=lambda: make_config(ExpertConfig, "noisy"))
    # The robot's logged runs of the base policy (what the nightly retrain ingests); they start from LIBERO
    # init states after the evaluation's, so the twin evaluation never scores an episode the models saw.
    robot_rollouts_per_task: int = 6
    client_episodes_per_task: int = 2  # the served policy through the client, from init states 0..
    max_episode_steps: int = 0  # twin step limit of every episode; 0: the suite's own
    workers: int = 2  # twin processes
    seed: int = 0
    policy: PolicyTrainConfig = field(default_factory=_policy_defaults)
    retrain: RetrainConfig = field(default_factory=_retrain_defaults)

    def validate(self) -> None:
        if not self.tasks:
            raise ConfigError("demo: name the tasks to run (tasks=[0,1])")
        if min(self.demos_per_task, self.robot_rollouts_per_task, self.client_episodes_per_task, self.workers) < 1:
            raise ConfigError("demo: demos_per_task, robot_rollouts_per_task, client_episodes_per_task and workers "
                              "must be >= 1")


class DemoLoop:
    """One ``wovr demo`` workspace: the stages above, resumable."""

    def __init__(self, config: DemoConfig, workspace: str | Path, preset: str = "tiny"):
        self.config = config
        self.preset = preset
        self.root = Path(workspace).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_config()
        self.stages = StageCache(self.root)
        self.retrain_ws = self.root / "retrain"
        self.started = time.time()

    # ---- set-up -------------------------------------------------------------------------------------------
    def _check_config(self) -> None:
        """A workspace keeps the config it started with: a rerun with other sizes would mix stale stages."""
        path = self.root / CONFIG_FILE
        mine = {"preset": self.preset, "config": to_dict(self.config)}
        if path.exists():
            saved = json.loads(path.read_text())
            if saved != json.loads(json.dumps(mine)):
                raise ConfigError(f"{self.root} holds a demo run with other settings (see {path}); use --fresh to "
                                  f"start over there, or another --workspace")
        else:
            path.write_text(json.dumps(mine, indent=2) + "\n")

    def _eval_config(self, episodes: int, first: int, **kw):
        from wovr_core.policy.evaluate import EvalConfig

        return EvalConfig(suite=self.config.suite, tasks=tuple(self.config.tasks), episodes_per_task=episodes,
                          first_init_state=first, max_steps=self.config.max_episode_steps, seed=self.config.seed,
                          **kw)

    def _retrain_config(self, server_url: str) -> RetrainConfig:
        cfg = self.config.retrain
        twin_eval = dataclasses.replace(cfg.evaluate.twin_eval, suite=self.config.suite,
                                        tasks=tuple(self.config.tasks), first_init_state=0,
                                        max_steps=self.config.max_episode_steps, seed=self.config.seed)
        return dataclasses.replace(
            cfg, initial_policy=str(self.root / "sft" / "policy"), base_data=[str(self.root / "demos")],
            evaluate=dataclasses.replace(cfg.evaluate, twin_eval=twin_eval),
            push=dataclasses.replace(cfg.push, server_url=server_url), seed=self.config.seed)

    # ---- stages -------------------------------------------------------------------------------------------
    def demos(self) -> dict:
        from wovr_core.sim.collect import CollectConfig, collect

        out = self.root / "demos"
        shutil.rmtree(out, ignore_errors=True)  # what an interrupted collection left: start over
        cfg = make_config(CollectConfig, "tiny", {
            "suite": self.config.suite, "tasks": list(self.config.tasks), "seed": self.config.seed,
            "episodes_per_task": self.config.demos_per_task, "workers": self.config.workers,
            "expert": to_dict(self.config.expert)})
        return {"summary": collect(cfg, out)}

    def sft(self) -> dict:
        from wovr_core.train.policy_trainer import train_policy

        summary = train_policy(self.config.policy, [self.root / "demos"], self.root / "sft", preset="tiny")
        return {"policy": str(summary["policy"]), "steps": summary["steps"],
                "train_episodes": summary["train_episodes"], "validation": summary.get("validation", {})}

    def robot(self) -> dict:
        from wovr_core.rl.budget import TrajectoryBudget
        from wovr_core.rl.pace import record_twin_rollouts
        from wovr_core.rl.run_config import RLRunConfig

        twin_episodes = self.config.retrain.evaluate.twin_eval.episodes_per_task
        overrides = {"twin": {"suite": self.config.suite, "tasks": list(self.config.tasks),
                              "max_steps": self.config.max_episode_steps},
                     "pace": {"tasks": list(self.config.tasks), "first_init_state": twin_episodes,
                              "rollouts_per_task": self.config.robot_rollouts_per_task},
                     "seed": self.config.seed}
        cfg = make_config(RLRunConfig, "tiny", overrides)
        # A dataset folder in the inbox is what a recording session leaves there; ingest moves it away.
        staging = self.root / "robot" / "base-policy-runs"
        budget = TrajectoryBudget(self.root / "robot" / "budget.json")
        summary = record_twin_rollouts(cfg, self.root / "sft" / "policy", staging, budget, label="robot runs")
        inbox = Workspace(self.retrain_ws).inbox(self.config.retrain.ingest.inbox)
        inbox.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(inbox / staging.name, ignore_errors=True)
        staging.replace(inbox / staging.name)
        return {"summary": summary, "trajectories": budget.used}

    def retrain(self, server_url: str) -> dict:
        from wovr_core.pipeline.retrain import retrain

        outcome = retrain(self.retrain_ws, self._retrain_config(server_url), self.preset)
        if outcome.status not in ("finished", "pending_push"):
            raise DataError(f"the retrain did not finish: {outcome.message}")
        return {"status": outcome.status, "run_id": outcome.run_id, "message": outcome.message,
                **self._retrain_figures(outcome.run_id)}

    def _retrain_figures(self, run_id: str) -> dict:
        ws = Workspace(self.retrain_ws)

        def manifest(stage: str) -> dict:
            return json.loads(ws.manifest_path(run_id, stage).read_text())

        evaluation, decision = manifest("evaluate")["outputs"], manifest("promote")["outputs"]
        rl = manifest("rl")["metrics"]  # the last GRPO update
        return {"base": evaluation["incumbent"], "candidate": evaluation["candidate"],
                "reliability": evaluation["reliability"], "promoted": bool(decision["promote"]),
                "reasons": decision["reasons"], "push": manifest("push")["outputs"],
                "rl_last_update": {k: rl.get(k) for k in ("rollout/success_rate", "num_groups", "dropped_groups",
                                                          "optimizer_steps")}}

    def client(self, server) -> dict:
        from wovr_core.policy.evaluate import evaluate_policy
        from wovr_core.policy.remote import RemotePolicy

        with contextlib.closing(SERVING.create("client", server.ws_url, timeout_s=60.0)) as client:
            policy = RemotePolicy(client)
            served = policy.metadata()["checkpoint_id"]
            cfg = self._eval_config(self.config.client_episodes_per_task, 0, workers=1, videos=1)
            results = evaluate_policy(policy, cfg, self.root / "client" / served.replace("@", "_"))
        latency = [r["infer_ms_per_chunk"] for r in results["episode_records"]]
        return {"checkpoint_id": served, "checkpoints_seen": sorted(policy.checkpoints_seen),
                "successes": results["successes"], "episodes": results["episodes"],
                "tasks": [{k: t[k] for k in ("task", "successes", "episodes")} for t in results["tasks"]],
                "mean_ms_per_chunk_request": sum(latency) / len(latency), "videos": results["videos"]}

    # ---- the loop -----------------------------------------------------------------------------------------
    def run(self) -> dict:
        demos = self.stages.run("demos", self.demos)
        sft = self.stages.run("sft", self.sft)
        robot = self.stages.run("robot", self.robot)
        token, deployed, server_log = secrets.token_urlsafe(24), self._deployed_checkpoint(), self._log_path("server.log")
        with SERVING.create("process", deployed, api_token=token, log_path=server_log) as server:
            print(f"[serve] {server.url} serves {deployed} (log {server_log})")
            with _environment(API_TOKEN_ENV, token):
                retrained = self.stages.run("retrain", lambda: self.retrain(server.url))
            client = self.stages.run("client", lambda: self.client(server))
        summary = self._summary(demos, sft, robot, retrained, client)
        report = self._write_report(summary)
        summary["report"] = str(report)
        (self.root / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def _deployed_checkpoint(self) -> Path:
        ws = Workspace(self.retrain_ws)
        state = ws.load_state() if ws.state_path.exists() else None
        if state is not None and state.deployed is not None:
            return ws.abs(state.deployed.checkpoint)
        return self.root / "sft" / "policy"

    def _log_path(self, name: str) -> Path:
        (self.root / "logs").mkdir(exist_ok=True)
        return self.root / "logs" / name

    def _summary(self, demos: dict, sft: dict, robot: dict, retrained: dict, client: dict) -> dict:
        def rate(count: dict | None) -> float | None:
            return count["successes"] / count["trials"] if count and count["trials"] else None

        base_twin, candidate_twin = retrained["base"]["twin"], retrained["candidate"]["twin"]
        return {
            "preset": self.preset, "suite": self.config.suite, "tasks": list(self.config.tasks),
            "demos": demos["summary"], "sft_steps": sft["steps"], "robot_rollouts": robot["summary"],
            "twin_success": {"base": rate(base_twin), "post_rl": rate(candidate_twin),
                             "base_count": base_twin, "post_rl_count": candidate_twin},
            "imagined_success": {"base": rate(retrained["base"]["imagined"]),
                                 "post_rl": rate(retrained["candidate"]["imagined"])},
            "world_model_psnr_db": retrained["reliability"]["psnr_db"],
            "rl_last_update": retrained["rl_last_update"],
            "promoted": retrained["promoted"], "gate_reasons": retrained["reasons"],
            "push": retrained["push"], "retrain_status": retrained["status"],
            "served": client, "minutes_per_stage": {k: round(v["minutes"], 2) for k, v in self.stages.stages.items()},
            "minutes_total_stages": round(sum(v["minutes"] for v in self.stages.stages.values()), 2),
            "minutes_this_invocation": round((time.time() - self.started) / 60, 2),
            "workspace": str(self.root),
        }

    def _write_report(self, summary: dict) -> Path:
        from wovr_core.pipeline.report import write_report

        return write_report(self.retrain_ws, self.root / REPORT_FILE,
                            preface=[("The demo loop on the MuJoCo twin", demo_section_html(summary))])


def demo_section_html(summary: dict) -> str:
    """The report's first section: what the demo did and its figures."""
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.0f}%"

    def count(c: dict | None) -> str:
        return "-" if not c else f"{c['successes']}/{c['trials']}"

    twin, served, demos = summary["twin_success"], summary["served"], summary["demos"]
    push = summary["push"]
    if not summary["promoted"]:
        decision = "<span class=bad>not promoted</span>: the deployed base policy stays"
    elif push.get("status") == "pending_push":
        decision = f"<span class=ok>promoted</span>, push pending ({html.escape(str(push.get('detail', '')))})"
    else:
        decision = f"<span class=ok>promoted and pushed</span> ({html.escape(str(push.get('detail', '')))})"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in summary["gate_reasons"])
    stages = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.1f}</td></tr>"
                     for k, v in summary["minutes_per_stage"].items())
    return (
        f"<p>{demos['episodes']} scripted demonstrations ({demos['successes']} successful) of "
        f"{html.escape(summary['suite'])} tasks {summary['tasks']} -> a tiny VLA trained from scratch "
        f"({summary['sft_steps']} steps) -> {summary['robot_rollouts']['episodes']} recorded runs of it in the twin "
        f"-> wovr retrain (world model, reward model, masked GRPO in imagination, evaluation, gate, push) -> the "
        f"served checkpoint run in the twin through the policy server's client.</p>"
        "<table><tr><th></th><th>base (SFT)</th><th>after RL in imagination</th></tr>"
        f"<tr><td>success in the twin (LIBERO predicate)</td><td>{count(twin['base_count'])} "
        f"({pct(twin['base'])})</td><td>{count(twin['post_rl_count'])} ({pct(twin['post_rl'])})</td></tr>"
        f"<tr><td>success imagined in the world model</td><td>{pct(summary['imagined_success']['base'])}</td>"
        f"<td>{pct(summary['imagined_success']['post_rl'])}</td></tr></table>"
        f"<p>{_rl_sentence(summary['rl_last_update'])}</p>"
        f"<p>Gate: {decision}.</p><ul class=checks>{reasons}</ul>"
        f"<p>Served now: <code>{html.escape(served['checkpoint_id'])}</code>; through the WebSocket client it "
        f"succeeded in {served['successes']}/{served['episodes']} twin episodes "
        f"({served['mean_ms_per_chunk_request']:.0f} ms per chunk request).</p>"
        f"<table><tr><th>stage</th><th>minutes</th></tr>{stages}</table>"
    )


def _rl_sentence(last: dict) -> str:
    groups, dropped = last.get("num_groups"), last.get("dropped_groups")
    if groups is None or dropped is None:
        return ""
    text = (f"The last GRPO update: imagined success {100 * (last.get('rollout/success_rate') or 0):.0f}%, "
            f"{dropped:.0f} of {groups:.0f} groups without a learning signal")
    if groups and dropped == groups:
        text += (" (every rollout of a group had the same return: at this scale the world model rarely imagines "
                 "a success the reward model recognises, so the policy did not change)")
    return text + "."


@contextlib.contextmanager
def _environment(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
