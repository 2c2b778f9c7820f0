"""SpaceMouse teleop: HID reports as the device sends them, decoded by pyspacemouse, mapped to commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wovr_core.config import ConfigError
from wovr_core.errors import DataError
from wovr_core.hardware import DeviceError, TeleopConfig, TeleopEvent, make_teleop
from wovr_core.hardware.spacemouse import ButtonGestures, SpaceMouseOptions, SpaceMouseTeleop, map_axes

pytest.importorskip("pyspacemouse")


class ManualClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def axis_report(channel: int, a: int, b: int, c: int) -> str:
    """A SpaceMouse Compact HID report: channel byte + three little-endian int16 raw values."""
    return (bytes([channel]) + b"".join(int(v).to_bytes(2, "little", signed=True) for v in (a, b, c))).hex()


def button_report(left: bool, right: bool) -> str:
    return bytes([3, int(left) | (int(right) << 1)]).hex()


def write_log(path, records, device="SpaceMouseCompact"):
    lines = [json.dumps({"device": device})] + [json.dumps({"t": t, "report": r}) for t, r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def teleop_for(path, clock, **options) -> SpaceMouseTeleop:
    t = make_teleop(TeleopConfig(type="spacemouse", options={"replay": str(path), **options}))
    assert isinstance(t, SpaceMouseTeleop)
    t._clock = clock
    return t


def test_recorded_session_maps_to_commands(tmp_path):
    # Raw HID values (HID frame: +y towards the user, +z down), 350 = full deflection.
    log = write_log(tmp_path / "session.jsonl", [
        (0.00, axis_report(1, 0, -210, 0)),      # push away from the user, 60 %
        (0.00, axis_report(2, 0, 0, 0)),
        (0.05, button_report(True, False)),      # LEFT tap -> gripper toggle
        (0.10, button_report(False, False)),
        (0.15, axis_report(1, 0, 0, -350)),      # lift fully (raw z up is negative)
        (0.20, button_report(True, True)),       # both -> start episode
        (0.25, button_report(False, False)),
        (0.30, axis_report(1, 0, 0, 0)),         # release the knob
        (0.30, button_report(False, True)),      # RIGHT held 1 s -> long press
        (1.30, button_report(False, False)),
        (1.40, axis_report(2, 0, 0, 175)),       # twist (HID rz) half way
    ])
    clock = ManualClock()
    teleop = teleop_for(log, clock)
    teleop.connect()
    try:
        commands = {}
        for t in (0.0, 0.06, 0.11, 0.16, 0.21, 0.26, 0.31, 1.2, 1.31, 1.41):
            clock.t = t
            commands[t] = teleop.poll()
        away = (0.6 - 0.08) / 0.92
        np.testing.assert_allclose(commands[0.0].action[:6], [away, 0, 0, 0, 0, 0], atol=1e-6)
        assert commands[0.0].events == [TeleopEvent.TAKE_OVER] and commands[0.0].active
        assert commands[0.06].action[6] == -1.0 and commands[0.11].action[6] == 1.0  # toggled on release
        np.testing.assert_allclose(commands[0.16].action[:3], [0, 0, 1.0], atol=1e-6)
        assert commands[0.26].events == [TeleopEvent.START_EPISODE]
        assert not commands[0.31].active and commands[0.31].events == []
        assert commands[1.2].events == [TeleopEvent.MARK_SUCCESS]  # fires while still held
        assert commands[1.31].events == []  # no short press after a long one
        yaw = -(0.5 - 0.08) / 0.92  # pyspacemouse HID_Z_UP: yaw = -HID rz
        np.testing.assert_allclose(commands[1.41].action[:6], [0, 0, 0, 0, 0, yaw], atol=1e-6)
        assert commands[1.41].events == [TeleopEvent.TAKE_OVER]
        assert teleop.replay_finished
    finally:
        teleop.disconnect()


def test_axis_map_deadzone_signs_and_gains():
    opts = SpaceMouseOptions(axes=("x", "-y", "z", "roll", "pitch", "-yaw"), deadzone=0.1,
                             translation_gain=2.0, rotation_gain=0.5)
    out = map_axes(np.array([0.05, 0.55, -1.0, 1.0, 0.0, 0.4]), opts)
    np.testing.assert_allclose(out, [0.0, -1.0, -1.0, 0.5, 0.0, -0.5 * (0.3 / 0.9)], atol=1e-9)
    np.testing.assert_array_equal(map_axes(np.array([7.0, -7, 0, 0, 0, 0]), opts)[:2], [1.0, 1.0])  # clipped


def test_button_gestures():
    g = ButtonGestures(["LEFT", "RIGHT"], long_press_s=0.5)
    assert g.update([1, 0], 0.0) == [] and g.update([0, 0], 0.1) == ["LEFT"]
    assert g.update([1, 0], 1.0) == [] and g.update([1, 1], 1.1) == [] and g.update([0, 1], 1.2) == []
    assert g.update([0, 0], 1.3) == ["LEFT+RIGHT"]
    assert g.update([0, 1], 2.0) == [] and g.update([0, 1], 2.6) == ["RIGHT:long"]
    assert g.update([0, 1], 3.0) == [] and g.update([0, 0], 3.1) == []


def test_bad_logs_and_configs(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"device": "SpaceMouseCompact"}\n{"t": 0.0, "report": "zz"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl.*line 2"):
        teleop_for(bad, ManualClock()).connect()
    unknown = write_log(tmp_path / "unknown.jsonl", [], device="SpaceBall 9000")
    with pytest.raises(DataError, match="unknown device"):
        teleop_for(unknown, ManualClock()).connect()
    ok = write_log(tmp_path / "ok.jsonl", [])
    with pytest.raises(ConfigError, match="has buttons"):
        teleop_for(ok, ManualClock(), buttons={"MENU": "estop"}).connect()
    with pytest.raises(ConfigError, match="unknown binding"):
        make_teleop(TeleopConfig(type="spacemouse", options={"buttons": {"LEFT": "grip"}}))
    with pytest.raises(ConfigError, match="axes entry"):
        make_teleop(TeleopConfig(type="spacemouse", options={"axes": ["x", "y", "z", "r", "p", "yaw"]}))


def test_no_device_is_a_clear_error():
    teleop = make_teleop(TeleopConfig(type="spacemouse"))
    try:
        teleop.connect()
    except DeviceError as exc:
        assert "SpaceMouse" in str(exc)
    else:  # a real SpaceMouse is plugged in
        teleop.disconnect()
