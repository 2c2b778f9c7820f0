"""The promotion gate is a pure function: Wilson intervals, the success rule, twin and world-model checks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wovr_core.config import make_config
from wovr_core.pipeline.config import GateConfig
from wovr_core.pipeline.gate import (
    PolicyEvaluation,
    SuccessCount,
    WorldModelReliability,
    decide,
    wilson_interval,
)

RELIABLE = WorldModelReliability(episodes=8, psnr_db=24.0, reward_agreement=0.95, horizon=32)


def _eval(successes: int, trials: int, twin: tuple[int, int] | None = None) -> PolicyEvaluation:
    return PolicyEvaluation("p@00000000", SuccessCount(successes, trials), SuccessCount(*twin) if twin else None)


def _failed(decision) -> set[str]:
    return {c.name for c in decision.checks if not c.passed}


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson_interval(SuccessCount(8, 10), 0.95)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(SuccessCount(0, 20), 0.95)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.1611, abs=1e-4)
    assert wilson_interval(SuccessCount(0, 0)) == (0.0, 1.0)
    narrow, wide = wilson_interval(SuccessCount(80, 100), 0.9), wilson_interval(SuccessCount(80, 100), 0.99)
    assert wide[0] < narrow[0] < 0.8 < narrow[1] < wide[1]


@given(st.integers(0, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.floats(0.5, 0.999))
def test_wilson_interval_contains_the_point_estimate(count, confidence):
    successes, trials = count
    low, high = wilson_interval(SuccessCount(successes, trials), confidence)
    assert 0.0 <= low <= high <= 1.0
    if trials:
        assert low - 1e-12 <= successes / trials <= high + 1e-12


def test_a_clearly_better_candidate_is_promoted_with_its_reasons():
    decision = decide(_eval(50, 64), _eval(20, 64), RELIABLE, GateConfig())
    assert decision.promote and not _failed(decision)
    assert any("lower bound" in r and "> incumbent 20/64" in r for r in decision.reasons)
    assert decision.summary().startswith("PROMOTE")


def test_a_better_point_estimate_is_not_enough_when_the_interval_overlaps():
    decision = decide(_eval(40, 64), _eval(36, 64), RELIABLE, GateConfig())
    assert not decision.promote and _failed(decision) == {"imagined_success"}
    assert "<= incumbent 36/64" in decision.reasons[0]


def test_the_margin_raises_the_bar():
    candidate, incumbent = _eval(50, 64), _eval(30, 64)
    assert decide(candidate, incumbent, RELIABLE, GateConfig()).promote
    assert not decide(candidate, incumbent, RELIABLE, GateConfig(margin=0.2)).promote


def test_too_few_trials_never_promote():
    decision = decide(_eval(10, 10), _eval(0, 10), RELIABLE, GateConfig(min_trials=32))
    assert not decision.promote and {"imagined_trials", "imagined_success"} <= _failed(decision)


def test_the_twin_must_agree_when_measured_or_required():
    better_twin = decide(_eval(50, 64, (18, 20)), _eval(20, 64, (6, 20)), RELIABLE, GateConfig())
    assert better_twin.promote and any(c.name == "twin_success" and c.passed for c in better_twin.checks)
    worse_twin = decide(_eval(50, 64, (5, 20)), _eval(20, 64, (10, 20)), RELIABLE, GateConfig())
    assert not worse_twin.promote and _failed(worse_twin) == {"twin_success"}
    missing = decide(_eval(50, 64), _eval(20, 64), RELIABLE, GateConfig(require_twin=True))
    assert not missing.promote and "not measured" in missing.reasons[0]


@pytest.mark.parametrize("reliability, failed", [
    (WorldModelReliability(8, psnr_db=12.0, reward_agreement=0.95), {"world_model_psnr"}),
    (WorldModelReliability(8, psnr_db=24.0, reward_agreement=0.5), {"reward_agreement"}),
    (WorldModelReliability(8, psnr_db=None, reward_agreement=0.95), {"world_model_psnr"}),
    (WorldModelReliability(8, psnr_db=math.nan, reward_agreement=0.95), {"world_model_psnr"}),
    (WorldModelReliability(0, psnr_db=24.0, reward_agreement=0.95), {"reliability_episodes"}),
])
def test_an_unreliable_world_model_blocks_promotion(reliability, failed):
    decision = decide(_eval(60, 64), _eval(10, 64), reliability, GateConfig())
    assert not decision.promote and _failed(decision) == failed


def test_disabled_reliability_checks_are_not_required():
    cfg = make_config(GateConfig, "tiny", {"min_psnr_db": "none", "min_reward_agreement": "none"})
    decision = decide(_eval(60, 64), _eval(10, 64), WorldModelReliability(3), cfg)
    assert decision.promote and {c.name for c in decision.checks} == {"imagined_trials", "imagined_success",
                                                                      "reliability_episodes"}


def test_impossible_counts_are_refused():
    with pytest.raises(ValueError, match="successes <= trials"):
        SuccessCount(5, 3)
