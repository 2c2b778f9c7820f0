"""The stage contract: each stage is a function ``(StageContext) -> StageResult`` registered by name.

``STAGES`` maps ``"<stage>.<implementation>"`` to the function; the config's ``stages`` mapping picks one
implementation per stage. Entries are lazy ("module:function") so that a stage's heavy dependencies load
only when it runs, and a missing trainer fails that stage with a clear message, not the whole command.

A stage gets the outputs of the stages before it (typed, read back from their manifests) and its own
work folder ``runs/<run_id>/<stage>/``. A stage killed half-way runs again from the start of the stage
with the same work folder: stages that can continue their own work (the trainers) do; the others must
be safe to repeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from wovr_core.config import from_dict
from wovr_core.data import EpisodeDataset
from wovr_core.errors import WovrError
from wovr_core.pipeline.config import RetrainConfig
from wovr_core.pipeline.gate import PolicyEvaluation, WorldModelReliability
from wovr_core.pipeline.workspace import PolicyRef, Workspace, WorkspaceState
from wovr_core.registry import Registry

T = TypeVar("T")


class StageUnavailable(WovrError):
    """The stage's implementation cannot run here (its trainer or extra is not installed)."""


# ---- typed stage outputs (stored as ``outputs`` in the stage's manifest) ------------------------------------
@dataclass
class IngestOutput:
    new_datasets: list[str]  # workspace-relative, ingested by this run
    datasets: list[str]  # every ingested dataset so far
    new_episodes: int
    total_episodes: int  # the real-episode budget used so far
    quarantined: list[dict] = field(default_factory=list)  # {"dataset", "reason_file", "bad_episodes"}
    waiting: list[dict] = field(default_factory=list)  # datasets still being written: {"dataset", "reason"}


@dataclass
class ModelOutput:
    path: str  # workspace-relative model folder
    init_from: str | None = None
    data: list[str] = field(default_factory=list)


@dataclass
class CandidateOutput:
    checkpoint: str  # workspace-relative policy checkpoint folder
    checkpoint_id: str
    parent: PolicyRef | None = None


@dataclass
class EvaluationOutput:
    candidate: PolicyEvaluation
    incumbent: PolicyEvaluation
    reliability: WorldModelReliability
    strip: str | None = None  # workspace-relative PNG: real frames above imagined ones
    psnr_curve: list[float] = field(default_factory=list)  # mean PSNR per imagined frame
    notes: list[str] = field(default_factory=list)


@dataclass
class PromoteOutput:
    promote: bool
    reasons: list[str]
    checks: list[dict]
    candidate: PolicyRef | None = None  # the registered checkpoint, when promoted
    incumbent: PolicyRef | None = None


@dataclass
class PushOutput:
    status: str  # "pushed" | "pending_push" | "nothing_to_push"
    checkpoint: PolicyRef | None = None
    server_url: str = ""
    detail: str = ""
    attempts: list[dict] = field(default_factory=list)  # {"at", "ok", "detail"}


# ---- what a stage gets and returns --------------------------------------------------------------------------
@dataclass
class StageResult:
    outputs: Any  # one of the dataclasses above (or any dataclass)
    metrics: dict = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)  # files/folders whose hashes the manifest records
    status: str = "done"  # "done", or "pending_push" for a push that must be retried


@dataclass
class StageContext:
    workspace: Workspace
    run_id: str
    stage: str
    implementation: str
    config: RetrainConfig
    work_dir: Path
    previous: dict[str, dict]  # stage -> manifest of the stages already done in this run
    state: WorkspaceState
    log: logging.Logger

    def output(self, stage: str, cls: type[T]) -> T:
        """The typed outputs of an earlier stage of this run."""
        manifest = self.previous.get(stage)
        if manifest is None:
            raise WovrError(f"stage {self.stage!r} needs the outputs of {stage!r}, which has not run in {self.run_id}")
        return from_dict(cls, manifest["outputs"])

    def progress(self, iterable: Iterable | None = None, total: int | None = None, desc: str | None = None) -> tqdm:
        """A progress bar on a terminal; silent otherwise (log lines carry progress into the journal)."""
        return tqdm(iterable, total=total, desc=desc or self.stage, leave=False, disable=None, unit="it")

    def data_roots(self) -> list[Path]:
        """PACE data: the configured base datasets plus every ingested real dataset."""
        ingest = self.output("ingest", IngestOutput)
        return [self.workspace.abs(p) for p in self.config.base_data] + [self.workspace.abs(p) for p in ingest.datasets]

    def latest_real_episodes(self, count: int) -> list[tuple[Path, int]]:
        """Up to ``count`` (dataset, episode_index) of the newest real episodes: this run's first."""
        ingest = self.output("ingest", IngestOutput)
        new = [self.workspace.abs(p) for p in ingest.new_datasets]
        older = [self.workspace.abs(p) for p in reversed(ingest.datasets) if p not in ingest.new_datasets]
        picked: list[tuple[Path, int]] = []
        for root in [*new, *older]:
            with EpisodeDataset(root, on_error="skip") as dataset:
                for index in reversed(dataset.episode_indices):
                    if len(picked) == count:
                        return picked
                    picked.append((root, index))
        return picked


StageFunction = Callable[[StageContext], StageResult]

STAGES: Registry[StageFunction] = Registry("retrain stage")
for _name, _target in {
    "ingest.default": "wovr_core.pipeline.ingest:ingest_stage",
    "world_model.pace": "wovr_core.pipeline.training:refine_world_model",
    "reward.refresh": "wovr_core.pipeline.training:refresh_reward_model",
    "rl.grpo": "wovr_core.pipeline.training:imagination_rl",
    "evaluate.imagination": "wovr_core.pipeline.evaluation:evaluate_stage",
    "promote.gate": "wovr_core.pipeline.promote:promote_stage",
    "push.http": "wovr_core.pipeline.push:push_stage",
    "world_model.smoke": "wovr_core.pipeline.smoke:mean_frame_world_model",
    "reward.smoke": "wovr_core.pipeline.smoke:task_prior_reward",
    "rl.smoke": "wovr_core.pipeline.smoke:bias_step_rl",
    "evaluate.smoke": "wovr_core.pipeline.smoke:synthetic_evaluate",
}.items():
    STAGES.register(_name, _target)


def stage_function(stage: str, implementation: str) -> StageFunction:
    return STAGES.get(f"{stage}.{implementation}")
