"""Checkpoint registry of the server: validated loading, atomic hot swap between requests, rollback.

A checkpoint goes live only after it loaded, its stored example observation passed the wire validation,
a warm-up inference on it honoured the action contract, and that contract equals the active one (clients
keep sending what the first metadata told them). The inference worker reads :attr:`CheckpointManager.active`
once per request, so a swap is a single reference assignment: a request in flight finishes on the model it
started with and is tagged with that model's id.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from policy_server.protocol import ProtocolError, validate_observation
from wovr_core.errors import WovrError
from wovr_core.policy.base import ActionContract, Policy
from wovr_core.policy.checkpoint import CONFIG_FILE, checkpoint_id, load_policy, read_example_obs, warm_up

log = logging.getLogger(__name__)


class CheckpointError(WovrError):
    """An activation or rollback that did not happen; ``status`` is the HTTP status to answer with."""

    status = 422


class CheckpointRejected(CheckpointError):
    status = 422


class CheckpointNotFound(CheckpointError):
    status = 404


class CheckpointForbidden(CheckpointError):
    status = 403


class ActivationBusy(CheckpointError):
    status = 409


class NoPreviousCheckpoint(CheckpointError):
    status = 409


@dataclass(frozen=True, eq=False)
class LoadedCheckpoint:
    """A validated policy ready to serve."""

    checkpoint_id: str
    path: Path
    policy: Policy
    metadata: dict
    contract: ActionContract
    load_ms: float
    warmup_ms: float
    loaded_at: float = field(default_factory=time.time)

    def summary(self) -> dict:
        return {"checkpoint_id": self.checkpoint_id, "path": str(self.path),
                "policy_type": self.metadata.get("policy_type"), "loaded_at": self.loaded_at,
                "load_ms": round(self.load_ms, 3), "warmup_ms": round(self.warmup_ms, 3)}


def load_checkpoint(path: str | Path, expected_contract: ActionContract | None = None) -> LoadedCheckpoint:
    """Load and validate ``path``; CheckpointRejected says why it cannot serve."""
    path = Path(path)
    t0 = time.perf_counter()
    try:
        policy = load_policy(path)
        ckpt_id = checkpoint_id(path)
        metadata = {**policy.metadata(), "checkpoint_id": ckpt_id}
        contract = ActionContract.from_dict(metadata["action_contract"])
    except WovrError as e:
        message = str(e)  # DataErrors already name the file; add the directory only when they do not
        raise CheckpointRejected(message if str(path) in message else f"cannot load {path}: {message}") from None
    except Exception as e:  # a loader's own bug or a corrupt weight file must not take the server down
        raise CheckpointRejected(f"cannot load {path}: {type(e).__name__}: {e}") from None
    load_ms = (time.perf_counter() - t0) * 1e3
    if expected_contract is not None and (diffs := expected_contract.differences(contract)):
        raise CheckpointRejected(f"{path}: action contract differs from the active checkpoint "
                                 f"(active != new): {'; '.join(diffs)}")
    try:
        example = validate_observation(read_example_obs(path), contract.to_dict())
    except WovrError as e:
        raise CheckpointRejected(str(e)) from None
    except ProtocolError as e:
        raise CheckpointRejected(f"{path}: stored example observation does not fit the policy: {e.detail}") from None
    try:
        warm = warm_up(policy, example)
    except Exception as e:
        raise CheckpointRejected(f"{path}: warm-up inference failed: {type(e).__name__}: {e}") from None
    return LoadedCheckpoint(checkpoint_id=ckpt_id, path=path, policy=policy, metadata=metadata,
                            contract=contract, load_ms=load_ms, warmup_ms=warm["warmup_ms"])


class CheckpointManager:
    """The active checkpoint, the previous ones kept loaded for instant rollback, and background activation."""

    def __init__(self, initial: LoadedCheckpoint, *, root: Path | None = None, keep_previous: int = 1,
                 on_change: Callable[[LoadedCheckpoint, str], None] | None = None):
        self._active = initial
        self._history: list[LoadedCheckpoint] = []
        self.root = root.resolve() if root is not None else None
        self.keep_previous = max(0, keep_previous)
        self.on_change = on_change
        self._swap_lock = threading.Lock()
        self._busy_lock = threading.Lock()
        self._busy = False
        self._loader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-loader")
        self.last_activation: dict | None = None

    @property
    def active(self) -> LoadedCheckpoint:
        return self._active

    def resolve(self, name_or_path: str) -> Path:
        """A checkpoint given as a path, or as a name under ``root``; must stay inside ``root`` when set."""
        if not name_or_path or "\0" in name_or_path:
            raise CheckpointNotFound("checkpoint: empty or invalid path")
        candidate = Path(name_or_path).expanduser()
        if not candidate.is_absolute():
            if self.root is None:
                raise CheckpointNotFound(f"checkpoint {name_or_path!r}: give an absolute path "
                                         "(the server was started without --checkpoint-root)")
            candidate = self.root / candidate
        try:
            resolved = candidate.resolve()
            if self.root is not None and not resolved.is_relative_to(self.root):
                raise CheckpointForbidden(f"checkpoint {name_or_path!r} is outside the checkpoint root {self.root}")
            has_config = (resolved / CONFIG_FILE).is_file()
        except (OSError, RuntimeError, ValueError) as e:  # name too long, symlink loop, ...
            raise CheckpointNotFound(f"checkpoint {name_or_path[:200]!r}: {type(e).__name__}: {e}"[:1000]) from None
        if not has_config:
            raise CheckpointNotFound(f"checkpoint {name_or_path!r}: no {CONFIG_FILE} in {resolved}")
        return resolved

    def start_activation(self, path: Path) -> concurrent.futures.Future:
        """Load and validate ``path`` on the loader thread, then swap; one activation at a time."""
        with self._busy_lock:
            if self._busy:
                raise ActivationBusy("another checkpoint activation is in progress; retry when it finished")
            self._busy = True
        self.last_activation = {"checkpoint": str(path), "state": "loading", "started": time.time()}
        try:
            return self._loader.submit(self._activate, path)
        except RuntimeError:  # executor shut down: the server is stopping
            self._release()
            raise ActivationBusy("the server is shutting down") from None

    def _release(self) -> None:
        with self._busy_lock:
            self._busy = False

    def _activate(self, path: Path) -> dict:
        try:
            new = load_checkpoint(path, expected_contract=self._active.contract)
            with self._swap_lock:
                previous = self._active
                self._history.append(previous)
                if len(self._history) > self.keep_previous:
                    del self._history[:len(self._history) - self.keep_previous]
                self._active = new
        except CheckpointError as e:
            self.last_activation = {**(self.last_activation or {}), "state": "rejected", "detail": str(e),
                                    "finished": time.time()}
            log.warning("checkpoint rejected, keeping %s: %s", self._active.checkpoint_id, e)
            self._notify(None, "rejected")
            raise
        finally:
            self._release()
        self.last_activation = {**(self.last_activation or {}), "state": "active",
                                "checkpoint_id": new.checkpoint_id, "finished": time.time()}
        log.info("activated %s (previous %s)", new.checkpoint_id, previous.checkpoint_id)
        self._notify(new, "activated")
        return {"checkpoint_id": new.checkpoint_id, "previous_checkpoint_id": previous.checkpoint_id,
                "load_ms": round(new.load_ms, 3), "warmup_ms": round(new.warmup_ms, 3)}

    def rollback(self) -> dict:
        """Make the previous checkpoint active again (it was validated when it first went live)."""
        with self._swap_lock:
            if not self._history:
                raise NoPreviousCheckpoint("no previous checkpoint to roll back to")
            current = self._active
            self._active = self._history.pop()
            restored = self._active
        log.info("rolled back from %s to %s", current.checkpoint_id, restored.checkpoint_id)
        self._notify(restored, "rollback")
        return {"checkpoint_id": restored.checkpoint_id, "rolled_back_from": current.checkpoint_id}

    def _notify(self, checkpoint: LoadedCheckpoint | None, event: str) -> None:
        if self.on_change is not None:
            self.on_change(checkpoint or self._active, event)

    def available(self) -> list[str]:
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CONFIG_FILE).is_file())

    def status(self) -> dict:
        with self._swap_lock:
            active, history = self._active, list(self._history)
        return {"active": active.summary(), "previous": [c.summary() for c in reversed(history)],
                "activation": self.last_activation, "root": str(self.root) if self.root else None,
                "available": self.available()}

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)
