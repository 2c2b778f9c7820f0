"""Hardware errors: each names the device and says what to do."""

from wovr_core.errors import WovrError


class DeviceError(WovrError):
    """A device failed or misbehaved."""


class DeviceNotConnectedError(DeviceError):
    """An operation needs ``connect()`` first (or the device dropped out)."""


class DeviceAlreadyConnectedError(DeviceError):
    """``connect()`` called twice."""


class DeviceTimeoutError(DeviceError):
    """No data from the device within the allowed time."""
