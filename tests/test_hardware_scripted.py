"""Scripted teleop wraps any expert object (act / events / reset) without importing the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from wovr_core.config import ConfigError
from wovr_core.hardware import DeviceError, TeleopConfig, TeleopEvent, make_teleop
from wovr_core.hardware.scripted import ScriptedTeleop


class CountingExpert:
    def __init__(self, gain: float = 1.0):
        self.gain = gain
        self.resets = 0

    def reset(self, episode: int):
        self.resets = episode

    def act(self, obs):
        return np.array([self.gain * obs, 0, 0, 0, 0, 0, 1.0])

    def events(self, obs):
        return ["mark_keyframe"] if obs == 2 else [TeleopEvent.MARK_SUCCESS] if obs == 3 else []


def make_expert(gain: float = 1.0) -> CountingExpert:  # used through options.expert="module:attr"
    return CountingExpert(gain)


def test_expert_actions_and_events():
    expert = CountingExpert()
    teleop = ScriptedTeleop(TeleopConfig(type="scripted"), expert=expert)
    teleop.connect()
    first = teleop.poll()  # nothing observed yet: no motion, episode starts
    assert first.events == [TeleopEvent.START_EPISODE] and not first.active
    np.testing.assert_array_equal(first.action, [0, 0, 0, 0, 0, 0, -1])
    teleop.observe(1)
    assert teleop.poll().action[0] == 1.0
    teleop.observe(2)
    assert teleop.poll().events == [TeleopEvent.MARK_KEYFRAME]
    teleop.observe(3)
    assert teleop.poll().events == [TeleopEvent.MARK_SUCCESS]
    assert teleop.episode_source == "scripted"
    teleop.reset(7)  # forwarded to the expert; the next poll starts a new episode
    assert expert.resets == 7 and teleop.poll().events == [TeleopEvent.START_EPISODE]


def test_expert_acts_on_privileged_input():
    # Like the sim experts: the loop's observation is swapped for privileged state.
    privileged = {"value": 2}
    teleop = ScriptedTeleop(TeleopConfig(type="scripted", options={"auto_start": False}),
                            expert=CountingExpert(gain=3.0), expert_input=lambda obs: privileged["value"])
    teleop.connect()
    teleop.observe("camera frames the expert ignores")
    cmd = teleop.poll()
    assert cmd.action[0] == 6.0 and cmd.events == [TeleopEvent.MARK_KEYFRAME]


def test_expert_built_from_config_factory():
    teleop = make_teleop(TeleopConfig(type="scripted", options={
        "expert": "test_hardware_scripted:make_expert", "expert_kwargs": {"gain": 0.5}, "auto_start": False}))
    teleop.connect()
    teleop.observe(1)
    cmd = teleop.poll()
    assert cmd.action[0] == 0.5 and cmd.events == []


def test_bad_experts():
    with pytest.raises(ConfigError, match="needs an expert"):
        make_teleop(TeleopConfig(type="scripted"))
    with pytest.raises(ConfigError, match="cannot load expert"):
        make_teleop(TeleopConfig(type="scripted", options={"expert": "nowhere:nothing"})).connect()

    class Wrong:
        def act(self, obs):
            return np.zeros(3)

        def events(self, obs):
            return ["dance"]

    teleop = ScriptedTeleop(TeleopConfig(type="scripted"), expert=Wrong())
    teleop.connect()
    teleop.observe(0)
    with pytest.raises(DeviceError, match="shape"):
        teleop.poll()
