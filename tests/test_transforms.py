"""wovr_core.transforms: normalization round trips, resizing, action shifts, specs, stats files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from wovr_core.config import ConfigError
from wovr_core.errors import DataError
from wovr_core.transforms import (
    AbsoluteActions,
    DeltaActions,
    Normalize,
    NormStats,
    RenameKeys,
    ResizeImages,
    Unnormalize,
    compose,
    load_norm_stats,
    resize_images,
    save_norm_stats,
    transform_from_spec,
    transforms_from_specs,
)

RNG = np.random.default_rng(0)
DATA = RNG.normal([0.1, -0.2, 0.3, 0, 0, 0, 0], [0.5, 0.2, 1.0, 0.1, 0.1, 0.1, 0.0], size=(500, 7)).astype(np.float32)
STATS = NormStats.compute(DATA)


def test_compute_matches_numpy():
    assert STATS.count == 500 and STATS.dim == 7
    np.testing.assert_allclose(STATS.mean, DATA.mean(0), atol=1e-5)
    np.testing.assert_allclose(STATS.q99, np.quantile(DATA, 0.99, axis=0), atol=1e-5)
    assert np.all(STATS.min <= STATS.q01) and np.all(STATS.q99 <= STATS.max)


@pytest.mark.parametrize("mode", ["mean_std", "quantile", "min_max"])
@settings(max_examples=30, deadline=None)
@given(x=arrays(np.float32, (3, 7), elements=st.floats(-10, 10, width=32)))
def test_normalize_unnormalize_round_trip(mode, x):
    norm = Normalize({"actions": STATS}, mode=mode)
    unnorm = Unnormalize({"actions": STATS}, mode=mode)
    y = norm({"actions": x})["actions"]
    assert y.dtype == np.float32
    np.testing.assert_allclose(unnorm({"actions": y})["actions"], x, atol=1e-3)


def test_quantile_maps_q01_q99_to_unit_interval_and_constant_dims_pass_through():
    out = Normalize({"a": STATS}, mode="quantile")({"a": np.stack([STATS.q01, STATS.q99])})["a"]
    np.testing.assert_allclose(out[:, :6], [[-1] * 6, [1] * 6], atol=1e-5)
    # dim 6 is constant (std 0): dividing by its spread would blow noise up, so it is only shifted
    assert np.all(np.abs(out[:, 6]) < 1e-3)


def test_masked_dims_are_left_alone_and_missing_keys_are_skipped_unless_strict():
    mask = (True,) * 6 + (False,)
    x = np.array([[1, 1, 1, 1, 1, 1, -1]], np.float32)
    out = Normalize({"actions": STATS}, mode="mean_std", masks={"actions": mask})({"actions": x, "task": "t"})
    assert out["actions"][0, 6] == -1 and out["task"] == "t"
    assert not np.allclose(out["actions"][0, :6], 1)
    assert Normalize({"actions": STATS})({"task": "t"}) == {"task": "t"}
    with pytest.raises(KeyError, match="actions"):
        Normalize({"actions": STATS}, strict=True)({"task": "t"})
    with pytest.raises(ValueError, match="shape"):
        Normalize({"actions": STATS})({"actions": np.zeros(5)})


def test_inputs_are_not_modified_in_place():
    x = np.ones((2, 7), np.float32)
    Normalize({"actions": STATS})({"actions": x})
    assert np.all(x == 1)


def test_resize_with_pad_keeps_aspect_ratio():
    image = np.full((100, 200, 3), 255, np.uint8)
    out = ResizeImages(64, 64)({"observation.images.agentview": image, "observation.state": np.zeros(8)})
    resized = out["observation.images.agentview"]
    assert resized.shape == (64, 64, 3) and resized.dtype == np.uint8
    assert resized[0].max() == 0 and resized[-1].max() == 0  # black bars top and bottom
    assert resized[32].min() == 255  # content in the middle
    squashed = ResizeImages(64, 64, pad=False)({"observation.images.agentview": image})
    assert squashed["observation.images.agentview"].min() == 255


def test_resize_batches_and_rejects_non_rgb():
    batch = RNG.integers(0, 256, (2, 3, 48, 64, 3), dtype=np.uint8)
    out = ResizeImages(24, 32, keys=("img",))({"img": batch})["img"]
    assert out.shape == (2, 3, 24, 32, 3)
    with pytest.raises(ValueError, match="img"):
        ResizeImages(24, 32, keys=("img",))({"img": np.zeros((10, 10), np.uint8)})


def test_resize_images_resizes_one_array_as_the_transform_does():
    batch = RNG.integers(0, 256, (2, 3, 48, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_images(batch, 24, 32),
                                  ResizeImages(24, 32, keys=("img",))({"img": batch})["img"])
    assert resize_images(batch, 48, 64) is batch  # already that size: untouched, not copied


def test_delta_absolute_round_trip():
    state = RNG.normal(size=8).astype(np.float32)
    actions = RNG.normal(size=(4, 7)).astype(np.float32)
    mask = (True, True, True)
    delta = DeltaActions(mask)({"actions": actions, "observation.state": state})
    np.testing.assert_allclose(delta["actions"][:, :3], actions[:, :3] - state[:3], atol=1e-6)
    np.testing.assert_allclose(delta["actions"][:, 3:], actions[:, 3:])
    back = AbsoluteActions(mask)(delta)
    np.testing.assert_allclose(back["actions"], actions, atol=1e-6)


def test_specs_rebuild_the_same_pipeline():
    stats = {"action": STATS, "observation.state": NormStats.compute(RNG.normal(size=(50, 8)))}
    specs = [
        {"type": "rename_keys", "mapping": {"action": "actions"}},
        {"type": "normalize", "keys": {"actions": "action"}, "mode": "quantile", "masks": {"actions": [1] * 6 + [0]}},
        {"type": "normalize", "keys": ["observation.state"]},
    ]
    pipeline = transforms_from_specs(json.loads(json.dumps(specs)), stats)
    sample = {"action": DATA[:8], "observation.state": np.ones(8, np.float32)}
    out = pipeline(sample)
    expected = compose([RenameKeys({"action": "actions"}),
                        Normalize({"actions": STATS}, mode="quantile", masks={"actions": (True,) * 6 + (False,)}),
                        Normalize({"observation.state": stats["observation.state"]})])(sample)
    for key in ("actions", "observation.state"):
        np.testing.assert_array_equal(out[key], expected[key])


def test_bad_specs_say_what_is_wrong():
    with pytest.raises(ConfigError, match="normalize"):
        transform_from_spec({"type": "normalise", "keys": ["a"]})
    with pytest.raises(ConfigError, match="no normalization statistics for 'action'"):
        transform_from_spec({"type": "normalize", "keys": ["action"]}, {})
    with pytest.raises(ConfigError, match="unknown fields"):
        transform_from_spec({"type": "resize_images", "height": 2, "width": 2, "hieght": 3})
    with pytest.raises(ConfigError, match="mode"):
        transform_from_spec({"type": "normalize", "keys": ["a"], "mode": "zscore"}, {"a": STATS})
    with pytest.raises(ConfigError, match="mask"):
        Normalize({"a": STATS}, masks={"a": (True,)})


def test_norm_stats_file_round_trip_and_errors(tmp_path):
    path = save_norm_stats({"action": STATS}, tmp_path / "norm_stats.json")
    loaded = load_norm_stats(path)
    np.testing.assert_allclose(loaded["action"].q01, STATS.q01)
    assert loaded["action"].count == 500

    with pytest.raises(DataError, match="norm_stats.json.*not found"):
        load_norm_stats(tmp_path / "missing" / "norm_stats.json")
    path.write_text("{not json")
    with pytest.raises(DataError, match="norm_stats.json"):
        load_norm_stats(path)
    broken = STATS.to_dict()
    del broken["q99"]
    path.write_text(json.dumps({"action": broken}))
    with pytest.raises(DataError, match=r"norm_stats.json: action: missing statistics \['q99'\]"):
        load_norm_stats(path)
    bad = STATS.to_dict() | {"std": [float("nan")] * 7}
    path.write_text(json.dumps({"action": bad}))
    with pytest.raises(DataError, match="action.std"):
        load_norm_stats(path)
