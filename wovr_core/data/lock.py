"""One writer per dataset: an exclusive ``flock`` on ``<root>/.wovr.lock`` that records the owner's pid.

The kernel drops a ``flock`` when its process dies (even by SIGKILL), so a lock file left by a dead writer
is recognised as stale without trusting pids (which get reused) and taken over with a warning.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from wovr_core.errors import DataError

from . import layout

log = logging.getLogger(__name__)


class DatasetLock:
    """Exclusive writer lock on a dataset folder; ``acquire`` raises DataError if another writer holds it."""

    def __init__(self, root: Path):
        self.path = Path(root) / layout.LOCK_PATH
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise DataError(f"{self.path}: dataset is being written by another writer ({_describe(owner)}); "
                            "one writer per dataset") from None
        previous = _read_owner(fd)
        if previous.get("pid") not in (None, os.getpid()) or previous.get("host") not in (None, socket.gethostname()):
            log.warning("%s: taking over a stale lock left by %s, which is no longer running",
                        self.path, _describe(previous))
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # an empty lock file means "released cleanly"
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DatasetLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_owner(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}


def _describe(owner: dict) -> str:
    if not owner:
        return "an unknown process"
    return f"pid {owner.get('pid')} on {owner.get('host')}"
