"""``run_imagination_rl``: GRPO updates in imagination, logged, checkpointed and resumable (``wovr rl``).

Each update draws ``groups_per_update`` starts (first frames and keyframes, :class:`StartPool`), collects G
rollouts per start in the :class:`WorldModelEnv` and applies one :class:`GRPOTrainer` update. The run folder::

    updates.jsonl         one line of statistics per update (rewritten up to the resumed update on resume)
    tb/                   TensorBoard: returns, imagined success, group stats, clip fraction, approx KL, twin eval
    checkpoint/           the latest resumable state, replaced atomically every ``checkpoint_every`` updates:
        policy/           the policy (``VLAPolicy.save``: safetensors + JSON)
        optimizer.safetensors   optimizer tensors + the rollout / shuffle generators' states
        state.json        update counter, optimizer hyper-parameters, start-pool generator states
    evals.jsonl           twin evaluations every ``eval_every`` updates: logged, never used for training
    policy/               the final policy, written when every update is done
    done.json             the run's summary (a finished run is not re-run)

Running the same command again resumes at the last checkpoint and reproduces the updates an uninterrupted
run would have made (same starts, same samples), given the same device.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from wovr_core.config import save_config
from wovr_core.errors import DataError
from wovr_core.rl.rollout import collect_rollouts
from wovr_core.rl.run_config import RLRunConfig
from wovr_core.rl.starts import Start
from wovr_core.rl.trainer import GRPOTrainer

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
POLICY_DIR = "policy"
DONE_FILE = "done.json"
UPDATES_FILE = "updates.jsonl"
EVALS_FILE = "evals.jsonl"


class StartSource(Protocol):
    """Where group starts come from (:class:`~wovr_core.rl.start_pool.StartPool`), with a resumable state."""

    def sample(self, groups: int) -> list[Start]: ...

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


@dataclass
class PolicyIO:
    """How the run writes the policy it trains and loads its weights back on resume."""

    save: Callable[[Path], Path]
    load_weights: Callable[[Path], None]


# ---- checkpoint files ------------------------------------------------------------------------------------------
def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def save_training_state(directory: Path, optimizer: torch.optim.Optimizer,
                        generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Optimizer tensors and generator states into ``optimizer.safetensors``; returns the JSON-able rest."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    for name, generator in generators.items():
        tensors[f"rng.{name}"] = generator.get_state()
    save_file(tensors, str(directory / "optimizer.safetensors"))
    return {"param_groups": state["param_groups"], "scalars": scalars}


def load_training_state(directory: Path, meta: dict[str, Any], optimizer: torch.optim.Optimizer,
                        generators: dict[str, torch.Generator]) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / "optimizer.safetensors"
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise DataError(f"{path}: cannot read the optimizer state: {e}") from None
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        kind, *rest = name.split(".")
        if kind == "state":
            state.setdefault(int(rest[0]), {})[rest[1]] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        for name, generator in generators.items():
            generator.set_state(tensors[f"rng.{name}"])
    except (KeyError, ValueError, RuntimeError) as e:
        raise DataError(f"{path}: the optimizer state does not fit this policy: {e}") from None


# ---- the update loop -------------------------------------------------------------------------------------------
def _tensorboard(directory: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: updates.jsonl has the same numbers
        log.warning("tensorboard is not installed; statistics go to %s only", UPDATES_FILE)
        return None
    return SummaryWriter(str(directory))


def _log_scalars(writer, stats: dict[str, float], step: int) -> None:
    if writer is None:
        return
    for key, value in stats.items():
        tag = key if "/" in key else f"train/{key}"
        writer.add_scalar(tag, value, step)
    writer.flush()


def _keep_history(path: Path, before: int) -> None:
    """Drop lines of updates >= ``before`` (made after the checkpoint a resumed run restarts from)."""
    if not path.exists():
        return
    lines = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["update"] < before:
                lines.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):  # a line cut short by a kill
            continue
    path.write_text("".join(f"{line}\n" for line in lines))


def train_updates(cfg: RLRunConfig, trainer: GRPOTrainer, env, starts: StartSource, policy_io: PolicyIO,
                  out: Path, updates: int | None = None,
                  evaluate: Callable[[Path, int], dict[str, float]] | None = None,
                  stop_after: int | None = None, progress: bool | None = True,
                  groups_at_once: int = 0) -> dict[str, Any]:
    """Run (or resume) ``updates`` GRPO updates (default ``cfg.rl.updates``) into ``out``.

    ``evaluate(policy_dir, update)``: the twin evaluation, every ``cfg.eval_every`` updates; its numbers are
    logged and never reach the trainer. ``stop_after``: return after that many updates of this call
    (as a kill would, but cleanly; for tests and time-sliced runs). ``progress``: a progress bar (None: only
    on a terminal). ``groups_at_once``: see :func:`collect_rollouts`. Returns the summary.
    """
    from tqdm import tqdm

    cfg.validate()
    total = cfg.rl.updates if updates is None else updates
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / DONE_FILE
    if done_path.exists():
        summary = json.loads(done_path.read_text())
        log.info("%s: finished run (%d updates), nothing to do", out, summary["updates"])
        return summary
    rollout_rng = torch.Generator().manual_seed(cfg.seed)
    generators = {"rollout": rollout_rng, "shuffle": trainer.shuffle_generator}
    start = _resume(out, trainer, starts, policy_io, generators)
    _keep_history(out / UPDATES_FILE, start)
    _keep_history(out / EVALS_FILE, start + 1)
    writer = _tensorboard(out / "tb")
    last: dict[str, float] = {}
    bar = tqdm(total=total, initial=start, desc="GRPO", unit="update", disable=None if progress is None else not progress)
    try:
        for update in range(start, total):
            batch = collect_rollouts(env, trainer.policy, starts.sample(cfg.rl.groups_per_update),
                                     cfg.rl.grpo.group_size, cfg.rl.trainer.temperature, rollout_rng, groups_at_once)
            last = trainer.update(batch)
            returns = batch.trajectories.returns
            last.update({"rollout/return_std": float(returns.std()), "rollout/return_max": float(returns.max()),
                         "rollout/return_min": float(returns.min())})
            with (out / UPDATES_FILE).open("a") as f:
                f.write(json.dumps({"update": update, **last}) + "\n")
            _log_scalars(writer, last, update + 1)
            log.info("update %d/%d: imagined success %.3f, loss %.4f, dropped groups %d/%d", update + 1, total,
                     last.get("rollout/success_rate", float("nan")), last["loss"], int(last["dropped_groups"]),
                     int(last["num_groups"]))
            bar.update(1)
            bar.set_postfix(success=f"{last.get('rollout/success_rate', float('nan')):.2f}",
                            kept=f"{int(last['num_groups'] - last['dropped_groups'])}/{int(last['num_groups'])}")
            done = update + 1
            stopping = stop_after is not None and done - start >= stop_after and done < total
            if done % cfg.checkpoint_every == 0 or done == total or stopping:
                _save_checkpoint(out, done, trainer, starts, policy_io, generators)
            if evaluate is not None and cfg.eval_every and (done % cfg.eval_every == 0 or done == total):
                _evaluate(out, done, policy_io, evaluate, writer)
            if stopping:
                return {"updates": done, "finished": False}
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    final = out / POLICY_DIR
    shutil.rmtree(final, ignore_errors=True)
    policy_io.save(final)
    summary = {"updates": total, "finished": True, "policy": str(final), "last": last}
    _write_json(done_path, summary)
    return summary


def _save_checkpoint(out: Path, update: int, trainer: GRPOTrainer, starts: StartSource, policy_io: PolicyIO,
                     generators: dict[str, torch.Generator]) -> None:
    """Write the checkpoint beside the previous one, then swap: a kill at any moment leaves a whole one."""
    tmp, current, old = out / (CHECKPOINT_DIR + ".tmp"), out / CHECKPOINT_DIR, out / (CHECKPOINT_DIR + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    policy_io.save(tmp / POLICY_DIR)
    meta = save_training_state(tmp, trainer.optimizer, generators)
    _write_json(tmp / "state.json", {"update": update, "trainer_updates": trainer.updates,
                                     "starts": starts.get_state(), "optimizer": meta})
    shutil.rmtree(old, ignore_errors=True)
    if current.exists():
        current.rename(old)
    tmp.rename(current)
    shutil.rmtree(old, ignore_errors=True)


def _resume(out: Path, trainer: GRPOTrainer, starts: StartSource, policy_io: PolicyIO,
            generators: dict[str, torch.Generator]) -> int:
    directory = out / CHECKPOINT_DIR
    if not directory.exists() and (out / (CHECKPOINT_DIR + ".old")).exists():
        directory = out / (CHECKPOINT_DIR + ".old")  # killed between the two renames of a swap
    state_path = directory / "state.json"
    if not state_path.exists():
        return 0
    try:
        state = json.loads(state_path.read_text())
        update = int(state["update"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{state_path}: unreadable RL checkpoint state ({e}); delete {directory} to restart") \
            from None
    policy_io.load_weights(directory / POLICY_DIR)
    load_training_state(directory, state["optimizer"], trainer.optimizer, generators)
    starts.set_state(state["starts"])
    trainer.updates = int(state.get("trainer_updates", update))
    log.info("resuming %s at update %d", out, update)
    return update


def _evaluate(out: Path, update: int, policy_io: PolicyIO, evaluate: Callable[[Path, int], dict[str, float]],
              writer) -> None:
    target = out / "evals" / f"update_{update:05d}"
    policy_dir = target / POLICY_DIR
    if not (policy_dir / "config.json").exists():
        policy_io.save(policy_dir)
    result = {"update": update, **evaluate(policy_dir, update)}
    with (out / EVALS_FILE).open("a") as f:
        f.write(json.dumps(result) + "\n")
    _log_scalars(writer, {f"twin/{k}": v for k, v in result.items() if k != "update"}, update)
    log.info("twin evaluation after update %d: %s", update, result)


# ---- the driver over checkpoint folders -------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def vla_policy_io(policy, source: Path, manifest: dict[str, Any]) -> PolicyIO:
    """Save through ``VLAPolicy.save`` (safetensors + JSON, the example observation of ``source``)."""
    from safetensors.torch import load_model

    from wovr_core.policy.checkpoint import read_example_obs

    example = read_example_obs(source)

    def load_weights(directory: Path) -> None:
        path = directory / "model.safetensors"
        try:
            load_model(policy.model, str(path), strict=True, device=str(policy.model.device))
        except (OSError, RuntimeError, ValueError) as e:
            raise DataError(f"{path}: cannot load the checkpointed policy weights: {e}") from None

    return PolicyIO(lambda d: policy.save(d, example_obs=example, manifest=manifest), load_weights)


def twin_evaluator(cfg: RLRunConfig, out: Path) -> Callable[[Path, int], dict[str, float]]:
    """``evaluate_checkpoint`` on LIBERO's fixed init states; returns the average success."""
    from wovr_core.policy.evaluate import evaluate_checkpoint

    def evaluate(policy_dir: Path, update: int) -> dict[str, float]:
        results = evaluate_checkpoint(policy_dir, cfg.eval, out / "evals" / f"update_{update:05d}" / "twin",
                                      progress=False)
        return {"success": float(results["average_success"]), "episodes": float(results["episodes"])}

    return evaluate


