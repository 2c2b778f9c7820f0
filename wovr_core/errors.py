"""Errors the user can act on. The CLI prints them as one clear line (no traceback)."""


class WovrError(Exception):
    """Base class for errors caused by input, configuration or environment, not by a bug."""


class DataError(WovrError):
    """A dataset, episode or file is missing, corrupt or inconsistent; the message names the file."""


class DependencyError(WovrError):
    """An optional dependency (extra) is not installed."""
