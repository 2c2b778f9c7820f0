"""The folder ``wovr retrain`` works in, and the few facts that outlive a run (``state.json``).

::

    WORKSPACE/
      inbox/<name>/          episode datasets waiting to be ingested (each recording session's record_dir)
      data/real/<name>/      ingested datasets: every episode in them passed validation
      data/real/<name>.ingest.json   where it came from, which run ingested it
      quarantine/<name>/     datasets with corrupt episodes, untouched, + reason.json (never trained on)
      registry/<name>/       policy checkpoints: the initial one and every promoted candidate
      runs/<run_id>/         run.json, config.json, <stage>/manifest.json and each stage's work
      state.json             deployed policy, push waiting for the server, current world and reward model
      retrain.lock           held by the running ``wovr retrain``
      logs/retrain.log       every run's log (also in the journal under systemd)

Paths inside JSON files are relative to the workspace, so a workspace can be moved or mounted elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wovr_core.config import from_dict, to_dict
from wovr_core.data import atomic_write_json
from wovr_core.errors import DataError

STATE_FILE = "state.json"
RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.json"
INGEST_SIDECAR = ".ingest.json"
REASON_FILE = "reason.json"

# Run statuses. A run that is "running" while no process holds the lock was killed: it is resumed.
RUNNING, FAILED, FINISHED, PENDING_PUSH, ABANDONED = "running", "failed", "finished", "pending_push", "abandoned"
RESUMABLE = (RUNNING, FAILED)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write, fsync, rename: readers (and a run resumed after SIGKILL) see the old or the new file."""
    atomic_write_json(path, obj, sort_keys=True)


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: {what} is not readable JSON ({e})") from None


@dataclass
class PolicyRef:
    """A policy checkpoint folder (workspace-relative) and its content id."""

    checkpoint: str
    checkpoint_id: str
    run_id: str = ""  # the run that produced or promoted it ("" for the initial policy)


@dataclass
class WorkspaceState:
    """What the next run starts from. Written only by the promote and push stages (and the first run)."""

    deployed: PolicyRef | None = None  # what the policy server was last confirmed to run
    pending_push: PolicyRef | None = None  # promoted but not yet activated (server down): retried next run
    world_model: str | None = None  # the latest world model that passed the reliability checks
    reward_model: str | None = None

    @property
    def incumbent(self) -> PolicyRef | None:
        """The policy RL starts from and candidates must beat: the promoted one if its push is pending."""
        return self.pending_push or self.deployed


@dataclass
class RunRecord:
    """``runs/<id>/run.json``: a run's status and each stage's attempts."""

    run_id: str
    status: str = RUNNING
    preset: str | None = None
    started_at: str = ""
    finished_at: str = ""
    pid: int = 0
    error: str = ""
    current_stage: str = ""
    stages: dict[str, dict] = field(default_factory=dict)  # stage -> {"status", "attempts", "implementation"}


class Workspace:
    """Paths of one workspace and the atomic reads and writes of its records."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    # ---- layout ------------------------------------------------------------------------------------------
    @property
    def real_data(self) -> Path:
        return self.root / "data" / "real"

    @property
    def staging(self) -> Path:
        return self.root / "data" / ".staging"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lock_path(self) -> Path:
        return self.root / "retrain.lock"

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def inbox(self, configured: str) -> Path:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else self.root / path

    def create(self) -> None:
        for path in (self.real_data, self.quarantine, self.registry, self.runs, self.logs):
            path.mkdir(parents=True, exist_ok=True)

    def rel(self, path: str | Path) -> str:
        """Workspace-relative form of a path inside it (absolute paths outside it are kept)."""
        path = Path(path).resolve()
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)

    def abs(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.root / path

    # ---- data --------------------------------------------------------------------------------------------
    def real_datasets(self) -> list[Path]:
        """Ingested datasets, oldest name first."""
        if not self.real_data.is_dir():
            return []
        return sorted(p for p in self.real_data.iterdir() if p.is_dir() and (p / "meta" / "info.json").exists())

    def ingest_record(self, dataset: Path) -> dict:
        path = dataset.with_name(dataset.name + INGEST_SIDECAR)
        return read_json(path, "ingest record") if path.exists() else {}

    # ---- state -------------------------------------------------------------------------------------------
    def load_state(self) -> WorkspaceState:
        if not self.state_path.exists():
            return WorkspaceState()
        return from_dict(WorkspaceState, read_json(self.state_path, "workspace state"))

    def save_state(self, state: WorkspaceState) -> None:
        write_json_atomic(self.state_path, to_dict(state))

    # ---- runs --------------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def run_ids(self) -> list[str]:
        """Run ids in creation order (ids are sortable timestamps)."""
        if not self.runs.is_dir():
            return []
        return sorted(p.name for p in self.runs.iterdir() if (p / RUN_FILE).exists())

    def load_run(self, run_id: str) -> RunRecord:
        path = self.run_dir(run_id) / RUN_FILE
        if not path.exists():
            known = self.run_ids()
            raise DataError(f"{path}: no run {run_id!r} in {self.root} (runs: {', '.join(known[-5:]) or 'none'})")
        return from_dict(RunRecord, read_json(path, "run record"))

    def save_run(self, record: RunRecord) -> None:
        write_json_atomic(self.run_dir(record.run_id) / RUN_FILE, to_dict(record))

    def manifest_path(self, run_id: str, stage: str) -> Path:
        return self.run_dir(run_id) / stage / MANIFEST_FILE
