"""Scripted teleop: an "expert" (e.g. the sim's privileged-state experts) drives like an operator.

The expert is any object with ``act(x) -> (7,) action`` and optionally
``events(x) -> iterable of TeleopEvent | str``; nothing here imports the simulator. ``x`` is the
loop's observation, or what ``expert_input(observation)`` returns (experts that act on privileged
simulator state get it that way). Pass the expert object directly, or name a factory in the config
(``options={"expert": "package.module:factory", "expert_kwargs": {...}}``) to build it lazily.
Episode resets are the caller's (the expert's own ``reset`` may need the simulator):
:meth:`ScriptedTeleop.reset` forwards its arguments to it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from wovr_core.config import ConfigError, from_dict
from wovr_core.hardware.errors import DeviceError, DeviceNotConnectedError
from wovr_core.hardware.teleop import Teleop, TeleopCommand, TeleopConfig, TeleopEvent
from wovr_core.types import ACTION_DIM, GRIPPER_OPEN


@runtime_checkable
class Expert(Protocol):
    def act(self, observation: Any) -> np.ndarray: ...


@dataclass
class ScriptedTeleopOptions:
    expert: str = ""  # "module:attr" factory, used when no expert object is given
    expert_kwargs: dict = field(default_factory=dict)
    auto_start: bool = True  # emit START_EPISODE on the first poll after connect()


class ScriptedTeleop(Teleop):
    """Turns an expert's actions and events into TeleopCommands; episodes are labelled ``scripted``."""

    episode_source = "scripted"

    def __init__(self, config: TeleopConfig, expert: Expert | None = None,
                 expert_input: Callable[[Any], Any] | None = None):
        super().__init__(config)
        self.options = from_dict(ScriptedTeleopOptions, config.options or {})
        if expert is None and not self.options.expert:
            raise ConfigError("scripted teleop needs an expert object or options.expert='module:factory'")
        self.expert = expert
        self.expert_input = expert_input
        self._observation: Any = None
        self._connected = False
        self._started = False
        self._gripper = GRIPPER_OPEN

    def connect(self) -> None:
        if self.expert is None:
            self.expert = _build(self.options.expert, self.options.expert_kwargs)
        if not callable(getattr(self.expert, "act", None)):
            raise ConfigError(f"expert {type(self.expert).__name__} has no act(observation) method")
        self._connected = True
        self._started = False
        self._observation = None

    def reset(self, *args: Any, **kwargs: Any) -> None:
        """New episode: forwards to ``expert.reset(...)`` (if it has one) and re-arms ``auto_start``."""
        reset = getattr(self.expert, "reset", None)
        if callable(reset):
            reset(*args, **kwargs)
        self._started = False
        self._observation = None

    def disconnect(self) -> None:
        self._connected = False

    def observe(self, observation: Any) -> None:
        self._observation = observation

    def poll(self) -> TeleopCommand:
        if not self._connected:
            raise DeviceNotConnectedError("scripted teleop: call connect() first")
        events: list[TeleopEvent] = []
        if self.options.auto_start and not self._started:
            events.append(TeleopEvent.START_EPISODE)
            self._started = True
        obs = self._observation
        if obs is None:
            # Nothing to act on yet: no motion, gripper as last commanded.
            action = np.zeros(ACTION_DIM, dtype=np.float32)
            action[6] = self._gripper
            return TeleopCommand(action=action, events=events, active=False)
        x = obs if self.expert_input is None else self.expert_input(obs)
        action = np.asarray(self.expert.act(x), dtype=np.float32)
        if action.shape != (ACTION_DIM,):
            raise DeviceError(f"expert {type(self.expert).__name__}.act returned shape {action.shape}, "
                              f"expected ({ACTION_DIM},)")
        if np.isfinite(action[6]):
            self._gripper = float(action[6])
        expert_events = getattr(self.expert, "events", None)
        if callable(expert_events):
            events.extend(_as_event(e) for e in expert_events(x) or ())
        return TeleopCommand(action=action, events=events, active=True)


def _as_event(value: TeleopEvent | str) -> TeleopEvent:
    if isinstance(value, TeleopEvent):
        return value
    try:
        return TeleopEvent(value)
    except ValueError:
        raise DeviceError(f"expert emitted unknown event {value!r}; valid: {[e.value for e in TeleopEvent]}") from None


def _build(target: str, kwargs: dict) -> Any:
    if ":" not in target:
        raise ConfigError(f"expert factory must look like 'package.module:attr', got {target!r}")
    module, attr = target.split(":", 1)
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load expert factory {target!r}: {exc}") from exc
    return factory(**kwargs)
