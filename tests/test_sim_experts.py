"""The scripted pick-and-place expert: its collision geometry, its controller limits, and whole episodes in
real LIBERO scenes."""

from __future__ import annotations

import numpy as np
import pytest

from wovr_core.config import ConfigError
from wovr_core.sim.experts import (
    _FINGER_REACH,
    _FINGER_T,
    _HAND_UNDERSIDE,
    _UNIT_CORNERS,
    ExpertConfig,
    PickPlaceExpert,
    _hand_clearance,
    _rect_box_gaps,
)


def _box(center, half, yaw_deg=0.0) -> np.ndarray:
    """Corners (8, 3) of a box turned by ``yaw_deg`` about the vertical axis."""
    c, s = np.cos(np.deg2rad(yaw_deg)), np.sin(np.deg2rad(yaw_deg))
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return np.asarray(center, dtype=float) + (_UNIT_CORNERS * half) @ rot.T


X = np.array([1.0, 0.0])


def test_gap_between_a_rectangle_and_box_shadows():
    boxes = np.stack([
        _box([0.13, 0.0, 0.0], [0.01, 0.01, 0.01]),  # 2 cm beyond the rectangle's end
        _box([0.0, 0.0, 0.0], [0.01, 0.01, 0.01]),  # inside it
        _box([0.0, 0.06, 0.0], [0.01, 0.01, 0.01]),  # 2 cm beside it
    ])[..., :2]
    gaps = _rect_box_gaps(np.zeros(2), X, 0.1, 0.03, boxes)
    np.testing.assert_allclose(gaps, [0.02, -0.04, 0.02], atol=1e-12)


def test_a_turned_box_is_not_its_axis_aligned_bounds():
    # A diamond off the rectangle's corner (0.1, 0.03): its axis-aligned bounds overlap the rectangle, the
    # diamond itself stays (|dx| + |dy| - half * sqrt(2)) / sqrt(2) away from the corner.
    turned = _box([0.12, 0.05, 0.0], [0.02, 0.02, 0.01], yaw_deg=45.0)[None, :, :2]
    assert turned[..., 0].min() < 0.1 and turned[..., 1].min() < 0.03
    gap = _rect_box_gaps(np.zeros(2), X, 0.1, 0.03, turned)[0]
    assert gap == pytest.approx((0.04 - 0.02 * np.sqrt(2)) / np.sqrt(2))


def test_hand_clearance_counts_only_what_reaches_the_fingers_or_the_hand():
    grip_z = 1.0
    low = _box([0.0, 0.05, grip_z - _FINGER_REACH - 0.02], [0.05, 0.05, 0.01])  # top below the finger tips
    assert _hand_clearance(np.zeros(2), np.array([0.0, 1.0]), grip_z, low[None]) == np.inf

    # A 2 cm wide box between the open fingers, up to the grip site: clear of the fingers' inner faces.
    between = _box([0.0, 0.0, grip_z - 0.02], [0.01, 0.01, 0.02])
    gap = _hand_clearance(np.zeros(2), np.array([0.0, 1.0]), grip_z, between[None])
    assert gap == pytest.approx(_FINGER_T[0] - 0.01)

    # The same box reaching above the hand's underside collides with the hand.
    tall = _box([0.0, 0.0, grip_z], [0.01, 0.01, _HAND_UNDERSIDE + 0.01])
    assert _hand_clearance(np.zeros(2), np.array([0.0, 1.0]), grip_z, tall[None]) < 0


@pytest.mark.parametrize("field,value", [("max_speed", 0.0), ("max_accel", -0.1), ("carry_clearance", -0.01),
                                         ("action_noise", -0.1), ("failure_prob", 1.5), ("excursion_prob", 2.0),
                                         ("excursion_steps", (8, 4)), ("excursion_speed", (0.0, 0.5))])
def test_bad_expert_config_is_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        PickPlaceExpert(ExpertConfig(**{field: value}))


# -- whole episodes (real MuJoCo) ---------------------------------------------------------------------


