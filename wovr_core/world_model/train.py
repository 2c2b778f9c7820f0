"""``wovr train-wm``: fit the world model on episode datasets (demos and policy rollouts, successes and
failures alike), resumably.

Stages: ``autoencoder`` (frame codecs trained here, from scratch or on from ``codec.pretrained_path``;
skipped for a pretrained Wan VAE), then ``denoiser``
(the codec frozen). Each stage validates every ``val_every`` steps on held-out episodes and stops at
``max_steps`` or after ``patience`` validations without a relative improvement of ``min_delta``. The denoiser
stage keeps an exponential moving average of its weights (``ema_decay``): that average is what is validated
and saved as the model.

Resuming is exact: every random draw of step ``s`` (clip choice, augmentation, noise, t) comes from a
generator seeded by ``(seed, stage, s)`` and the episode pool's content is a function of ``s``, so a run
killed after its checkpoint at step ``s`` and resumed computes the same steps ``s + 1...`` as an
uninterrupted run (same thread count and device).

Run directory::

    <out>/config.json        the train config          <out>/split.json     train/val episodes, data hashes
    <out>/checkpoints/       resumable checkpoints     <out>/model/         best world model so far
    <out>/tb/                TensorBoard (losses, PSNR, imagined-vs-real grids)
    <out>/videos/            side-by-side validation rollouts      <out>/summary.json   final metrics
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wovr_core.config import ConfigError, load_config, save_config, to_dict
from wovr_core.errors import DataError
from wovr_core.transforms import NormStats
from wovr_core.world_model import checkpoint as ckpt
from wovr_core.world_model.config import WorldModelTrainConfig
from wovr_core.world_model.data import (
    ClipSampler,
    ClipSpec,
    EpisodeKey,
    EpisodePool,
    LoadedEpisode,
    dataset_fingerprint,
    load_episode,
    open_datasets,
    pick_episode,
    split_episodes,
    window_frames,
)
from wovr_core.world_model.evaluate import rollout_open_loop
from wovr_core.world_model.metrics import psnr
from wovr_core.world_model.model import ActionContrast, WorldModel, without_commands
from wovr_core.world_model.visualize import frame_grid, side_by_side, stack_rows, write_mp4

log = logging.getLogger(__name__)

STAGES = ("autoencoder", "denoiser", "done")
SPLIT_FILE = "split.json"
MODEL_DIR = "model"
# Settings that may change when a run is resumed (they decide when and how often, not what is learned).
RESUMABLE_CHANGES = {"max_steps", "ae_max_steps", "patience", "min_delta", "val_every", "ae_val_every",
                     "checkpoint_every", "keep_checkpoints", "threads", "log_images_every"}
VAL_ROLLOUT_EPISODES = 4
LOG_EVERY = 50  # steps between loss lines in the log when no progress bar is shown


def drop_commands(actions: torch.Tensor, rng: np.random.Generator, share: float, context_frames: int) -> torch.Tensor:
    """Each window's generated-frame actions replaced by NULL_ACTION with probability ``share`` (action
    dropout: the model also learns what it predicts without a command, which action guidance needs)."""
    drop = torch.as_tensor(rng.random(len(actions)) < share, device=actions.device).view(-1, 1, 1)
    return torch.where(drop, without_commands(actions, context_frames), actions)


def reverse_chunk_translation(actions: torch.Tensor, context_frames: int) -> torch.Tensor:
    """The (B, N, 7) normalized window actions with the generated chunk's translation commands negated: the
    arm told to move the other way from the same frames (the action contrast's altered actions)."""
    reversed_actions = actions.clone()
    reversed_actions[:, context_frames:, :3] *= -1
    return reversed_actions


# ------------------------------------------------------------------------------------------- run setup
def _check_or_save_config(cfg: WorldModelTrainConfig, out: Path, preset: str | None) -> None:
    path = out / "config.json"
    if not path.exists():
        save_config(cfg, out, preset=preset)
        return
    saved = load_config(path, WorldModelTrainConfig)
    old, new = to_dict(saved), to_dict(cfg)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        raise ConfigError(f"{out} holds a run with a different config ({', '.join(changed)} differ); resume with "
                          f"the same settings or choose a new --out")
    save_config(cfg, out, preset=preset)


def _split(datasets, roots: Sequence[Path], cfg: WorldModelTrainConfig, out: Path, min_length: int
           ) -> tuple[list[EpisodeKey], list[EpisodeKey]]:
    """The train/val split of this run: made once, then read back on resume so validation stays held out."""
    path = out / SPLIT_FILE
    fingerprints = [dataset_fingerprint(r) for r in roots]
    if path.exists():
        try:
            saved = json.loads(path.read_text())
            train, val = [tuple(k) for k in saved["train"]], [tuple(k) for k in saved["val"]]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: unreadable split of this run ({type(e).__name__}: {e})") from None
        if saved.get("datasets") != [str(r) for r in roots]:
            raise ConfigError(f"{path}: this run was trained on {saved.get('datasets')}, not {[str(r) for r in roots]}")
        if saved.get("fingerprints") != fingerprints:
            log.warning("datasets changed since this run started; keeping its split (new episodes are unused)")
        return train, val
    train, val = split_episodes(datasets, cfg.val_fraction, cfg.seed, min_length)
    path.write_text(json.dumps({"datasets": [str(r) for r in roots], "fingerprints": fingerprints,
                                "train": train, "val": val}, indent=1) + "\n")
    return train, val


def _action_stats(datasets, keys: Sequence[EpisodeKey]) -> NormStats:
    # actions[0] of each episode is the placeholder; the model never has to reproduce it.
    actions = np.concatenate([np.asarray(datasets[d].episode(i).actions)[1:] for d, i in keys])
    return NormStats.compute(actions)


def _manifest(roots, fingerprints, stage: str, step: int, metrics: dict) -> dict:
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stage": stage, "step": step,
            "datasets": [{"root": str(r), "fingerprint": f} for r, f in zip(roots, fingerprints, strict=True)],
            "metrics": metrics}


