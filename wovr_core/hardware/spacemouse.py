"""3Dconnexion SpaceMouse teleop (HID through pyspacemouse/hidapi, imported lazily).

Raw 6-DoF values (pyspacemouse, HID_Z_UP convention: x right, y away from the user, z up, each in
[-1, 1]) become the action through a configurable axis map, a dead zone and gains. Buttons become
gestures (``LEFT``, ``RIGHT:long``, ``LEFT+RIGHT`` ...) mapped to gripper commands and
:class:`TeleopEvent` values, so even a two-button SpaceMouse Compact has every operator button.
Moving the knob while the policy drives emits ``take_over`` (intervention) when
``take_over_on_motion`` is set.

``options.replay`` plays a HID report log (JSON lines ``{"t": s, "report": hex}`` after a header
line ``{"device": name}``) through pyspacemouse's own decoder instead of a USB device: tests and
bug reports without hardware.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wovr_core.config import ConfigError, did_you_mean, from_dict
from wovr_core.errors import DataError, DependencyError
from wovr_core.hardware.errors import DeviceError, DeviceNotConnectedError
from wovr_core.hardware.teleop import Teleop, TeleopCommand, TeleopConfig, TeleopEvent
from wovr_core.types import ACTION_DIM, GRIPPER_CLOSED, GRIPPER_OPEN

DEVICE_AXES = ("x", "y", "z", "roll", "pitch", "yaw")
GRIPPER_BINDINGS = ("gripper_toggle", "gripper_open", "gripper_close")

# Operator behind the robot, facing the same way: device "away" = robot +x, device "right" = robot -y.
DEFAULT_AXES = ("y", "-x", "z", "pitch", "-roll", "yaw")
DEFAULT_BUTTONS = {
    "LEFT": "gripper_toggle",
    "RIGHT": "mark_keyframe",
    "LEFT:long": "mark_failure",
    "RIGHT:long": "mark_success",
    "LEFT+RIGHT": "start_stop",
    "LEFT+RIGHT:long": "hand_back",
}


def _pyspacemouse():
    try:
        import pyspacemouse
    except (ImportError, OSError) as exc:  # OSError: hidapi's shared library is missing
        raise DependencyError(
            "the SpaceMouse needs pyspacemouse + hidapi (pip install 'wovr[robot]'; apt libhidapi-hidraw0)"
        ) from exc
    return pyspacemouse


@dataclass
class SpaceMouseOptions:
    device: str = ""  # pyspacemouse device name, e.g. "SpaceMouseCompact"; "" = first found
    replay: str = ""  # HID report log to play instead of a USB device
    axes: tuple[str, str, str, str, str, str] = DEFAULT_AXES  # source axis (with sign) of each action dim
    deadzone: float = 0.08
    translation_gain: float = 1.0
    rotation_gain: float = 1.0
    buttons: dict = field(default_factory=lambda: dict(DEFAULT_BUTTONS))
    long_press_s: float = 0.8
    take_over_on_motion: bool = True

    def validate(self) -> None:
        for spec in self.axes:
            if spec.lstrip("+-") not in DEVICE_AXES:
                raise ConfigError(f"spacemouse axes entry {spec!r}: expected one of {DEVICE_AXES} with "
                                  "an optional sign." + did_you_mean(spec.lstrip("+-"), DEVICE_AXES))
        if not 0 <= self.deadzone < 1:
            raise ConfigError(f"spacemouse deadzone must be in [0, 1), got {self.deadzone}")
        valid = list(GRIPPER_BINDINGS) + ["start_stop"] + [e.value for e in TeleopEvent]
        for gesture, binding in self.buttons.items():
            if binding not in valid:
                raise ConfigError(f"spacemouse button {gesture!r}: unknown binding {binding!r}; valid: {valid}."
                                  + did_you_mean(str(binding), valid))


def map_axes(raw: np.ndarray, options: SpaceMouseOptions) -> np.ndarray:
    """Raw [x, y, z, roll, pitch, yaw] in [-1, 1] -> the 6 motion dims of the action."""
    raw = np.clip(np.asarray(raw, dtype=np.float64), -1.0, 1.0)
    # Rescale outside the dead zone so motion starts from 0 instead of jumping to the threshold.
    live = np.clip((np.abs(raw) - options.deadzone) / (1.0 - options.deadzone), 0.0, 1.0) * np.sign(raw)
    out = np.zeros(6)
    for i, spec in enumerate(options.axes):
        sign = -1.0 if spec.startswith("-") else 1.0
        out[i] = sign * live[DEVICE_AXES.index(spec.lstrip("+-"))]
    out[:3] *= options.translation_gain
    out[3:] *= options.rotation_gain
    return np.clip(out, -1.0, 1.0)


class ButtonGestures:
    """Button states over time -> gestures: ``A`` (short press), ``A:long`` (held past the threshold,
    fired while still held), ``A+B`` / ``A+B:long`` (buttons pressed together)."""

    def __init__(self, names: list[str], long_press_s: float):
        self.names = names
        self.long_press_s = long_press_s
        self._session: set[int] = set()
        self._start: float | None = None
        self._long_fired = False

    def update(self, pressed: list[int], now: float) -> list[str]:
        down = {i for i, b in enumerate(pressed) if b}
        gestures = []
        if down and self._start is None:
            self._start, self._session, self._long_fired = now, set(), False
        if self._start is None:
            return gestures
        self._session |= down
        name = "+".join(self.names[i] for i in sorted(self._session))
        if down and not self._long_fired and now - self._start >= self.long_press_s:
            gestures.append(f"{name}:long")
            self._long_fired = True
        if not down:
            if not self._long_fired:
                gestures.append(name)
            self._start = None
        return gestures


class _ReplayHID:
    """The slice of easyhid's Device that pyspacemouse uses, fed from a HID report log."""

    product_string = "replay"
    manufacturer_string = "wovr"
    release_number = 0
    serial_number = ""

    def __init__(self, reports: list[tuple[float, bytes]], clock: Callable[[], float]):
        self._reports, self._clock, self._t0, self._next = reports, clock, None, 0

    def open(self) -> None:
        self._t0 = self._clock()

    def close(self) -> None:
        pass

    def set_nonblocking(self, value) -> None:
        pass

    def read(self, size: int, timeout: int | None = None) -> bytes:
        if self._next < len(self._reports) and self._clock() - self._t0 >= self._reports[self._next][0]:
            self._next += 1
            return self._reports[self._next - 1][1]
        return b""

    @property
    def finished(self) -> bool:
        return self._next >= len(self._reports)

    def has_due_report(self) -> bool:
        return not self.finished and self._clock() - self._t0 >= self._reports[self._next][0]


