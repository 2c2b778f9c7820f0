"""The one thread that runs inference: a bounded queue in front, a deadline on every request.

Inference never runs on the event loop. A full queue is refused at once and a request that waited past its
deadline is dropped before it reaches the model, so an overloaded server answers 503 instead of hanging.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from policy_server.checkpoints import LoadedCheckpoint

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The request could not be served in time (queue full, deadline passed, shutting down): HTTP 503."""

    status = 503


class PolicyFailure(Exception):
    """The policy raised or broke its action contract: HTTP 500 (a bug in the model, not in the request)."""

    status = 500


@dataclass(frozen=True)
class InferenceResult:
    reply: dict
    checkpoint_id: str
    queue_s: float
    policy_s: float


@dataclass(frozen=True)
class _Job:
    obs: dict
    enqueued: float
    deadline: float
    future: concurrent.futures.Future


class InferenceWorker:
    """Owns the model calls; ``active()`` is read once per request, which is what makes swaps atomic."""

    def __init__(self, active: Callable[[], LoadedCheckpoint], max_queue: int = 8):
        self._active = active
        self._queue: queue.Queue[_Job] = queue.Queue(maxsize=max(1, max_queue))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference-worker", daemon=True)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        while True:  # nothing waits forever on a request that will never run
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(Overloaded("the server is shutting down"))

    def submit(self, obs: dict, timeout_s: float) -> concurrent.futures.Future:
        """Queue one observation; Overloaded at once when the queue is full or the worker is stopped."""
        if self._stop.is_set():
            raise Overloaded("the server is shutting down")
        now = time.perf_counter()
        job = _Job(obs=obs, enqueued=now, deadline=now + timeout_s, future=concurrent.futures.Future())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Overloaded(f"inference queue is full ({self._queue.maxsize} waiting); retry later") from None
        return job.future

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if not job.future.set_running_or_notify_cancel():
                continue  # the caller gave up (timeout, disconnect)
            started = time.perf_counter()
            if started > job.deadline:
                job.future.set_exception(Overloaded(
                    f"request waited {(started - job.enqueued) * 1e3:.0f} ms in the queue, past its deadline"))
                continue
            checkpoint = self._active()
            try:
                reply = checkpoint.policy.infer(job.obs)
                reply["actions"] = checkpoint.contract.check_actions(reply)
            except Exception as e:
                log.exception("policy %s failed", checkpoint.checkpoint_id)
                job.future.set_exception(PolicyFailure(f"policy {checkpoint.checkpoint_id} failed: "
                                                       f"{type(e).__name__}: {e}"))
                continue
            finished = time.perf_counter()
            job.future.set_result(InferenceResult(reply=reply, checkpoint_id=checkpoint.checkpoint_id,
                                                  queue_s=started - job.enqueued, policy_s=finished - started))
