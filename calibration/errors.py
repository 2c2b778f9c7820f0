"""Calibration errors: each says what was wrong with the input and what to do about it."""

from __future__ import annotations

from wovr_core.errors import DataError, WovrError


class CalibrationError(WovrError):
    """A calibration could not be computed from the given input."""


class DegenerateInputError(CalibrationError):
    """The views or poses cannot determine the unknowns (too few, too similar, board not seen).

    Raised before anything is written, so a bad session never replaces a good calibration.
    """


class MotionError(CalibrationError):
    """The arm did not reach a calibration pose."""


class CalibrationMissingError(WovrError):
    """No calibration file where one is required; the message names the path and the command to run."""


class CalibrationStaleError(WovrError):
    """The latest calibration is older than allowed; the message names the file and its age."""


class CalibrationFileError(DataError):
    """A calibration file is unreadable or inconsistent; the message names the file."""