def load_report_log(path: str | Path) -> tuple[str, list[tuple[float, bytes]]]:
    """Read a HID report log; errors name the file and line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read SpaceMouse report log: {exc}") from exc
    where = "header (line 1)"
    try:
        device = str(json.loads(lines[0])["device"])
        reports = []
        for number, line in enumerate(lines[1:], start=2):
            where = f"line {number}"
            if line.strip():
                rec = json.loads(line)
                reports.append((float(rec["t"]), bytes.fromhex(rec["report"])))
    except (IndexError, KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: malformed SpaceMouse report log ({where}): {exc}") from exc
    return device, reports


class SpaceMouseTeleop(Teleop):
    """SpaceMouse (or a replayed HID log) -> TeleopCommand; see the module docstring."""

    def __init__(self, config: TeleopConfig, clock: Callable[[], float] = time.monotonic):
        super().__init__(config)
        self.options = from_dict(SpaceMouseOptions, config.options or {})
        self._clock = clock
        self._mouse = None
        self._replay: _ReplayHID | None = None
        self._gestures: ButtonGestures | None = None
        self._gripper = GRIPPER_OPEN
        self._recording = False
        self._was_active = False

    def connect(self) -> None:
        psm = _pyspacemouse()
        if self.options.replay:
            name, reports = load_report_log(self.options.replay)
            specs = psm.get_device_specs()
            if name not in specs:
                raise DataError(f"{self.options.replay}: unknown device {name!r}; known: {sorted(specs)}")
            spec = psm.apply_axis_convention(specs[name], psm.AxisConvention.HID_Z_UP)
            self._replay = _ReplayHID(reports, self._clock)
            self._mouse = psm.SpaceMouseDevice(info=spec, device=self._replay)
            self._mouse.open()
        else:
            try:
                self._mouse = psm.open(device=self.options.device or None, nonblocking=True,
                                       axis_convention=psm.AxisConvention.HID_Z_UP)
            except (RuntimeError, ValueError, OSError) as exc:
                raise DeviceError(f"SpaceMouse {self.options.device or '(any)'}: {str(exc).rstrip('.')}. Is it plugged in "
                                  "and readable (udev rule for /dev/hidraw*)?") from exc
        names = list(self._mouse.info.button_names)
        for gesture in self.options.buttons:
            for part in gesture.split(":")[0].split("+"):
                if part not in names:
                    raise ConfigError(f"spacemouse button gesture {gesture!r}: {self._mouse.info.name} has "
                                      f"buttons {names}." + did_you_mean(part, names))
        self._gestures = ButtonGestures(names, self.options.long_press_s)

    def disconnect(self) -> None:
        if self._mouse is None:
            raise DeviceNotConnectedError("SpaceMouse is not connected")
        self._mouse.close()
        self._mouse = None

    @property
    def replay_finished(self) -> bool:
        return self._replay is not None and self._replay.finished

    def poll(self) -> TeleopCommand:
        if self._mouse is None:
            raise DeviceNotConnectedError("SpaceMouse: call connect() first")
        try:
            state = self._mouse.read()
            while self._replay is not None and self._replay.has_due_report():
                state = self._mouse.read()  # catch up with every report due by now
        except (OSError, RuntimeError) as exc:
            raise DeviceError(f"SpaceMouse read failed: {exc}") from exc
        raw = np.array([state.x, state.y, state.z, state.roll, state.pitch, state.yaw])
        return self.command_from(raw, list(state.buttons), self._clock())

    def command_from(self, raw: np.ndarray, buttons: list[int], now: float) -> TeleopCommand:
        """The mapping from one raw sample to a command (public so recorded values can be checked)."""
        motion = map_axes(raw, self.options)
        events: list[TeleopEvent] = []
        for gesture in self._gestures.update(buttons, now):
            binding = self.options.buttons.get(gesture)
            if binding == "gripper_toggle":
                self._gripper = GRIPPER_CLOSED if self._gripper == GRIPPER_OPEN else GRIPPER_OPEN
            elif binding == "gripper_open":
                self._gripper = GRIPPER_OPEN
            elif binding == "gripper_close":
                self._gripper = GRIPPER_CLOSED
            elif binding == "start_stop":
                events.append(TeleopEvent.STOP_EPISODE if self._recording else TeleopEvent.START_EPISODE)
                self._recording = not self._recording
            elif binding is not None:
                events.append(TeleopEvent(binding))
        active = bool(np.any(motion != 0.0))
        if active and not self._was_active and self.options.take_over_on_motion:
            events.append(TeleopEvent.TAKE_OVER)
        self._was_active = active
        action = np.zeros(ACTION_DIM, dtype=np.float32)
        action[:6] = motion
        action[6] = self._gripper
        return TeleopCommand(action=action, events=events, active=active)
