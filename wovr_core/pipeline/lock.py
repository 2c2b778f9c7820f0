"""One ``wovr retrain`` per workspace: an exclusive ``flock`` on ``retrain.lock`` that records its owner.

The kernel drops a ``flock`` when its holder dies, even by SIGKILL, so a crashed run never blocks the next.
One case needs more: a child process that inherited the lock (a forked data-loader or simulator worker)
and outlived its killed parent keeps the ``flock`` held. When the recorded owner pid is dead on this host,
the lock file is replaced by a fresh one (the orphan keeps a lock on a file nobody looks at any more).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from pathlib import Path

from wovr_core.data.lock import OwnedFileLock, describe_owner, read_owner
from wovr_core.errors import WovrError

log = logging.getLogger(__name__)


class LockHeld(WovrError):
    """Another live process holds the workspace lock."""

    def __init__(self, message: str, owner: dict):
        super().__init__(message)
        self.owner = owner


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs on this host (a zombie waiting to be reaped counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class WorkspaceLock(OwnedFileLock):
    """``with WorkspaceLock(path, note={"run_id": ...}):`` or raise :class:`LockHeld` naming the holder."""

    def __init__(self, path: str | Path, note: dict | None = None):
        super().__init__(path)
        self.note = dict(note or {})

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = read_owner(fd)
                os.close(fd)
                if _is_dead_local(owner):
                    log.warning("%s: held by an orphan of pid %s, which is dead; replacing the lock file",
                                self.path, owner.get("pid"))
                    self.path.unlink(missing_ok=True)
                    continue
                raise LockHeld(f"another wovr retrain holds {self.path}: {describe_owner(owner)}; "
                               "wait for it to finish (one run per workspace)", owner) from None
            if not _same_file(fd, self.path):  # someone replaced the file between our open and flock
                os.close(fd)
                continue
            self._claim(fd, self.note)
            return
        raise LockHeld(f"{self.path}: could not take the lock (it kept changing under us)", {})

    def update(self, **note) -> None:
        self.note.update(note)
        super().update(**note)


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _is_dead_local(owner: dict) -> bool:
    pid = owner.get("pid")
    return isinstance(pid, int) and owner.get("host") == socket.gethostname() and not pid_alive(pid)
