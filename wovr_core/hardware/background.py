"""A camera whose frames are captured by a background thread (shared by realsense and synthetic).

Subclasses implement ``_open``, ``_capture`` and ``_close``; this class owns the thread, the latest
frame, the wake-ups of readers and the propagation of capture errors to the caller's thread.
"""

from __future__ import annotations

import abc
import threading
import time

from wovr_core.hardware.camera import Camera, CameraConfig
from wovr_core.hardware.errors import (
    DeviceAlreadyConnectedError,
    DeviceError,
    DeviceNotConnectedError,
    DeviceTimeoutError,
)
from wovr_core.types import Frame


class BackgroundCamera(Camera):
    """``read`` waits for the next new frame, ``async_read`` too (bounded), ``read_latest`` never waits."""

    read_timeout_s: float = 2.0

    def __init__(self, config: CameraConfig):
        super().__init__(config)
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._last_returned_seq = -1
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames_captured = 0

    # ---- subclass interface -------------------------------------------------------------------
    @abc.abstractmethod
    def _open(self) -> None:
        """Open the device and start streaming (runs in the caller's thread)."""

    @abc.abstractmethod
    def _capture(self, timeout_s: float) -> Frame | None:
        """Block up to ``timeout_s`` for the next frame; None if none arrived (runs in the thread)."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Stop streaming and release the device (runs after the thread has stopped)."""

    # ---- Camera API ---------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._thread is not None

    def connect(self) -> None:
        if self._thread is not None:
            raise DeviceAlreadyConnectedError(f"camera {self.name!r} is already connected")
        self._stop.clear()
        self._error = None
        self._latest = None
        self._last_returned_seq = -1
        self._open()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def disconnect(self) -> None:
        if self._thread is None:
            raise DeviceNotConnectedError(f"camera {self.name!r} is not connected")
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._thread = None
        with self._cond:
            self._cond.notify_all()
        self._close()

    def read(self) -> Frame:
        return self.async_read(timeout_s=self.read_timeout_s)

    def async_read(self, timeout_s: float = 0.2) -> Frame:
        self._check_connected()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._latest is None or self._latest.seq <= self._last_returned_seq:
                self._raise_capture_error()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeviceTimeoutError(
                        f"camera {self.name!r}: no new frame within {timeout_s:.3f} s "
                        f"({self.frames_captured} frames so far); is the device streaming?"
                    )
                self._cond.wait(remaining)
            frame = self._latest
            self._last_returned_seq = frame.seq
            return frame

    def read_latest(self) -> Frame:
        self._check_connected()
        with self._cond:
            self._raise_capture_error()
            if self._latest is None:
                raise DeviceTimeoutError(f"camera {self.name!r}: no frame captured yet")
            self._last_returned_seq = max(self._last_returned_seq, self._latest.seq)
            return self._latest

    # ---- internals ----------------------------------------------------------------------------
    def _check_connected(self) -> None:
        if self._thread is None:
            raise DeviceNotConnectedError(f"camera {self.name!r}: call connect() first")

    def _raise_capture_error(self) -> None:
        if self._error is not None:
            raise DeviceError(f"camera {self.name!r} capture failed: {self._error}") from self._error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self._capture(0.1)
                if frame is None:
                    continue
                with self._cond:
                    self._latest = frame
                    self.frames_captured += 1
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - surfaced to readers, never lost in the thread
            with self._cond:
                self._error = exc
                self._cond.notify_all()
