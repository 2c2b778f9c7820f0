"""Per-cycle latency telemetry of the control loop; stored with every episode step."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

NAN = float("nan")


@dataclass
class CycleTelemetry:
    """How one action came about. Times in seconds; NaN where not applicable.

    Stored with the step whose observation the action LED TO (the same alignment as the action).
    """

    cycle: int = -1
    t: float = NAN  # host time at which the action was decided
    source: str = "none"  # policy | teleop | intervention | scripted | none
    obs_age_s: float = NAN  # now - capture time of the observation the action is based on
    obs_skew_s: float = NAN  # spread of capture times inside that observation
    obs_flags: str = ""
    inference_latency_s: float = NAN  # request -> reply of the chunk the action came from
    chunk_seq: int = -1
    chunk_step: int = -1
    dropped_steps: int = 0  # chunk steps skipped this cycle because they were already past
    safety_status: str = ""  # ok | clipped | held
    safety_reasons: str = ""  # comma-separated reason codes
    compute_s: float = NAN  # time spent inside the cycle before sleeping
    overrun_s: float = 0.0  # how far the cycle ran past its deadline
    arm_events: str = ""  # reactions the arm reported (e.g. franka contact_force, step_timeout)
    error: str = ""  # device/policy error raised during the cycle

    def to_dict(self, prefix: str = "telemetry.") -> dict:
        """Flat ``{prefix + field: value}`` for episode columns."""
        return {prefix + k: v for k, v in asdict(self).items()}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class TelemetryLog:
    """All cycles of a run, with a summary (percentiles) for reports and benchmarks."""

    NUMERIC = ("obs_age_s", "obs_skew_s", "inference_latency_s", "compute_s", "overrun_s")

    def __init__(self, keep: int = 100_000):
        self.records: list[CycleTelemetry] = []
        self.keep = keep

    def append(self, record: CycleTelemetry) -> None:
        self.records.append(record)
        if len(self.records) > self.keep:
            del self.records[: len(self.records) - self.keep]

    def summary(self) -> dict:
        out: dict = {"cycles": len(self.records)}
        for name in self.NUMERIC:
            values = np.array([getattr(r, name) for r in self.records], dtype=np.float64)
            values = values[np.isfinite(values)]
            if values.size:
                out[name] = {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
                             "max": float(values.max()), "n": int(values.size)}
        statuses: dict[str, int] = {}
        sources: dict[str, int] = {}
        for r in self.records:
            statuses[r.safety_status or "none"] = statuses.get(r.safety_status or "none", 0) + 1
            sources[r.source] = sources.get(r.source, 0) + 1
        out["safety_status"] = statuses
        out["sources"] = sources
        out["overruns"] = sum(1 for r in self.records if r.overrun_s > 0)
        out["dropped_steps"] = sum(r.dropped_steps for r in self.records)
        out["errors"] = sum(1 for r in self.records if r.error)
        return out


def finite_or_nan(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else NAN