@pytest.mark.sim
def test_translation_actions_speed_up_gradually():
    from wovr_core.sim.twin import LiberoTwin, TwinConfig

    config = ExpertConfig()
    with LiberoTwin(TwinConfig(suite="libero_spatial", task_id=0, render=False, max_steps=60)) as twin:
        twin.reset(0)
        expert = PickPlaceExpert(config)
        expert.reset(twin)
        actions = []
        for _ in range(60):
            actions.append(expert.act(twin.privileged()))
            twin.step(actions[-1])
    translation = np.array(actions)[:, :3]
    assert np.linalg.norm(translation, axis=1).max() <= config.max_speed + 1e-6
    # Each axis may slow down (or stop) at once but gains at most max_accel per step.
    before, after = translation[:-1], translation[1:]
    assert np.all(after <= np.maximum(before, 0.0) + config.max_accel + 1e-6)
    assert np.all(after >= np.minimum(before, 0.0) - config.max_accel - 1e-6)
    assert np.abs(np.diff(translation, axis=0)).max() > config.max_accel  # and it does brake harder


@pytest.mark.sim
def test_noisy_expert_gives_valid_actions():
    from wovr_core.sim.twin import LiberoTwin, TwinConfig

    config = ExpertConfig(**ExpertConfig.PRESETS["noisy"])
    with LiberoTwin(TwinConfig(suite="libero_spatial", task_id=1, render=False, max_steps=40)) as twin:
        twin.reset(0)
        expert = PickPlaceExpert(config)
        expert.reset(twin)
        actions = []
        for _ in range(40):
            actions.append(expert.act(twin.privileged()))
            twin.step(actions[-1])
    assert np.isfinite(actions).all() and np.abs(actions).max() <= 1.0


@pytest.mark.sim
def test_excursions_hold_a_random_translation_then_the_plan_resumes():
    from wovr_core.sim.experts import Phase
    from wovr_core.sim.twin import LiberoTwin, TwinConfig

    config = ExpertConfig(excursion_prob=1.0, excursion_steps=(5, 5), excursion_speed=(0.6, 0.8), seed=3)
    with LiberoTwin(TwinConfig(suite="libero_object", task_id=0, render=False, max_steps=40)) as twin:
        twin.reset(0)
        start = twin.privileged()["eef_pos"].copy()
        expert = PickPlaceExpert(config)
        expert.reset(twin)
        actions, flags = [], []
        for step in range(25):
            if step == 10:
                expert.config.excursion_prob = 0.0  # two excursions, then the plan alone
            actions.append(expert.act(twin.privileged()))
            flags.append(expert.on_excursion)
            twin.step(actions[-1])
            if step == 9:
                moved = twin.privileged()["eef_pos"] - start
                phase_after_excursions = expert.phase
    actions = np.array(actions)
    assert flags[:10] == [True] * 10 and not any(flags[10:])
    first, second = actions[:5, :3], actions[5:10, :3]
    assert np.ptp(first, axis=0).max() == 0 and np.ptp(second, axis=0).max() == 0  # held for 5 steps each
    for held in (first[0], second[0]):
        assert 0.6 - 1e-6 <= np.linalg.norm(held) <= 0.8 + 1e-6
    assert not np.allclose(first[0], second[0])  # a fresh direction each time
    assert np.all(actions[:10, 6] == actions[0, 6])  # the gripper keeps its command
    assert phase_after_excursions is Phase.APPROACH  # the plan stood still...
    expected = 5 * (first[0] + second[0])
    assert np.dot(moved, expected) > 0.5 * np.linalg.norm(moved) * np.linalg.norm(expected)  # ...the arm did not
    # Back on the plan: no longer the held excursion, and ramping by at most max_accel per step.
    assert not np.allclose(actions[10, :3], second[0])
    assert np.all(actions[10, :3] <= np.maximum(second[0], 0.0) + config.max_accel + 1e-6)
    assert np.all(actions[10, :3] >= np.minimum(second[0], 0.0) - config.max_accel - 1e-6)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("suite,task_id", [
    ("libero_spatial", 1),  # the bowl next to the ramekin: a finger would land on the ramekin
    ("libero_spatial", 9),  # the bowl on the cabinet: the far rim is at the edge of the arm's reach
    ("libero_object", 3),
])
def test_clean_expert_solves_crowded_and_far_tasks(suite, task_id):
    from wovr_core.sim.rollout import run_expert_episode
    from wovr_core.sim.twin import LiberoTwin, TwinConfig

    with LiberoTwin(TwinConfig(suite=suite, task_id=task_id, render=False)) as twin:
        outcomes = [run_expert_episode(twin, PickPlaceExpert(ExpertConfig()), i) for i in range(2)]
    assert all(o.success for o in outcomes), outcomes
