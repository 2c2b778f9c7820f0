"""Stages of a long job, each recorded in ``stages.json`` when it finishes: a rerun skips the finished ones.

Used by ``wovr demo`` and the benchmarks that chain collection, training and evaluation. A stage that was
interrupted has no record and runs again; whatever it can resume (a trainer's run directory, an evaluation's
episode log) it resumes by itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wovr_core.errors import DataError


class StageCache:
    """``run(name, fn)`` calls ``fn()`` once; its JSON-serializable record (plus ``minutes``) is kept."""

    FILENAME = "stages.json"

    def __init__(self, root: str | Path, log: Callable[[str], None] = print):
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / self.FILENAME
        self.log = log
        try:
            self.stages: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        except json.JSONDecodeError as e:
            raise DataError(f"{self.path} is not valid JSON ({e}); delete it to run every stage again") from e

    def __contains__(self, name: str) -> bool:
        return name in self.stages

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if name in self.stages:
            self.log(f"[{name}] done earlier ({self.stages[name]['minutes']:.1f} min)")
            return self.stages[name]
        self.log(f"[{name}] running")
        t0 = time.time()
        record = {**fn(), "minutes": (time.time() - t0) / 60}
        self.save(name, record)
        self.log(f"[{name}] done in {record['minutes']:.1f} min")
        return record

    def forget(self, name: str) -> dict[str, Any] | None:
        """Drop a stage's record so that the next ``run`` calls it again; returns the record."""
        record = self.stages.pop(name, None)
        self._write()
        return record

    def save(self, name: str, record: dict[str, Any]) -> None:
        self.stages[name] = record
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(self.FILENAME + ".tmp")
        tmp.write_text(json.dumps(self.stages, indent=2, default=str) + "\n")
        tmp.replace(self.path)
