"""One ``wovr retrain`` per workspace: an exclusive ``flock`` on ``retrain.lock`` that records its owner.

The kernel drops a ``flock`` when its holder dies, even by SIGKILL, so a crashed run never blocks the next.
One case needs more: a child process that inherited the lock (a forked data-loader or simulator worker)
and outlived its killed parent keeps the ``flock`` held. When the recorded owner pid is dead on this host,
the lock file is replaced by a fresh one (the orphan keeps a lock on a file nobody looks at any more).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

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


class WorkspaceLock:
    """``with WorkspaceLock(path, note={"run_id": ...}):`` or raise :class:`LockHeld` naming the holder."""

    def __init__(self, path: str | Path, note: dict | None = None):
        self.path = Path(path)
        self.note = dict(note or {})
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                if _is_dead_local(owner):
                    log.warning("%s: held by an orphan of pid %s, which is dead; replacing the lock file",
                                self.path, owner.get("pid"))
                    self.path.unlink(missing_ok=True)
                    continue
                raise LockHeld(f"another wovr retrain holds {self.path}: {_describe(owner)}; "
                               "wait for it to finish (one run per workspace)", owner) from None
            if not _same_file(fd, self.path):  # someone replaced the file between our open and flock
                os.close(fd)
                continue
            previous = _read_owner(fd)
            if previous.get("pid") not in (None, os.getpid()):
                log.warning("%s: taking over the lock left by %s, which is no longer running",
                            self.path, _describe(previous))
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), **self.note}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode(), 0)
            self._fd = fd
            return
        raise LockHeld(f"{self.path}: could not take the lock (it kept changing under us)", {})

    def update(self, **note) -> None:
        """Add facts for whoever finds the lock held (e.g. the run id once it is known)."""
        if self._fd is None:
            return
        self.note.update(note)
        owner = {**_read_owner(self._fd), **note}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(owner).encode(), 0)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # empty = released cleanly
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_owner(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        owner = json.loads(data) if data.strip() else {}
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _is_dead_local(owner: dict) -> bool:
    pid = owner.get("pid")
    return isinstance(pid, int) and owner.get("host") == socket.gethostname() and not pid_alive(pid)


def _describe(owner: dict) -> str:
    if not owner:
        return "an unknown process (the lock file names no owner)"
    since = owner.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    run = f", run {owner['run_id']}" if owner.get("run_id") else ""
    return f"pid {owner.get('pid')} on {owner.get('host')} since {when}{run}"
