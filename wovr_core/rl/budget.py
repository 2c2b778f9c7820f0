"""The real-trajectory budget: every trajectory taken in the twin (or on the robot) is counted in a JSON file.

PACE and the same-budget twin GRPO baseline are compared at the same number of real trajectories; the file
``budget.json`` is where both runs account for them, so a resumed run keeps counting from where it stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from wovr_core.errors import DataError, WovrError

BUDGET_FILE = "budget.json"


class BudgetExceeded(WovrError):
    """Spending these trajectories would go past the run's real-trajectory budget."""


class TrajectoryBudget:
    """``limit`` real trajectories (0: unlimited), spent by named uses, persisted after every spend."""

    def __init__(self, path: str | Path, limit: int = 0):
        self.path = Path(path)
        self.limit = int(limit)
        self.spent: dict[str, int] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                self.spent = {str(k): int(v) for k, v in data["spent"].items()}
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
                raise DataError(f"{self.path}: unreadable trajectory budget ({e})") from None
            if self.limit and int(data.get("limit", 0)) not in (0, self.limit):
                raise DataError(f"{self.path}: recorded with a budget of {data['limit']} trajectories, now "
                                f"{self.limit}: use a new output folder to change the budget")

    @property
    def used(self) -> int:
        return sum(self.spent.values())

    @property
    def remaining(self) -> int | None:
        return None if not self.limit else self.limit - self.used

    def spend(self, count: int, use: str) -> None:
        """Count ``count`` trajectories for ``use``; BudgetExceeded (nothing counted) past the limit."""
        if self.limit and self.used + count > self.limit:
            raise BudgetExceeded(f"{use} needs {count} more real trajectories; the budget of {self.limit} has "
                                 f"{self.limit - self.used} left ({self.path})")
        self.spent[use] = self.spent.get(use, 0) + int(count)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"limit": self.limit, "used": self.used, "spent": self.spent}, indent=2) + "\n")
        os.replace(tmp, self.path)
