"""Exclusive ``flock`` locks that record their owner, and the one-writer-per-dataset lock built on them.

The kernel drops a ``flock`` when its process dies (even by SIGKILL), so a lock file left by a dead holder
is recognised as stale without trusting pids (which get reused) and taken over with a warning. The owner
record (pid, host, since, and any notes) only serves to tell whoever finds the lock held who holds it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from wovr_core.errors import DataError

from . import layout

log = logging.getLogger(__name__)


class OwnedFileLock:
    """An exclusive ``flock`` on ``path`` held through a file descriptor; subclasses implement ``acquire``
    (with :meth:`_claim` once the ``flock`` is theirs)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        raise NotImplementedError

    def _claim(self, fd: int, note: dict[str, Any] | None = None) -> None:
        """Record this process as the owner of the ``flock`` held on ``fd``."""
        previous = read_owner(fd)
        if previous.get("pid") not in (None, os.getpid()) or previous.get("host") not in (None, socket.gethostname()):
            log.warning("%s: taking over a stale lock left by %s, which is no longer running",
                        self.path, describe_owner(previous))
        _write_owner(fd, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), **(note or {})})
        self._fd = fd

    def update(self, **note: Any) -> None:
        """Add facts for whoever finds the lock held (e.g. a run id once it is known)."""
        if self._fd is not None:
            _write_owner(self._fd, {**read_owner(self._fd), **note})

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # an empty lock file means "released cleanly"
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class DatasetLock(OwnedFileLock):
    """Exclusive writer lock on a dataset folder; ``acquire`` raises DataError if another writer holds it."""

    def __init__(self, root: Path):
        super().__init__(Path(root) / layout.LOCK_PATH)

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = read_owner(fd)
            os.close(fd)
            raise DataError(f"{self.path}: dataset is being written by another writer ({describe_owner(owner)}); "
                            "one writer per dataset") from None
        self._claim(fd)


def read_owner(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        owner = json.loads(data) if data.strip() else {}
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_owner(fd: int, owner: dict) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(owner).encode(), 0)


def describe_owner(owner: dict) -> str:
    if not owner:
        return "an unknown process (the lock file names no owner)"
    since = owner.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    run = f", run {owner['run_id']}" if owner.get("run_id") else ""
    return f"pid {owner.get('pid')} on {owner.get('host')} since {when}{run}"
