"""Run scripted-expert episodes in the twin, optionally streaming frames to an episode sink."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wovr_core.sim.experts import PickPlaceExpert
from wovr_core.sim.twin import LiberoTwin
from wovr_core.types import DUMMY_ACTION


@dataclass
class EpisodeOutcome:
    task_id: int
    init_state_index: int | None
    success: bool
    steps: int
    mistake: str


FrameSink = Callable[[dict, np.ndarray, int], None]
"""``sink(obs, action_that_led_to_obs, step)``; step 0 carries DUMMY_ACTION."""


def run_expert_episode(
    twin: LiberoTwin,
    expert: PickPlaceExpert,
    init_state_index: int | None,
    sink: FrameSink | None = None,
    stop_on_success: bool = True,
    extra_steps_after_success: int = 0,
    layout_seed: int | None = None,
) -> EpisodeOutcome:
    """One episode from LIBERO's fixed init state ``init_state_index`` (or, with ``layout_seed``, a freshly
    sampled layout); LIBERO's predicate decides success."""
    obs = twin.reset(init_state_index) if layout_seed is None else twin.reset_random_layout(layout_seed)
    expert.reset(twin)
    if sink is not None:
        sink(obs, DUMMY_ACTION, 0)
    tail = extra_steps_after_success
    while True:
        action = expert.act(twin.privileged())
        result = twin.step(action)
        if sink is not None:
            sink(result.obs, action, result.step)
        if result.success and stop_on_success:
            if tail <= 0:
                break
            tail -= 1
            continue
        if result.step >= twin.config.step_limit:
            break
    return EpisodeOutcome(twin.config.task_id, init_state_index, twin.success, twin.steps, expert.mistake.value)
