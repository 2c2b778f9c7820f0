"""Supervised fine-tuning of the VLA on demonstrations (``wovr train-policy``), resumable at any moment.

Run directory::

    <out>/train_config.json    the run's settings (a resumed run must keep what decides the result)
    <out>/split.json           datasets and the train/validation episodes, fixed at the run's start
    <out>/checkpoints/step-N/  servable policy checkpoint + optimizer/scheduler/RNG state (see .checkpoint)
    <out>/policy/              the final policy (servable: ``wovr serve --checkpoint <out>/policy``)
    <out>/tb/                  TensorBoard: train/loss, train/lr, val/*, eval/success
    <out>/eval/step-N/         periodic LIBERO evaluations (results.json, episodes.jsonl)
    <out>/cache/               decoded frames at the policy's image size (safe to delete)
    <out>/summary.json         final metrics

Running the same command again resumes from the newest checkpoint; batches and augmentations are a pure
function of (seed, rank, step), so an interrupted-and-resumed run ends with the parameters of an
uninterrupted one. One process by default; ``accelerate launch -m wovr_core.cli train-policy ...`` runs
data-parallel on several GPUs unchanged (each rank draws its own batches).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wovr_core.accelerator import make_accelerator
from wovr_core.config import ConfigError, load_config, save_config, to_dict
from wovr_core.policy.base import IMAGE_KEY_PREFIX, STATE_KEY, TASK_KEY
from wovr_core.policy.vla import greedy_tokens, sft_loss_from_logits
from wovr_core.policy.vla_inputs import vla_transform_specs
from wovr_core.policy.vla_policy import VLAPolicy, load_vla_policy
from wovr_core.train import checkpoint as ckpt
from wovr_core.train.policy_config import PolicyTrainConfig
from wovr_core.train.policy_data import (
    ChunkSampler,
    DemoFrames,
    EpisodeKey,
    dataset_fingerprint,
    describe_split,
    fixed_frames,
    frames_batches,
    open_datasets,
    select_episodes,
    split_episodes,
)
from wovr_core.transforms import NormStats, transform_from_spec

log = logging.getLogger(__name__)

CONFIG_FILE = "train_config.json"
SPLIT_FILE = "split.json"
POLICY_DIR = "policy"
SUMMARY_FILE = "summary.json"


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM during training; the current step was checkpointed first."""


def _identity(item: Any) -> Any:
    return item


def lr_factor(step: int, cfg: PolicyTrainConfig) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps."""
    optim = cfg.optim
    if step < optim.warmup_steps:
        return (step + 1) / (optim.warmup_steps + 1)
    if optim.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - optim.warmup_steps) / max(1, cfg.max_steps - optim.warmup_steps))
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ------------------------------------------------------------------------------------------------ run setup
def _check_or_save_config(cfg: PolicyTrainConfig, out: Path, preset: str | None) -> None:
    path = out / CONFIG_FILE
    if path.exists():
        saved = to_dict(load_config(path, PolicyTrainConfig))
        new = to_dict(cfg)
        changed = sorted(k for k in set(saved) | set(new)
                         if saved.get(k) != new.get(k) and k not in PolicyTrainConfig.RESUMABLE)
        if changed:
            raise ConfigError(f"{out} holds a run with other settings ({', '.join(changed)} differ); resume it "
                              f"with the same settings or train into a new --out")
    save_config(cfg, out, preset=preset, filename=CONFIG_FILE)


def _split(datasets, roots: Sequence[Path], cfg: PolicyTrainConfig, out: Path
           ) -> tuple[list[EpisodeKey], list[EpisodeKey]]:
    path = out / SPLIT_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["datasets"] != [str(r) for r in roots]:
            raise ConfigError(f"{path}: this run trains on {saved['datasets']}, not {[str(r) for r in roots]}")
        return [tuple(k) for k in saved["train"]], [tuple(k) for k in saved["val"]]
    keys = select_episodes(datasets, cfg.success_only)
    train, val = split_episodes(datasets, keys, cfg.val_fraction, cfg.seed)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"datasets": [str(r) for r in roots], "train": train, "val": val}) + "\n")
    tmp.replace(path)
    return train, val


def demo_norm_stats(datasets, keys: Sequence[EpisodeKey]) -> dict[str, NormStats]:
    """State and action statistics of the training episodes (each ``action[0]`` placeholder left out)."""
    states, actions = [], []
    for d, i in keys:
        episode = datasets[d].episode(i)
        states.append(np.asarray(episode.states, dtype=np.float32))
        actions.append(np.asarray(episode.actions, dtype=np.float32)[1:])
    return {"action": NormStats.compute(np.concatenate(actions)), STATE_KEY: NormStats.compute(np.concatenate(states))}


def _example_observation(datasets, key: EpisodeKey, cameras: Sequence[str]) -> dict:
    """A real first observation at the dataset's camera size: what the robot or twin will send."""
    d, i = key
    episode = datasets[d].episode(i)
    obs: dict[str, Any] = {IMAGE_KEY_PREFIX + c: np.array(datasets[d].frame(i, 0, c)) for c in cameras}
    obs[STATE_KEY] = np.array(episode.states[0], dtype=np.float32)
    obs[TASK_KEY] = episode.task
    return obs


