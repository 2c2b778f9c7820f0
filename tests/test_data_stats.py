"""Normalization stats match numpy and keep the JSON shape other modules read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_helpers import episode_arrays, write_dataset

from wovr_core.data import EpisodeDataset, NormStats, compute_stats
from wovr_core.data.stats import RunningStats

LENGTHS = [15, 22, 9, 30]


def _numpy_stats(values: np.ndarray) -> dict:
    x = values.astype(np.float64)
    q01, q99 = np.quantile(x, [0.01, 0.99], axis=0)
    return {"mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0), "q01": q01, "q99": q99,
            "count": len(x)}


def test_stats_match_numpy_and_skip_the_placeholder_action(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, LENGTHS)
    arrays = [episode_arrays(i, n) for i, n in enumerate(LENGTHS)]
    expected = {
        "action": _numpy_stats(np.concatenate([a[1:] for a, _ in arrays])),  # action[0] is DUMMY_ACTION
        "observation.state": _numpy_stats(np.concatenate([s for _, s in arrays])),
    }
    stats = compute_stats(EpisodeDataset(root))
    for feature, exp in expected.items():
        got = stats[feature]
        assert got.count == exp["count"]
        for key in ("mean", "std", "min", "max", "q01", "q99"):
            np.testing.assert_allclose(getattr(got, key), exp[key], rtol=1e-12, atol=1e-12, err_msg=f"{feature}.{key}")
    assert stats["observation.state"].count == sum(LENGTHS)
    assert stats["action"].count == sum(LENGTHS) - len(LENGTHS)

    # the writer stored the same numbers in meta/stats.json on close, in the agreed shape
    stored = json.loads((root / "meta/stats.json").read_text())
    assert set(stored) == {"action", "observation.state"}
    for feature in stored.values():
        assert set(feature) == {"mean", "std", "min", "max", "q01", "q99", "count"}
        assert isinstance(feature["count"], int) and all(len(feature[k]) for k in ("mean", "q99"))
    assert stored["action"] == stats.to_dict()["action"]
    assert len(stored["action"]["mean"]) == 7 and len(stored["observation.state"]["std"]) == 8
    assert EpisodeDataset(root).norm_stats().to_dict() == stored


def test_stats_of_a_filtered_view(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, LENGTHS)
    view = EpisodeDataset(root).filter(task="open the drawer")  # episodes 1 and 3
    states = np.concatenate([episode_arrays(i, LENGTHS[i])[1] for i in (1, 3)])
    stats = view.norm_stats()
    assert stats["observation.state"].count == LENGTHS[1] + LENGTHS[3]
    np.testing.assert_allclose(stats["observation.state"].mean, states.astype(np.float64).mean(0), rtol=1e-12)


def test_norm_stats_json_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    running = RunningStats()
    running.update(rng.normal(size=(50, 7)))
    stats = NormStats({"action": running.result()})
    path = tmp_path / "stats.json"
    stats.to_json(path)
    again = NormStats.from_json(path)
    assert again.to_dict() == stats.to_dict() == NormStats.from_dict(json.loads(path.read_text())).to_dict()
    assert "action" in again and again["action"].count == 50
    with pytest.raises(KeyError, match="observation.state"):
        again["observation.state"]


def test_streaming_merge_is_exact_and_subsampled_quantiles_are_close():
    rng = np.random.default_rng(3)
    chunks = [rng.normal(loc=i, scale=1 + i, size=(int(rng.integers(1, 400)), 3)) for i in range(30)]
    full = np.concatenate(chunks)
    exact = RunningStats(total=len(full))
    sampled = RunningStats(total=len(full), max_quantile_samples=2000, seed=1)
    for chunk in chunks:
        exact.update(chunk)
        sampled.update(chunk)
    ref = _numpy_stats(full)
    for result in (exact.result(), sampled.result()):
        np.testing.assert_allclose(result.mean, ref["mean"], rtol=1e-10)
        np.testing.assert_allclose(result.std, ref["std"], rtol=1e-10)
        np.testing.assert_array_equal(result.min, ref["min"])
        assert result.count == len(full)
    np.testing.assert_allclose(exact.result().q99, ref["q99"], rtol=1e-12)
    spread = ref["q99"] - ref["q01"]
    assert np.all(np.abs(sampled.result().q01 - ref["q01"]) < 0.05 * spread)
    assert np.all(np.abs(sampled.result().q99 - ref["q99"]) < 0.05 * spread)