class _Stopper:
    """Early stopping on a lower-is-better metric, with relative tolerance."""

    def __init__(self, patience: int, min_delta: float, best: float = math.inf, bad: int = 0):
        self.patience, self.min_delta, self.best, self.bad = patience, min_delta, best, bad

    def update(self, value: float) -> bool:
        """Record a validation; True when it is a new best."""
        if value < self.best - self.min_delta * abs(self.best if math.isfinite(self.best) else value):
            self.best, self.bad = value, 0
            return True
        self.bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad >= self.patience


# -------------------------------------------------------------------------------------------- trainer
class WorldModelTrainer:
    def __init__(self, cfg: WorldModelTrainConfig, data: Sequence[str | Path], out: str | Path,
                 preset: str | None = None, init_from: str | Path | None = None, progress: bool | None = None):
        from wovr_core.accelerator import make_accelerator

        self.cfg = cfg
        self.progress = progress
        self.out = Path(out).expanduser()
        self.out.mkdir(parents=True, exist_ok=True)
        self.roots = [Path(r).expanduser().resolve() for r in data]
        _check_or_save_config(cfg, self.out, preset)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.accelerator = make_accelerator(cfg.mixed_precision)
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process
        mcfg = cfg.model
        self.sampler = ClipSampler(mcfg.memory_frames, mcfg.chunk_frames, cfg.augment.static_prob,
                                   cfg.augment.reset_prob)
        self.datasets = open_datasets(self.roots, mcfg.cameras)
        self.fingerprints = [dataset_fingerprint(r) for r in self.roots]
        self.train_keys, self.val_keys = _split(self.datasets, self.roots, cfg, self.out, self.sampler.min_length)
        if not self.val_keys:
            log.warning("no held-out episodes (too few episodes): validating on training episodes")
        log.info("episodes: %d train, %d validation", len(self.train_keys), len(self.val_keys))

        self.resume_from = ckpt.latest_checkpoint(self.out)
        if self.resume_from is not None:
            self.state = ckpt.read_trainer_state(self.resume_from)
            self.model = WorldModel.load(self.resume_from)
            log.info("resuming from %s (stage %s, step %d)", self.resume_from.name, self.state["stage"],
                     self.state["step"])
            if self.state["stage"] == "done":
                self._reopen_finished_denoiser()
        else:
            torch.manual_seed(cfg.seed)  # the initial weights are part of what a seed reproduces
            if init_from is not None:
                # Fine-tuning (e.g. PACE: the model refined on the updated policy's rollouts) keeps the base
                # model's codec, config and action normalization, so its inputs mean what they meant.
                self.model = WorldModel.load(init_from)
                if to_dict(self.model.config) != to_dict(mcfg):
                    log.warning("--init-from: using the model config stored in %s, not the requested one", init_from)
                first = "denoiser"
            else:
                self.model = WorldModel.build(mcfg, _action_stats(self.datasets, self.train_keys))
                first = "autoencoder" if self.model.codec.trainable else "denoiser"
            self.state = {"stage": first, "step": 0, "global_step": 0, "best": None, "bad": 0, "history": []}
        self.model.to(self.device)
        self.val_episodes: list[LoadedEpisode] | None = None
        self._tb = None

    # ---- helpers -------------------------------------------------------------------------------------------
    @property
    def tb(self):
        if self._tb is None and self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out / "tb"))
        return self._tb

    def _scalar(self, name: str, value: float) -> None:
        if self.tb is not None:
            self.tb.add_scalar(name, value, self.state["global_step"])

    def _step_randomness(self, stage: str, step: int) -> tuple[np.random.Generator, torch.Generator]:
        """The generators of one training step: a function of (seed, stage, step, process), not of history."""
        rng = np.random.default_rng([self.cfg.seed, STAGES.index(stage), step, self.accelerator.process_index])
        return rng, torch.Generator().manual_seed(int(rng.integers(2**62)))

    def _progress_bar(self, stage: str, total: int):
        from tqdm import tqdm

        # None: shown on a terminal only (logs of unattended runs get the periodic loss lines instead).
        disable = (not self.is_main) or (None if self.progress is None else not self.progress)
        return tqdm(total=total, initial=min(self.state["step"], total), desc=stage, unit="step",
                    dynamic_ncols=True, disable=disable)

    def _log_step(self, bar, stage: str, loss: float, tick: list[float]) -> None:
        step = self.state["step"]
        if bar.disable:
            if step % LOG_EVERY == 0:
                rate = LOG_EVERY / (time.perf_counter() - tick[0])
                tick[0] = time.perf_counter()
                log.info("%s step %d: loss %.4f (%.2f steps/s)", stage, step, loss, rate)
        else:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def _val_keys(self) -> list[EpisodeKey]:
        return self.val_keys or self.train_keys[:VAL_ROLLOUT_EPISODES]

    def _load_val_episodes(self) -> list[LoadedEpisode]:
        if self.val_episodes is None:
            mcfg = self.cfg.model
            keys = self._val_keys()[: max(VAL_ROLLOUT_EPISODES, 8)]
            self.val_episodes = [load_episode(self.datasets, k, mcfg.cameras, mcfg.image_size) for k in keys]
        return self.val_episodes

    def _save(self, optimizer, tag: str | None = None, ema: WeightAverage | None = None) -> None:
        if not self.is_main:
            return
        model = self.model
        state = dict(self.state)
        manifest = _manifest(self.roots, self.fingerprints, state["stage"], state["step"], state.get("last_val", {}))
        name = tag or f"step-{state['global_step']:07d}"

        def write(directory: Path) -> None:
            model.save(directory, manifest)
            if ema is not None:
                ema.save(directory / ckpt.EMA_FILE)

        ckpt.save_checkpoint(self.out, name, write, optimizer, state, keep=self.cfg.keep_checkpoints)

    def _save_best(self) -> None:
        if not self.is_main:
            return
        final = self.out / MODEL_DIR
        tmp = self.out / f".{MODEL_DIR}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        manifest = _manifest(self.roots, self.fingerprints, self.state["stage"], self.state["step"],
                             self.state.get("last_val", {}))
        manifest["split"] = str(self.out / SPLIT_FILE)
        self.model.save(tmp, manifest)
        old = self.out / f".{MODEL_DIR}.old"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def _optimizer(self, params, lr: float):
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=self.cfg.weight_decay, betas=(0.9, 0.99))
        warmup = max(1, self.cfg.warmup_steps)
        # Constant after warm-up: the stopping rule, not a schedule length, decides when training ends.
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
        return opt, sched

    def _resume_optimizer(self, optimizer, scheduler, stage: str) -> None:
        if self.resume_from is not None and self.state["stage"] == stage and self.state["step"] > 0:
            if ckpt.load_optimizer(self.resume_from, optimizer, self.state):
                log.info("optimizer state restored (step %d)", self.state["step"])
            with warnings.catch_warnings():  # "scheduler stepped before the optimizer": intended here
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(self.state["step"]):  # the schedule is a pure function of the step
                    scheduler.step()

    def _reopen_finished_denoiser(self) -> None:
        """A finished run goes on training when max_steps or patience now allow more denoiser steps."""
        ended = self.state.get("denoiser_end")
        if ended is None:
            log.info("the run is finished and its last checkpoint has no optimizer state to continue from")
            return
        if ended["step"] >= self.cfg.max_steps or ended["bad"] >= self.cfg.patience:
            log.info("the run is finished (denoiser step %d, %d validations without improvement); raise max_steps "
                     "or patience to train on", ended["step"], ended["bad"])
            return
        log.info("continuing the finished denoiser stage: step %d -> max_steps %d", ended["step"], self.cfg.max_steps)
        del self.state["denoiser_end"]
        self.state.update(stage="denoiser", **ended)

    def _next_stage(self, stage: str) -> None:
        self.state.update(stage=stage, step=0, best=None, bad=0)

    def _pool(self, seed_offset: int) -> EpisodePool:
        cfg = self.cfg
        return EpisodePool(self.datasets, self.train_keys, cfg.model.cameras, cfg.pool_episodes, cfg.model.image_size,
                           cfg.seed + seed_offset, position=self.state["step"] // cfg.pool_refresh)

    # ---- the run --------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if self.state["stage"] == "autoencoder":
            self.train_autoencoder()
            self._next_stage("denoiser")
            self._save(None)
        if self.state["stage"] == "denoiser":
            self.train_denoiser()
        summary = {"out": str(self.out), "model": str(self.out / MODEL_DIR), "history": self.state["history"],
                   "best": self.state.get("best_by_stage", {}), "global_step": self.state["global_step"]}
        if self.is_main:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self._tb is not None:
            self._tb.close()
        return summary

    # ---- stage 1: the frame autoencoder ---------------------------------------------------------------------
    def train_autoencoder(self) -> None:
        cfg = self.cfg
        ae = self.model.codec.autoencoder
        ae.train().requires_grad_(True)
        optimizer, scheduler = self._optimizer(ae.parameters(), cfg.ae_lr)
        self._resume_optimizer(optimizer, scheduler, "autoencoder")
        ae_p, optimizer = self.accelerator.prepare(ae, optimizer)
        pool = self._pool(seed_offset=0)
        val_images = self._ae_val_images()
        stopper = _Stopper(cfg.patience, cfg.min_delta, self.state["best"] or math.inf, self.state["bad"])
        log.info("stage autoencoder: %s", _describe(ae))
        tick = [time.perf_counter()]
        with self._progress_bar("autoencoder", cfg.ae_max_steps) as bar:
            while self.state["step"] < cfg.ae_max_steps and not stopper.should_stop:
                rng, gen = self._step_randomness("autoencoder", self.state["step"] + 1)
                images = self._random_images(pool, cfg.ae_batch_size, rng)
                with self.accelerator.autocast():
                    recon, _ = ae_p(images, latent_noise=0.1, generator=gen)
                    loss = torch.nn.functional.l1_loss(recon.float(), images.float()) \
                        + torch.nn.functional.mse_loss(recon.float(), images.float())
                optimizer.zero_grad(set_to_none=True)
                self.accelerator.backward(loss)
                self.accelerator.clip_grad_norm_(ae_p.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                self.state["step"] += 1
                self.state["global_step"] += 1
                step = self.state["step"]
                if step % 10 == 0:
                    self._scalar("autoencoder/loss", loss.item())
                self._log_step(bar, "autoencoder", loss.item(), tick)
                if step % cfg.pool_refresh == 0:
                    pool.advance()
                if step % cfg.ae_val_every == 0 or step == cfg.ae_max_steps:
                    metrics = self._validate_autoencoder(ae, val_images)
                    improved = stopper.update(metrics["val_l1"])
                    self._record("autoencoder", metrics, stopper)
                    if improved:
                        self.state.setdefault("best_by_stage", {})["autoencoder"] = metrics
                        self._save_best()
                if step % cfg.checkpoint_every == 0:
                    self._save(optimizer)
        self._finish_autoencoder(pool)

    def _random_images(self, pool: EpisodePool, n: int, rng: np.random.Generator) -> torch.Tensor:
        eps = pool.episodes()
        lengths = np.array([len(e) for e in eps], float)
        out = []
        for _ in range(n):
            ep = eps[pick_episode(rng, lengths)]
            cam = self.cfg.model.cameras[int(rng.integers(len(self.cfg.model.cameras)))]
            out.append(ep.frames[cam][int(rng.integers(len(ep)))])
        return _to_images(np.stack(out), self.device)

    def _ae_val_images(self) -> torch.Tensor:
        rng = np.random.default_rng(12345)
        frames = []
        for ep in self._load_val_episodes():
            for cam in self.cfg.model.cameras:
                idx = rng.choice(len(ep), size=min(len(ep), 16), replace=False)
                frames.append(ep.frames[cam][np.sort(idx)])
        return _to_images(np.concatenate(frames), torch.device("cpu"))

    @torch.no_grad()
    def _validate_autoencoder(self, ae, images: torch.Tensor) -> dict[str, float]:
        ae.eval()
        recon = torch.cat([ae(images[i:i + 64].to(self.device))[0].float().cpu() for i in range(0, len(images), 64)])
        ae.train()
        l1 = torch.nn.functional.l1_loss(recon, images).item()
        value = psnr(_to_uint8(recon), _to_uint8(images)).mean()
        return {"val_l1": l1, "val_psnr": float(value)}

    @torch.no_grad()
    def _finish_autoencoder(self, pool: EpisodePool) -> None:
        """Load the best weights back and measure per-channel latent statistics for normalization."""
        best = self.out / MODEL_DIR
        ae = self.model.codec.autoencoder
        if best.exists():
            ae.load_state_dict(WorldModel.load(best).codec.autoencoder.state_dict())
        ae.eval().requires_grad_(False)
        if self.state["step"] == 0 and ae.config.latent_std is not None:
            log.info("autoencoder reused as it is (codec.pretrained_path, ae_max_steps=0): its latent statistics kept")
            self._save_best()
            return
        rng = np.random.default_rng([self.cfg.seed, 99])
        images = torch.cat([self._random_images(pool, 64, rng) for _ in range(8)])
        raw = torch.cat([ae.encode_raw(images[i:i + 64]) for i in range(0, len(images), 64)]).float()
        ae.set_latent_stats(raw.mean(dim=(0, 2, 3)), raw.std(dim=(0, 2, 3)))
        log.info("latent statistics: mean %s, std %s", np.round(ae.config.latent_mean, 3).tolist(),
                 np.round(ae.config.latent_std, 3).tolist())
        self._save_best()

    # ---- stage 2: the denoiser ----------------------------------------------------------------------------
    def train_denoiser(self) -> None:
        cfg = self.cfg
        model = self.model
        model.codec.eval().requires_grad_(False)
        model.denoiser.train().requires_grad_(True)
        source = self._latent_source()
        optimizer, scheduler = self._optimizer(model.denoiser.parameters(), cfg.lr)
        self._resume_optimizer(optimizer, scheduler, "denoiser")
        ema = WeightAverage(model.denoiser, cfg.ema_decay) if cfg.ema_decay > 0 else None
        if ema is not None and self.resume_from is not None and self.state["step"] > 0:
            ema.load(self.resume_from / ckpt.EMA_FILE)
        averaged = ema.swapped if ema is not None else contextlib.nullcontext
        model_p, optimizer = self.accelerator.prepare(model, optimizer)
        val_batches = self._val_batches(source)
        stopper = _Stopper(cfg.patience, cfg.min_delta, self.state["best"] or math.inf, self.state["bad"])
        log.info("stage denoiser: %s, %d-frame windows", _describe(model.denoiser), self.sampler.window)
        tick = [time.perf_counter()]
        with self._progress_bar("denoiser", cfg.max_steps) as bar:
            while self.state["step"] < cfg.max_steps and not stopper.should_stop:
                rng, gen = self._step_randomness("denoiser", self.state["step"] + 1)
                latents, actions = source.batch(rng, cfg.batch_size)
                if cfg.action_dropout > 0:
                    actions = drop_commands(actions, rng, cfg.action_dropout, model.config.context_frames)
                contrast = None
                if cfg.action_contrast > 0:
                    contrast = ActionContrast(reverse_chunk_translation(actions, model.config.context_frames),
                                              cfg.action_contrast, cfg.action_contrast_margin)
                with self.accelerator.autocast():
                    loss = model_p(latents, actions, gen, contrast)
                optimizer.zero_grad(set_to_none=True)
                self.accelerator.backward(loss)
                self.accelerator.clip_grad_norm_(model.denoiser.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                self.state["step"] += 1
                self.state["global_step"] += 1
                step = self.state["step"]
                if ema is not None:
                    ema.update(step)
                if step % 10 == 0:
                    self._scalar("denoiser/loss", loss.item())
                    self._scalar("denoiser/lr", scheduler.get_last_lr()[0])
                self._log_step(bar, "denoiser", loss.item(), tick)
                source.after_step(step)
                if step % cfg.val_every == 0 or step == cfg.max_steps:
                    with averaged():  # validated and saved as imagination will use it
                        metrics = self._validate_denoiser(val_batches, images=step % cfg.log_images_every == 0
                                                          or step == cfg.max_steps)
                        improved = stopper.update(metrics["val_loss"])
                        self._record("denoiser", metrics, stopper)
                        if improved:
                            self.state.setdefault("best_by_stage", {})["denoiser"] = metrics
                            self._save_best()
                if step % cfg.checkpoint_every == 0:
                    self._save(optimizer, ema=ema)
        if not (self.out / MODEL_DIR / "transformer").exists():
            with averaged():
                self._save_best()
        # The last checkpoint keeps the optimizer, the weight average and where the stage ended, so a later
        # run with a larger max_steps (or patience) continues it exactly (_reopen_finished_denoiser).
        ended = {k: self.state[k] for k in ("step", "best", "bad")}
        self._next_stage("done")
        self.state["denoiser_end"] = ended
        self._save(optimizer, ema=ema)

    def _record(self, stage: str, metrics: dict, stopper: _Stopper) -> None:
        self.state.update(best=stopper.best, bad=stopper.bad, last_val=metrics)
        self.state["history"].append({"stage": stage, "step": self.state["step"], **metrics})
        for k, v in metrics.items():
            self._scalar(f"{stage}/{k}", v)
        log.info("%s validation at step %d: %s (best %.4f, %d/%d without improvement)", stage, self.state["step"],
                 ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), stopper.best, stopper.bad, stopper.patience)

    def _latent_source(self) -> _LatentSource:
        if self.model.codec.temporal_factor == 1 and self.cfg.cache_latents:
            return _StoredLatents(self, self.train_keys)
        return _PixelWindows(self)

    def _val_batches(self, source: _LatentSource) -> list[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(777)
        sampler = without_augmentation(self.sampler)
        eps = [e for e in self._load_val_episodes() if len(e) >= sampler.min_length]
        if not eps:
            raise DataError("no validation episode is long enough for one training window")
        lengths = np.array([len(e) for e in eps], float)
        specs = []
        for _ in range(self.cfg.val_clips):
            ep = eps[pick_episode(rng, lengths)]
            specs.append((ep, sampler.sample(rng, ep.key, ep.actions)))
        batches = []
        for i in range(0, len(specs), self.cfg.batch_size):
            part = specs[i:i + self.cfg.batch_size]
            batches.append(self._encode_windows([e for e, _ in part], [s for _, s in part]))
        return batches

    @torch.no_grad()
    def _encode_windows(self, episodes: Sequence[LoadedEpisode], specs: Sequence[ClipSpec]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        cams = self.cfg.model.cameras
        frames = {c: np.stack([window_frames(e, s, cams)[c] for e, s in zip(episodes, specs, strict=True)]) for c in cams}
        model = self.model
        latents = model.codec.encode(model.to_video(frames)).float()
        actions = torch.as_tensor(model.normalize_actions(np.stack([s.actions for s in specs])), device=self.device)
        return latents, actions

    @torch.no_grad()
    def _validate_denoiser(self, batches, images: bool) -> dict[str, float]:
        model = self.model
        model.denoiser.eval()
        losses = []
        for i, (latents, actions) in enumerate(batches):
            losses.append(model.loss(latents, actions, generator=torch.Generator().manual_seed(i)).item())
        metrics = {"val_loss": float(np.mean(losses))}
        metrics.update(self._validation_rollouts(images))
        model.denoiser.train()
        return metrics

    @torch.no_grad()
    def _validation_rollouts(self, images: bool) -> dict[str, float]:
        """Open-loop imagination from the first frame of held-out episodes with their real actions."""
        cfg = self.cfg
        model = self.model
        mcfg = cfg.model
        chunks = max(1, math.ceil(cfg.val_rollout_frames / mcfg.chunk_frames))
        horizon = chunks * mcfg.chunk_frames
        eps = [e for e in self._load_val_episodes() if len(e) > horizon][:VAL_ROLLOUT_EPISODES]
        if not eps:
            return {}
        real, imagined = rollout_open_loop(model, eps, chunks)
        values = psnr(np.stack([real[c] for c in mcfg.cameras]), np.stack([imagined[c] for c in mcfg.cameras]))
        metrics = {f"val_psnr_{horizon}": float(values.mean())}
        if images and self.is_main:
            step = self.state["global_step"]
            rows = [side_by_side({c: real[c][i] for c in mcfg.cameras}, {c: imagined[c][i] for c in mcfg.cameras},
                                 mcfg.cameras) for i in range(len(eps))]
            write_mp4(self.out / "videos" / f"val-step-{step:07d}.mp4", stack_rows(rows))
            grid = np.concatenate([frame_grid(real[c][i], imagined[c][i], every=4)
                                   for i in range(len(eps)) for c in mcfg.cameras[:1]], axis=0)
            if self.tb is not None:
                self.tb.add_image("denoiser/imagined_vs_real", grid, step, dataformats="HWC")
        return metrics


# ------------------------------------------------------------------------------------ weight average
class WeightAverage:
    """Exponential moving average of a module's parameters. The decay warms up as min(decay, (1 + s) /
    (10 + s)), so the first averages follow the weights instead of remembering the initialization."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.named = [(name, p) for name, p in module.named_parameters()]
        self.average = [p.detach().clone() for _, p in self.named]

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.average, [p.detach() for _, p in self.named], 1.0 - decay)

    @contextlib.contextmanager
    def swapped(self):
        """The average in the module's place for the duration (the trained weights are put back after)."""
        trained = [p.detach().clone() for _, p in self.named]
        with torch.no_grad():
            for (_, p), a in zip(self.named, self.average, strict=True):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for (_, p), w in zip(self.named, trained, strict=True):
                    p.copy_(w)

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({name: a.contiguous() for (name, _), a in zip(self.named, self.average, strict=True)}, str(path))

    def load(self, path: Path) -> None:
        """Restore an average saved with a checkpoint; a checkpoint without one (written before the average
        was on) restarts it from the current weights."""
        from safetensors.torch import load_file

        if not path.exists():
            log.warning("%s: no weight average in this checkpoint; starting it from the current weights", path.parent)
            return
        try:
            tensors = load_file(str(path))
        except Exception as e:  # safetensors raises several types for corrupt files
            raise DataError(f"{path}: unreadable weight average ({type(e).__name__}: {e})") from None
        names = [name for name, _ in self.named]
        if sorted(tensors) != sorted(names):
            raise DataError(f"{path}: the weight average does not match the model's parameters")
        self.average = [tensors[name].to(p.device, p.dtype) for name, p in self.named]


# ------------------------------------------------------------------------------------ latent sources
class _LatentSource:
    def batch(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        pass


class _PixelWindows(_LatentSource):
    """Windows decoded from a pool of episodes in memory and encoded on the fly (any codec)."""

    def __init__(self, trainer: WorldModelTrainer):
        self.trainer = trainer
        self.pool = trainer._pool(seed_offset=1)

    def batch(self, rng, n):
        sampler = self.trainer.sampler
        eps = self.pool.episodes(sampler.min_length)
        lengths = np.array([len(e) for e in eps], float)
        chosen = [eps[pick_episode(rng, lengths)] for _ in range(n)]
        specs = [sampler.sample(rng, e.key, e.actions) for e in chosen]
        return self.trainer._encode_windows(chosen, specs)

    def after_step(self, step):
        if step % self.trainer.cfg.pool_refresh == 0:
            self.pool.advance()


class _StoredLatents(_LatentSource):
    """Every training frame encoded once (frame-wise codecs): a window is an index lookup."""

    def __init__(self, trainer: WorldModelTrainer, keys: Sequence[EpisodeKey]):
        self.trainer = trainer
        model = trainer.model
        cams = trainer.cfg.model.cameras
        self.latents: list[torch.Tensor] = []
        self.actions: list[np.ndarray] = []
        self.keys: list[EpisodeKey] = []
        start = time.perf_counter()
        for key in keys:
            try:
                ep = load_episode(trainer.datasets, key, cams, trainer.cfg.model.image_size)
            except DataError as e:
                log.warning("leaving out episode %s: %s", key, e)
                continue
            if len(ep) < trainer.sampler.min_length:
                continue
            parts = []
            with torch.no_grad():
                for lo in range(0, len(ep), 64):
                    frames = {c: ep.frames[c][None, lo:lo + 64] for c in cams}
                    parts.append(model.codec.encode(model.to_video(frames))[0].to("cpu", torch.float16))
            self.latents.append(torch.cat(parts, dim=1))  # (C, T, h, w)
            self.actions.append(ep.actions)
            self.keys.append(key)
        if not self.keys:
            raise DataError(f"no training episode has the {trainer.sampler.min_length} frames one window needs")
        self.lengths = np.array([len(a) for a in self.actions], float)
        log.info("encoded %d training frames in %.0f s", int(self.lengths.sum()), time.perf_counter() - start)

    def batch(self, rng, n):
        sampler = self.trainer.sampler
        model = self.trainer.model
        lat, acts = [], []
        for _ in range(n):
            i = pick_episode(rng, self.lengths)
            spec = sampler.sample(rng, self.keys[i], self.actions[i])
            lat.append(self.latents[i][:, spec.frames])
            acts.append(spec.actions)
        device = self.trainer.device
        actions = torch.as_tensor(model.normalize_actions(np.stack(acts)), device=device)
        return torch.stack(lat).to(device, torch.float32), actions


# ------------------------------------------------------------------------------------------------ misc
def without_augmentation(sampler: ClipSampler) -> ClipSampler:
    """The same windows without augmentation (validation measures the real task)."""
    return ClipSampler(sampler.memory, sampler.chunk, 0.0, 0.0)


def _to_images(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x.to(device).contiguous(memory_format=torch.channels_last)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _describe(module: torch.nn.Module) -> str:
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e6:.2f}M parameters"


def train_world_model(cfg: WorldModelTrainConfig, data: Sequence[str | Path], out: str | Path,
                      preset: str | None = None, init_from: str | Path | None = None,
                      progress: bool | None = None) -> dict[str, Any]:
    """Train (or resume) a world-model run; returns the summary also written to ``<out>/summary.json``.

    ``progress``: show a progress bar (None: only when stderr is a terminal)."""
    return WorldModelTrainer(cfg, data, out, preset, init_from, progress).run()