@contextmanager
def _stop_on_signals():
    """SIGTERM behaves like Ctrl-C (a scheduler's polite kill): the loop checkpoints, then stops."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------------- trainer
class PolicyTrainer:
    """One SFT run of the VLA (see the module docstring for what it writes)."""

    def __init__(self, cfg: PolicyTrainConfig, data: Sequence[str | Path], out: str | Path,
                 preset: str | None = None, progress: bool = True):
        if not data:
            raise ConfigError("train-policy needs at least one dataset (--data DIR)")
        self.cfg = cfg
        self.out = Path(out).expanduser()
        self.progress = progress
        self.roots = [Path(r).expanduser().resolve() for r in data]
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.accelerator = make_accelerator(cfg.mixed_precision)
        self.is_main = self.accelerator.is_main_process
        self.out.mkdir(parents=True, exist_ok=True)
        if self.is_main:
            _check_or_save_config(cfg, self.out, preset)
        self.accelerator.wait_for_everyone()
        self.datasets = open_datasets(self.roots, cfg.model.cameras)
        self.fingerprints = [dataset_fingerprint(r) for r in self.roots]
        with self.accelerator.main_process_first():  # the main process decides the split, the others read it
            self.train_keys, self.val_keys = _split(self.datasets, self.roots, cfg, self.out)
        log.info("demonstrations: %s", dict(describe_split(self.datasets, self.train_keys, self.val_keys)))

        self.resume_from = ckpt.latest_checkpoint(self.out)
        device = str(self.accelerator.device)
        if self.resume_from is not None:
            self.policy = load_vla_policy(self.resume_from, device=device)
            self.state = ckpt.read_trainer_state(self.resume_from)
            log.info("resuming from %s (step %d)", self.resume_from, self.state["step"])
        else:
            stats = demo_norm_stats(self.datasets, self.train_keys)
            tasks = sorted({t for d in self.datasets for t in d.tasks})
            sizes = {c: list(self.datasets[self.train_keys[0][0]].info.cameras[c]) for c in cfg.model.cameras}
            model_cfg = dataclasses.replace(cfg.model, input_images=sizes)
            self.policy = VLAPolicy.create(model_cfg, stats, tasks=tasks, device=device, seed=cfg.seed)
            self.state = {"step": 0, "history": []}
        self.policy.model.train()
        specs = vla_transform_specs(self.policy.config, self.policy.model.image_size)["inputs"]
        resize = transform_from_spec(next(s for s in specs if s["type"] == "resize_images"))
        cache = self.out / "cache"
        with self.accelerator.main_process_first():  # one process builds the frame cache, the others read it
            self.train_frames = DemoFrames(self.datasets, self.train_keys, self.policy.config.cameras, resize,
                                           cache, progress=progress and self.is_main)
            if self.val_keys:
                self.val_frames = DemoFrames(self.datasets, self.val_keys, self.policy.config.cameras, resize, cache)
            else:  # too few episodes to hold any out: still track the fit, on fixed training frames
                log.warning("no held-out episodes (fewer than 3 per task): validation uses training episodes")
                self.val_frames = self.train_frames
        self.val_source = "held_out" if self.val_keys else "training_episodes"
        self.example_obs = _example_observation(self.datasets, self.train_keys[0], self.policy.config.cameras)
        self._tb = None

    # ------------------------------------------------------------------------------------------ helpers
    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def tb(self):
        if self._tb is None and self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out / "tb"))
        return self._tb

    def _scalars(self, prefix: str, values: dict[str, float]) -> None:
        if self.tb is not None:
            for name, value in values.items():
                self.tb.add_scalar(f"{prefix}/{name}", value, self.step)

    def _manifest(self) -> dict:
        return {"datasets": [{"root": str(r), "train_episodes": sum(1 for d, _ in self.train_keys if d == n),
                              "fingerprint": f} for n, (r, f) in enumerate(zip(self.roots, self.fingerprints,
                                                                               strict=True))],
                "data_hashes": {str(r): f for r, f in zip(self.roots, self.fingerprints, strict=True)},
                "train_steps": self.step, "train_config": str(self.out / CONFIG_FILE),
                "split": str(self.out / SPLIT_FILE)}

    def _update_clock(self) -> None:
        """Accumulate training wall time across resumes (what a benchmark reports as training time)."""
        now = time.perf_counter()
        self.state["train_seconds"] = self.state.get("train_seconds", 0.0) + now - self._clock
        self._clock = now

    def _save_checkpoint(self, optimizer, scheduler) -> None:
        self._update_clock()
        if self.is_main:
            ckpt.save_training_checkpoint(
                self.out, self.step, lambda d: self.policy.save(d, self.example_obs, self._manifest()),
                optimizer, scheduler, {k: v for k, v in self.state.items() if k != "step"},
                keep=self.cfg.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _save_policy(self, directory: Path) -> Path:
        """A servable checkpoint (no training state), swapped in atomically."""
        tmp = directory.with_name(f".{directory.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.policy.save(tmp, self.example_obs, self._manifest())
        old = directory.with_name(f".{directory.name}.old")
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
        return directory

    # ----------------------------------------------------------------------------------------- metrics
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Held-out token cross-entropy, token accuracy and action L1 (normalized units), decoded as served
        (``greedy_decoding``); the gripper counts as right when on the right side of 0."""
        frames = self.val_frames
        model = self.policy.model
        model.eval()
        transform = self.policy.sample_transform()
        chunk = self.policy.config.chunk_size
        tokenizer = self.policy.action_tokenizer
        ce, correct, l1, gripper, n = 0.0, 0.0, 0.0, 0.0, 0
        for batch, tokens in frames_batches(frames, transform, chunk, fixed_frames(frames, self.cfg.val_frames),
                                            self.cfg.batch_size):
            with self.accelerator.autocast():
                logits = model(batch.to(model.device)).float().cpu()
            predicted = greedy_tokens(logits, self.policy.config.greedy_decoding)
            ce += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="sum"))
            correct += float((predicted == tokens).sum())
            error = np.abs(tokenizer.decode(predicted.numpy()) - tokenizer.decode(tokens.numpy()))
            l1 += float(error[..., :-1].mean(-1).sum())
            gripper += float((error[..., -1] < 1.0).sum())
            n += tokens.shape[0]
        model.train()
        t = n * tokens.shape[1]
        return {"loss": ce / t, "token_accuracy": correct / t, "action_l1": l1 / (n * chunk),
                "gripper_accuracy": gripper / (n * chunk)}

    def evaluate_in_sim(self) -> dict[str, Any]:
        """Success rate of the current policy in the LIBERO twin (cfg.eval), saved under ``eval/step-N``."""
        from wovr_core.policy.evaluate import EvalConfig, evaluate_checkpoint

        ecfg = self.cfg.eval
        where = self.out / "eval" / ckpt.checkpoint_name(self.step)
        policy_dir = self._save_policy(where / "policy")
        config = EvalConfig(suite=ecfg.suite, tasks=ecfg.tasks, episodes_per_task=ecfg.episodes_per_task,
                            workers=ecfg.workers, max_steps=ecfg.max_steps, videos=0)
        results = evaluate_checkpoint(policy_dir, config, where, progress=False)
        self._scalars("eval", {"success": results["average_success"]})
        log.info("step %d: %s success %.1f%%", self.step, ecfg.suite, 100 * results["average_success"])
        return results

    # --------------------------------------------------------------------------------------------- loop
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        model = self.policy.model
        # No weight decay on embeddings (tokens, patches, positions, cameras), norms and biases.
        decays = {n: p.ndim >= 2 and "embed" not in n for n, p in model.named_parameters()}
        decay = [p for n, p in model.named_parameters() if decays[n]]
        no_decay = [p for n, p in model.named_parameters() if not decays[n]]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.optim.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}],
                                      lr=cfg.optim.lr, betas=tuple(cfg.optim.betas))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
        if self.resume_from is not None:
            self.state = ckpt.restore_training_state(self.resume_from, optimizer, scheduler)
        wrapped, optimizer = self.accelerator.prepare(model, optimizer)
        shift = int(round(cfg.augment_shift * model.image_size))
        sampler = ChunkSampler(self.train_frames, self.policy.sample_transform(), self.policy.config.chunk_size,
                               cfg.batch_size, cfg.seed, self.accelerator.process_index, shift)
        loader = torch.utils.data.DataLoader(sampler, batch_size=None, sampler=range(self.step, cfg.max_steps),
                                             num_workers=cfg.num_workers, collate_fn=_identity)
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train-policy", unit="step",
                   disable=not (self.progress and self.is_main), dynamic_ncols=True)
        last_saved, tick, tick_step = self.step, time.perf_counter(), self.step
        self._clock = time.perf_counter()
        try:
            with _stop_on_signals():
                for batch, tokens in loader:
                    with self.accelerator.autocast():
                        logits = wrapped(batch.to(self.accelerator.device))
                    loss = sft_loss_from_logits(logits, tokens, cfg.smoothing_sigma)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"step {self.step + 1}: the loss is {loss.item()}; the last "
                                                 f"checkpoint is step {last_saved} (lower the learning rate)")
                    self.accelerator.backward(loss)
                    grad_norm = self.accelerator.clip_grad_norm_(wrapped.parameters(), cfg.optim.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    self.state["step"] = self.step + 1
                    bar.update(1)
                    if self.step % cfg.log_every == 0:
                        rate = (self.step - tick_step) / (time.perf_counter() - tick)
                        tick, tick_step = time.perf_counter(), self.step
                        self._scalars("train", {"loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                                                "grad_norm": float(grad_norm), "steps_per_s": rate})
                        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
                    if self.step % cfg.val_every == 0 or self.step == cfg.max_steps:
                        self._record_validation()
                    if self.step % cfg.checkpoint_every == 0 or self.step == cfg.max_steps:
                        self._save_checkpoint(optimizer, scheduler)
                        last_saved = self.step
                    if cfg.eval.every and self.is_main and (self.step % cfg.eval.every == 0
                                                            or self.step == cfg.max_steps):
                        self.state.setdefault("eval", []).append(
                            {"step": self.step, "success": self.evaluate_in_sim()["average_success"]})
        except KeyboardInterrupt as e:
            if self.step > last_saved:
                self._save_checkpoint(optimizer, scheduler)
            bar.close()
            log.warning("interrupted at step %d (checkpointed); run the same command to resume", self.step)
            raise TrainingInterrupted(f"stopped at step {self.step} (checkpointed); run the same command to "
                                      f"resume") from e
        bar.close()
        summary: dict[str, Any] = {}
        if self.is_main:
            self._save_policy(self.out / POLICY_DIR)
            self._update_clock()
            summary = {"out": str(self.out), "policy": str(self.out / POLICY_DIR), "steps": self.step,
                       "train_seconds": self.state["train_seconds"],
                       "validation": self.state["history"][-1] if self.state["history"] else {},
                       "validation_on": self.val_source,
                       "eval": self.state.get("eval", []),
                       "num_parameters": sum(p.numel() for p in model.parameters()),
                       **describe_split(self.datasets, self.train_keys, self.val_keys)}
            (self.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        if self._tb is not None:
            self._tb.close()
        return summary

    def _record_validation(self) -> None:
        if not self.is_main:
            return
        metrics = self.validate()
        self._scalars("val", metrics)
        self.state["history"].append({"step": self.step, **metrics})
        log.info("step %d: validation %s", self.step, {k: round(v, 4) for k, v in metrics.items()})


def train_policy(cfg: PolicyTrainConfig, data: Sequence[str | Path], out: str | Path, preset: str | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a run; returns the summary."""
    return PolicyTrainer(cfg, data, out, preset=preset, progress=progress).run()
