"""Keyboard teleop from a terminal (works over SSH; no X server needed).

The terminal is put in non-canonical, no-echo mode and read without blocking. Terminals report
key presses but no releases, so a motion key keeps its axis moving for ``hold_s`` after each press;
the terminal's auto-repeat refreshes it while the key is held (the first repeat comes after the
terminal's repeat delay, so a held key moves, pauses briefly, then moves continuously).

The key map is configuration: ``{key: binding}`` where a key is a character or one of
``up down left right space enter tab backspace esc`` and a binding is an axis with a sign
(``+x -x +y -y +z -z +roll -roll +pitch -pitch +yaw -yaw``), ``gripper_toggle`` /
``gripper_open`` / ``gripper_close``, or a :class:`TeleopEvent` value (``start_episode``, ...).
Entries given in the config replace the defaults for that key; an empty binding removes the key.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from wovr_core.config import ConfigError, did_you_mean, from_dict
from wovr_core.hardware.errors import DeviceError, DeviceNotConnectedError
from wovr_core.hardware.teleop import Teleop, TeleopCommand, TeleopConfig, TeleopEvent
from wovr_core.types import ACTION_DIM, GRIPPER_CLOSED, GRIPPER_OPEN

AXES = ("x", "y", "z", "roll", "pitch", "yaw")
GRIPPER_BINDINGS = ("gripper_toggle", "gripper_open", "gripper_close")

DEFAULT_KEYMAP: dict[str, str] = {
    "w": "+x", "s": "-x", "a": "+y", "d": "-y", "r": "+z", "f": "-z",
    "u": "+roll", "o": "-roll", "i": "+pitch", "k": "-pitch", "j": "+yaw", "l": "-yaw",
    "space": "gripper_toggle",
    "1": "start_episode", "2": "stop_episode", "m": "mark_keyframe",
    "y": "mark_success", "n": "mark_failure", "t": "take_over", "h": "hand_back", "x": "estop",
}

_SPECIAL = {" ": "space", "\r": "enter", "\n": "enter", "\t": "tab", "\x7f": "backspace"}
_ESCAPES = {"\x1b[A": "up", "\x1b[B": "down", "\x1b[C": "right", "\x1b[D": "left",
            "\x1bOA": "up", "\x1bOB": "down", "\x1bOC": "right", "\x1bOD": "left"}


def parse_keys(text: str) -> list[str]:
    """Split terminal input into key names (arrow escape sequences become ``up`` etc.)."""
    keys, i = [], 0
    while i < len(text):
        for seq, name in _ESCAPES.items():
            if text.startswith(seq, i):
                keys.append(name)
                i += len(seq)
                break
        else:
            ch = text[i]
            keys.append("esc" if ch == "\x1b" else _SPECIAL.get(ch, ch))
            i += 1
    return keys


@dataclass
class KeyboardOptions:
    tty: str = ""  # terminal device to read; "" = this process's stdin
    keymap: dict = field(default_factory=dict)  # overrides of DEFAULT_KEYMAP
    speed: float = 0.5  # normalized action magnitude of a held motion key
    hold_s: float = 0.15  # how long one key press keeps its axis moving

    def validate(self) -> None:
        if not 0 < self.speed <= 1:
            raise ConfigError(f"keyboard speed must be in (0, 1], got {self.speed}")
        if self.hold_s <= 0:
            raise ConfigError(f"keyboard hold_s must be > 0, got {self.hold_s}")


def build_keymap(overrides: dict) -> dict[str, str]:
    """DEFAULT_KEYMAP with ``overrides`` applied; every binding checked."""
    keymap = dict(DEFAULT_KEYMAP)
    for key, binding in overrides.items():
        if binding in ("", None):
            keymap.pop(str(key), None)
        else:
            keymap[str(key)] = str(binding)
    valid = [f"{s}{a}" for a in AXES for s in "+-"] + list(GRIPPER_BINDINGS) + [e.value for e in TeleopEvent]
    for key, binding in keymap.items():
        if binding not in valid:
            raise ConfigError(f"keyboard key {key!r}: unknown binding {binding!r}; valid: {valid}."
                              + did_you_mean(binding, valid))
    return keymap


class KeyboardTeleop(Teleop):
    """Reads keys from a terminal without blocking; see the module docstring for the mapping."""

    def __init__(self, config: TeleopConfig, clock: Callable[[], float] = time.monotonic):
        super().__init__(config)
        self.options = from_dict(KeyboardOptions, config.options or {})
        self.keymap = build_keymap(self.options.keymap)
        self._clock = clock
        self._fd: int | None = None
        self._saved_attrs = None
        self._moving_until = np.zeros(6)
        self._direction = np.zeros(6)
        self._gripper = GRIPPER_OPEN
        self.unknown_keys = 0
        self._pending = ""

    def connect(self) -> None:
        import termios  # POSIX only; imported here so the module loads everywhere

        if self._fd is not None:
            raise DeviceError("keyboard teleop is already connected")
        path = self.options.tty
        if not path:
            try:
                path = os.ttyname(sys.stdin.fileno())
            except (OSError, ValueError) as exc:
                raise DeviceError("keyboard teleop needs a terminal; stdin is not a TTY (run it in a terminal, "
                                  "or set teleop options.tty to one)") from exc
        # A fresh open (not a dup of stdin) so non-blocking mode does not leak to other stdin readers.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            raise DeviceError(f"keyboard teleop: cannot open terminal {path!r}: {exc}") from exc
        if not os.isatty(fd):
            os.close(fd)
            raise DeviceError(f"keyboard teleop needs a terminal; {self.options.tty or 'stdin'} is not a TTY "
                              "(run it in a terminal, or set teleop options.tty to one)")
        self._saved_attrs = termios.tcgetattr(fd)
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~(termios.ICANON | termios.ECHO)  # key by key, nothing echoed
        attrs[6][termios.VMIN] = 0
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self._fd = fd

    def disconnect(self) -> None:
        import termios

        if self._fd is None:
            raise DeviceNotConnectedError("keyboard teleop is not connected")
        try:
            termios.tcsetattr(self._fd, termios.TCSANOW, self._saved_attrs)
        finally:
            os.close(self._fd)
            self._fd = None

    def poll(self) -> TeleopCommand:
        if self._fd is None:
            raise DeviceNotConnectedError("keyboard teleop: call connect() first")
        events: list[TeleopEvent] = []
        now = self._clock()
        for key in self._read_keys():
            binding = self.keymap.get(key)
            if binding is None:
                self.unknown_keys += 1
            elif binding[0] in "+-" and binding[1:] in AXES:
                axis = AXES.index(binding[1:])
                self._direction[axis] = 1.0 if binding[0] == "+" else -1.0
                self._moving_until[axis] = now + self.options.hold_s
            elif binding == "gripper_toggle":
                self._gripper = GRIPPER_CLOSED if self._gripper == GRIPPER_OPEN else GRIPPER_OPEN
            elif binding == "gripper_open":
                self._gripper = GRIPPER_OPEN
            elif binding == "gripper_close":
                self._gripper = GRIPPER_CLOSED
            else:
                events.append(TeleopEvent(binding))
        moving = self._moving_until > now
        action = np.zeros(ACTION_DIM, dtype=np.float32)
        action[:6] = np.where(moving, self._direction * self.options.speed, 0.0)
        action[6] = self._gripper
        return TeleopCommand(action=action, events=events, active=bool(moving.any()))

    def _read_keys(self) -> list[str]:
        chunks = []
        while True:
            try:
                data = os.read(self._fd, 1024)
            except BlockingIOError:
                break
            except OSError as exc:
                raise DeviceError(f"keyboard teleop: reading the terminal failed: {exc}") from exc
            if not data:
                break
            chunks.append(data)
        text = self._pending + b"".join(chunks).decode("utf-8", errors="replace")
        # An escape sequence split across reads: keep its start for the next poll.
        self._pending = ""
        for cut in range(max(0, len(text) - 2), len(text)):
            tail = text[cut:]
            if tail.startswith("\x1b") and tail != "\x1b" and any(s.startswith(tail) and s != tail for s in _ESCAPES):
                self._pending, text = tail, text[:cut]
                break
        return parse_keys(text)
