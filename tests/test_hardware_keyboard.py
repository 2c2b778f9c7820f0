"""Keyboard teleop through a real pseudo-terminal: bytes typed on the master side become commands."""

from __future__ import annotations

import os
import termios

import numpy as np
import pytest

from wovr_core.config import ConfigError
from wovr_core.hardware import DeviceError, TeleopConfig, TeleopEvent, make_teleop
from wovr_core.hardware.keyboard import KeyboardTeleop, parse_keys


class ManualClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def pty():
    master, slave = os.openpty()
    yield master, os.ttyname(slave), slave
    os.close(master)
    os.close(slave)


def keyboard(tty: str, clock, **options) -> KeyboardTeleop:
    teleop = make_teleop(TeleopConfig(type="keyboard", options={"tty": tty, **options}))
    assert isinstance(teleop, KeyboardTeleop)
    teleop._clock = clock
    return teleop


def test_keys_from_a_terminal_become_commands(pty):
    master, tty, slave = pty
    before = termios.tcgetattr(slave)
    clock = ManualClock()
    teleop = keyboard(tty, clock, speed=0.4, hold_s=0.2)
    teleop.connect()
    try:
        assert not termios.tcgetattr(slave)[3] & (termios.ICANON | termios.ECHO)
        cmd = teleop.poll()
        assert not cmd.active and cmd.events == [] and cmd.action[6] == -1.0

        os.write(master, b"wj")  # +x and +yaw
        cmd = teleop.poll()
        np.testing.assert_allclose(cmd.action[:6], [0.4, 0, 0, 0, 0, 0.4])
        assert cmd.active
        clock.t = 0.1
        os.write(master, b"s")  # opposite key overrides; yaw still held
        np.testing.assert_allclose(teleop.poll().action[:6], [-0.4, 0, 0, 0, 0, 0.4])
        clock.t = 0.25  # yaw's hold ran out, x refreshed at 0.1 still moving
        np.testing.assert_allclose(teleop.poll().action[:6], [-0.4, 0, 0, 0, 0, 0])
        clock.t = 0.5
        assert not teleop.poll().active

        os.write(master, b" 1mkq")  # gripper toggle, start, keyframe, -pitch, unmapped q
        cmd = teleop.poll()
        assert cmd.action[6] == 1.0 and cmd.action[4] == -0.4
        assert cmd.events == [TeleopEvent.START_EPISODE, TeleopEvent.MARK_KEYFRAME]
        assert teleop.unknown_keys == 1
        os.write(master, b"yx")
        assert teleop.poll().events == [TeleopEvent.MARK_SUCCESS, TeleopEvent.ESTOP]
    finally:
        teleop.disconnect()
    assert termios.tcgetattr(slave) == before  # terminal restored


def test_custom_keymap_with_arrow_keys_split_across_reads(pty):
    master, tty, _ = pty
    clock = ManualClock()
    teleop = keyboard(tty, clock, keymap={"up": "+z", "down": "-z", "w": "", "enter": "stop_episode"})
    teleop.connect()
    try:
        os.write(master, b"\x1b[")  # an arrow key's escape sequence arriving in two reads
        assert not teleop.poll().active
        os.write(master, b"A")
        assert teleop.poll().action[2] == 0.5
        os.write(master, b"w\r")  # "w" unbound now; enter stops the episode
        cmd = teleop.poll()
        assert cmd.events == [TeleopEvent.STOP_EPISODE] and teleop.unknown_keys == 1
    finally:
        teleop.disconnect()


def test_parse_keys():
    assert parse_keys("a \x1b[B\x1bOC\x1b\x7f\t") == ["a", "space", "down", "right", "esc", "backspace", "tab"]


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown binding"):
        make_teleop(TeleopConfig(type="keyboard", options={"keymap": {"w": "+q"}}))
    not_a_tty = tmp_path / "file.txt"
    not_a_tty.write_text("")
    with pytest.raises(DeviceError, match="not a TTY"):
        make_teleop(TeleopConfig(type="keyboard", options={"tty": str(not_a_tty)})).connect()
    with pytest.raises(DeviceError, match="cannot open terminal"):
        make_teleop(TeleopConfig(type="keyboard", options={"tty": str(tmp_path / "missing")})).connect()