def _open_run(config: RLRunConfig, out_dir: str | Path) -> tuple[Path, dict[str, Any] | None]:
    """Validate ``config`` and prepare the run folder; returns it and, for a run that already finished, its
    summary (the caller returns that instead of training again)."""
    config.validate()
    out = Path(out_dir).expanduser()
    if (out / DONE_FILE).exists():
        return out, json.loads((out / DONE_FILE).read_text())
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out)
    if config.threads:
        torch.set_num_threads(config.threads)
    return out, None


def run_imagination_rl(config: RLRunConfig, policy_dir: str | Path, world_model_dir: str | Path,
                       reward_dir: str | Path, data_roots: list[str | Path], out_dir: str | Path,
                       updates: int | None = None, stop_after: int | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """GRPO in the world model from the VLA checkpoint ``policy_dir``, starts from ``data_roots``; resumable.

    Writes ``out_dir`` as the module docstring describes; returns the summary (``policy``: the trained policy).
    """
    from wovr_core.policy.vla_policy import load_vla_policy
    from wovr_core.reward import SuccessClassifier
    from wovr_core.rl.env import WorldModelEnv
    from wovr_core.rl.start_pool import StartPool
    from wovr_core.rl.vla_adapter import VLATokenPolicy
    from wovr_core.world_model import WorldModel

    out, finished = _open_run(config, out_dir)
    if finished is not None:
        return finished
    device = resolve_device(config.device)
    source = Path(policy_dir).expanduser()
    policy = load_vla_policy(source, device=device, seed=config.seed)
    token_policy = VLATokenPolicy(policy)
    world = WorldModel.load(Path(world_model_dir).expanduser(), device=device).prepare_for_inference()
    world.use_action_guidance(config.rl.env.action_guidance)
    scorer = SuccessClassifier.load(Path(reward_dir).expanduser(), device=device)
    env = WorldModelEnv(world, scorer, config.rl.env)
    pool = StartPool([Path(r).expanduser() for r in data_roots], config.rl, scorer, list(world.config.cameras),
                     world.config.image_size, config.seed)
    log.info("GRPO from %s: %d updates x %d groups of %d; keyframes available: %s", source,
             config.rl.updates if updates is None else updates, config.rl.groups_per_update,
             config.rl.grpo.group_size, pool.keyframes)
    trainer = GRPOTrainer(token_policy, config.rl.trainer, config.rl.grpo)
    manifest = {"parent": str(source), "world_model": str(world_model_dir), "reward_model": str(reward_dir),
                "data": [str(r) for r in data_roots]}
    io = vla_policy_io(policy, source, manifest)
    evaluate = twin_evaluator(config, out) if config.eval_every else None
    return train_updates(config, trainer, env, pool, io, out, updates, evaluate, stop_after, progress)


def run_twin_grpo(config: RLRunConfig, policy_dir: str | Path, out_dir: str | Path, updates: int | None = None,
                  stop_after: int | None = None, progress: bool = True) -> dict[str, Any]:
    """The same-budget baseline: online GRPO in the LIBERO twin itself (:class:`TwinEnv`), every rollout
    counted in ``<out_dir>/budget.json`` against ``config.real_budget``. With a budget and no ``updates``,
    the run makes as many updates as the budget pays for."""
    from wovr_core.policy.vla_policy import load_vla_policy
    from wovr_core.rl.budget import BUDGET_FILE, TrajectoryBudget
    from wovr_core.rl.twin_env import TwinEnv, TwinStarts
    from wovr_core.rl.vla_adapter import VLATokenPolicy

    out, finished = _open_run(config, out_dir)
    if finished is not None:
        return finished
    per_update = config.rl.groups_per_update * config.rl.grpo.group_size
    if updates is None:
        updates = config.rl.updates
        if config.real_budget:
            updates = config.real_budget // per_update
    source = Path(policy_dir).expanduser()
    policy = load_vla_policy(source, device=resolve_device(config.device), seed=config.seed)
    token_policy = VLATokenPolicy(policy)
    size = int(next(iter(policy.contract.image_shapes.values()))[0])
    cameras = [k.split(".")[-1] for k in policy.contract.image_shapes]
    budget = TrajectoryBudget(out / BUDGET_FILE, config.real_budget)
    log.info("twin GRPO baseline from %s: %d updates x %d rollouts (budget %s, used %d)", source, updates,
             per_update, config.real_budget or "unlimited", budget.used)
    trainer = GRPOTrainer(token_policy, config.rl.trainer, config.rl.grpo)
    io = vla_policy_io(policy, source, {"parent": str(source), "baseline": "twin_grpo"})
    evaluate = twin_evaluator(config, out) if config.eval_every else None
    cfg = dataclasses.replace(config, twin=dataclasses.replace(config.twin, chunk_size=config.rl.env.chunk_size))
    with TwinEnv(cfg.twin, cameras, size, budget=budget) as env:
        summary = train_updates(config, trainer, env, TwinStarts(cfg.twin, config.seed), io, out, updates,
                                evaluate, stop_after, progress, cfg.twin.groups_at_once)
    summary["real_trajectories"] = TrajectoryBudget(out / BUDGET_FILE).used
    return summary
