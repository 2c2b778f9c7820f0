"""The promotion gate: a pure function of measured counts and metrics, so the decision is reproducible.

A candidate replaces the incumbent policy only if ALL of these hold:

1. enough imagined rollouts of each policy (``min_trials``);
2. imagined success: the lower end of the candidate's Wilson interval is above the incumbent's point
   estimate plus ``margin`` (a lucky draw of a no-better policy rarely passes);
3. twin success (LIBERO's own predicate), when measured or required: the same rule with ``twin_margin``;
4. the world model that imagined all this is reliable on the latest real episodes: open-loop PSNR and
   reward-model agreement (success read on imagined vs real frames) at or above their thresholds.

Every check is reported, passed or not, with its numbers: the manifest and the report show why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from wovr_core.pipeline.config import GateConfig


@dataclass(frozen=True)
class SuccessCount:
    """``successes`` out of ``trials`` episodes."""

    successes: int
    trials: int

    def __post_init__(self) -> None:
        if self.trials < 0 or not 0 <= self.successes <= self.trials:
            raise ValueError(f"need 0 <= successes <= trials, got {self.successes}/{self.trials}")

    @property
    def rate(self) -> float:
        return self.successes / self.trials if self.trials else 0.0


def wilson_interval(count: SuccessCount, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval of a binomial proportion ((0, 1) for no trials)."""
    n = count.trials
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = count.successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class PolicyEvaluation:
    """One policy's measured success: in imagination, and in the twin when evaluated there."""

    checkpoint_id: str
    imagined: SuccessCount
    twin: SuccessCount | None = None
    per_task: dict = field(default_factory=dict)  # task -> {"imagined": [s, n], "twin": [s, n]}


@dataclass(frozen=True)
class WorldModelReliability:
    """Imagined-vs-real agreement of the world model on the latest real episodes (None: not measured)."""

    episodes: int
    psnr_db: float | None = None
    reward_agreement: float | None = None
    horizon: int = 0


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    checks: list[GateCheck]

    @property
    def reasons(self) -> list[str]:
        """Why not (the failed checks), or why yes (all of them)."""
        failed = [c.detail for c in self.checks if not c.passed]
        return failed if failed else [c.detail for c in self.checks]

    def summary(self) -> str:
        return ("PROMOTE: " if self.promote else "REJECT: ") + "; ".join(self.reasons)


def _beats(name: str, candidate: SuccessCount, incumbent: SuccessCount, margin: float, confidence: float,
           min_trials: int) -> list[GateCheck]:
    enough = candidate.trials >= min_trials and incumbent.trials >= min_trials
    checks = [GateCheck(f"{name}_trials", enough,
                        f"{name}: {candidate.trials} candidate and {incumbent.trials} incumbent trials "
                        f"({'>=' if enough else 'fewer than'} {min_trials} each)")]
    low, high = wilson_interval(candidate, confidence)
    bar = incumbent.rate + margin
    better = enough and low > bar
    checks.append(GateCheck(
        f"{name}_success", better,
        f"{name} success: candidate {candidate.successes}/{candidate.trials} = {candidate.rate:.3f} "
        f"({confidence:.0%} CI {low:.3f}-{high:.3f}); lower bound {low:.3f} {'>' if better else '<='} "
        f"incumbent {incumbent.successes}/{incumbent.trials} = {incumbent.rate:.3f} + margin {margin:.3f}"))
    return checks


def _at_least(name: str, what: str, value: float | None, threshold: float | None, unit: str = "") -> GateCheck | None:
    if threshold is None:
        return None
    if value is None or not math.isfinite(value):
        return GateCheck(name, False, f"{what}: not measured (threshold {threshold:g}{unit})")
    ok = value >= threshold
    return GateCheck(name, ok, f"{what}: {value:.3f}{unit} {'>=' if ok else '<'} {threshold:g}{unit}")


def decide(candidate: PolicyEvaluation, incumbent: PolicyEvaluation, reliability: WorldModelReliability,
           config: GateConfig) -> GateDecision:
    """Promote the candidate or not, with every check's outcome (see the module docstring)."""
    checks = _beats("imagined", candidate.imagined, incumbent.imagined, config.margin, config.confidence,
                    config.min_trials)
    if candidate.twin is not None and incumbent.twin is not None:
        checks += _beats("twin", candidate.twin, incumbent.twin, config.twin_margin, config.confidence,
                         config.min_twin_trials)
    elif config.require_twin:
        checks.append(GateCheck("twin_success", False, "twin success: not measured for both policies "
                                                       "(gate.require_twin is set)"))
    enough = reliability.episodes >= config.min_reliability_episodes
    checks.append(GateCheck("reliability_episodes", enough,
                            f"world model checked on {reliability.episodes} real episodes "
                            f"({'>=' if enough else 'fewer than'} {config.min_reliability_episodes})"))
    horizon = f" over {reliability.horizon} frames" if reliability.horizon else ""
    for check in (_at_least("world_model_psnr", f"world-model PSNR{horizon}", reliability.psnr_db,
                            config.min_psnr_db, " dB"),
                  _at_least("reward_agreement", "reward-model agreement (imagined vs real)",
                            reliability.reward_agreement, config.min_reward_agreement)):
        if check is not None:
            checks.append(check)
    return GateDecision(all(c.passed for c in checks), checks)
