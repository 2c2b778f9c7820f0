"""The scripted teleop's "expert" on ROS: relays the suggestion the sim publishes from privileged state.

The pick-and-place expert needs the twin's object geometry, so it runs inside ``sim_node`` and publishes,
for every step, its action, its phase and LIBERO's success predicate on ``/wovr/sim/expert``. This relay
implements the expert protocol of :class:`wovr_core.hardware.scripted.ScriptedTeleop` (``act``,
``events``, ``reset``) over those messages, and presses the buttons an operator would: a keyframe when the
grasp starts (the task-critical moment), success when LIBERO says so, failure when the expert gives up or
runs out of steps.
"""

from __future__ import annotations

import numpy as np

from wovr_core.hardware.teleop import TeleopEvent

KEYFRAME_PHASE = "grasp"
STEPS_AFTER_DONE = 20  # the expert finished but LIBERO's predicate has not fired: give it a moment


class SimExpertRelay:
    """``act(suggestion)`` -> the suggested action; ``events(suggestion)`` -> the operator's buttons."""

    def __init__(self, max_episode_steps: int = 300):
        self.max_episode_steps = max_episode_steps
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self._keyframe_marked = False
        self._steps_done = 0
        self.finished = False

    def act(self, suggestion: dict) -> np.ndarray:
        return np.asarray(suggestion["action"], dtype=np.float32)

    def events(self, suggestion: dict) -> list[TeleopEvent]:
        if self.finished:
            return []
        self.steps += 1
        events = []
        if suggestion.get("phase") == KEYFRAME_PHASE and not self._keyframe_marked:
            self._keyframe_marked = True
            events.append(TeleopEvent.MARK_KEYFRAME)
        if suggestion.get("phase") == "done":
            self._steps_done += 1
        if suggestion.get("success"):
            events.append(TeleopEvent.MARK_SUCCESS)
        elif self.steps >= self.max_episode_steps or self._steps_done > STEPS_AFTER_DONE:
            events.append(TeleopEvent.MARK_FAILURE)
        self.finished = TeleopEvent.MARK_SUCCESS in events or TeleopEvent.MARK_FAILURE in events
        return events
