"""Several twins in worker processes, stepped in lockstep (rendering is CPU-bound and single-threaded)."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from wovr_core.sim.twin import TwinConfig


def _worker(conn, config: TwinConfig) -> None:
    from wovr_core.sim.twin import LiberoTwin

    twin = None
    try:
        twin = LiberoTwin(config)
        conn.send(("ready", twin.num_init_states))
        while True:
            cmd, arg = conn.recv()
            if cmd == "reset":
                conn.send(("ok", twin.reset(arg)))
            elif cmd == "step":
                r = twin.step(arg)
                conn.send(("ok", (r.obs, r.success, r.done, r.step)))
            elif cmd == "close":
                break
    except (EOFError, KeyboardInterrupt):
        pass
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        if twin is not None:
            twin.close()
        conn.close()


class TwinPool:
    """``n`` twins of one config (one task per worker can differ via ``task_ids``)."""

    def __init__(self, config: TwinConfig, n: int, task_ids: list[int] | None = None):
        ctx = mp.get_context("spawn")  # EGL/MuJoCo state must not be forked
        task_ids = task_ids or [config.task_id] * n
        if len(task_ids) != n:
            raise ValueError(f"task_ids has {len(task_ids)} entries for {n} workers")
        self._conns, self._procs = [], []
        for i, task_id in enumerate(task_ids):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, replace(config, task_id=task_id, seed=config.seed + i)),
                               daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self.num_init_states = [self._receive(i) for i in range(n)]

    def __len__(self) -> int:
        return len(self._conns)

    def _receive(self, i: int) -> Any:
        kind, payload = self._conns[i].recv()
        if kind == "error":
            raise RuntimeError(f"twin worker {i} failed:\n{payload}")
        return payload

    def reset(self, init_state_indices: list[int | None]) -> list[dict]:
        for conn, idx in zip(self._conns, init_state_indices, strict=True):
            conn.send(("reset", idx))
        return [self._receive(i) for i in range(len(self))]

    def step(self, actions: np.ndarray) -> list[tuple[dict, bool, bool, int]]:
        """Step every twin with its action; returns ``(obs, success, done, step)`` per twin."""
        return self.step_some(range(len(self)), actions)

    def step_some(self, indices: Sequence[int], actions: np.ndarray) -> list[tuple[dict, bool, bool, int]]:
        """Step the twins ``indices`` (the others wait), one action each, all at once."""
        indices = list(indices)
        for i, action in zip(indices, actions, strict=True):
            self._conns[i].send(("step", np.asarray(action, dtype=np.float64)))
        return [self._receive(i) for i in indices]

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        self._conns, self._procs = [], []

    def __enter__(self) -> TwinPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
