"""``wovr train-reward``: fit the success classifier and evaluate it on held-out episodes.

Output directory: the checkpoint (``config.json``, ``model.safetensors``) plus ``metrics.json`` (held-out
accuracy, precision/recall, calibration curve, episode agreement), ``split.json`` (train / val / test
episodes) and ``tb/``. The run is short (minutes) and keeps its best weights in memory; a killed run is
simply started again.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from wovr_core.config import save_config
from wovr_core.errors import DataError
from wovr_core.reward.config import RewardTrainConfig
from wovr_core.reward.data import (
    EpisodeKey,
    FrameBank,
    build_frame_bank,
    frame_labels,
    open_datasets,
    positive_rate,
    split_episodes,
)
from wovr_core.reward.metrics import binary_metrics, calibration_curve, episode_metrics, json_ready
from wovr_core.reward.model import SuccessClassifier
from wovr_core.types import EpisodeView

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def _tasks(datasets) -> list[str]:
    """Every instruction of the datasets, in first-seen order (stable across runs on the same data)."""
    seen: dict[str, None] = {}
    for ds in datasets:
        for ep in ds.episodes:
            seen.setdefault(ep.task, None)
    return list(seen)


def _augment(images: torch.Tensor, rng: np.random.Generator, shift: int, jitter: float) -> torch.Tensor:
    """Random translation (edge-padded) and brightness/contrast jitter, per image."""
    n, _, h, w = images.shape
    if shift:
        padded = F.pad(images, (shift, shift, shift, shift), mode="replicate")
        dy = rng.integers(0, 2 * shift + 1, n)
        dx = rng.integers(0, 2 * shift + 1, n)
        images = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if jitter:
        gain = torch.as_tensor(1 + rng.uniform(-jitter, jitter, (n, 1, 1, 1)), dtype=images.dtype)
        bias = torch.as_tensor(rng.uniform(-jitter, jitter, (n, 1, 1, 1)), dtype=images.dtype)
        images = (images * gain + bias).clamp(-1, 1)
    return images


def _log_odds(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _balanced_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of the per-class BCE: a validation loss that a rare positive class cannot hide in."""
    losses = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
    parts = [losses[labels == v].mean() for v in (True, False) if (labels == v).any()]
    return torch.stack(parts).mean()


class RewardTrainer:
    """Trains the success classifier; with ``view`` (how imagination shows an episode), ``cfg.viewed_fraction``
    of every batch is seen through it, and the held-out report is given for viewed frames too."""

    def __init__(self, cfg: RewardTrainConfig, data: Sequence[str | Path], out: str | Path, preset: str | None = None,
                 view: EpisodeView | None = None):
        self.cfg = cfg
        self.view = view
        self.out = Path(out).expanduser()
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.roots = [Path(r).expanduser().resolve() for r in data]
        self.datasets = open_datasets(self.roots, cfg.model.cameras)
        rest, self.test_keys = split_episodes(self.datasets, cfg.test_fraction, cfg.seed)
        self.train_keys, self.val_keys = split_episodes(self.datasets, cfg.val_fraction, cfg.seed + 1, keys=rest)
        tasks = _tasks(self.datasets)
        self.cfg = cfg = replace(cfg, model=replace(cfg.model, tasks=tuple(tasks)))
        save_config(cfg, self.out, preset=preset, filename="train_config.json")
        (self.out / "split.json").write_text(json.dumps({
            "datasets": [str(r) for r in self.roots], "train": self.train_keys, "val": self.val_keys,
            "test": self.test_keys}) + "\n")
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(cfg.seed)
        self.model = SuccessClassifier(cfg.model).to(self.device)
        self.rng = np.random.default_rng(cfg.seed)
        log.info("episodes: %d train, %d validation, %d held out for the report; %d tasks", len(self.train_keys),
                 len(self.val_keys), len(self.test_keys), len(tasks))

    def _bank(self, keys: Sequence[EpisodeKey], every_frame: bool = False, view: EpisodeView | None = None
              ) -> FrameBank:
        cfg = self.cfg
        return build_frame_bank(self.datasets, keys, cfg.model.cameras, cfg.model.tasks, cfg.success_column,
                                cfg.success_tail_frames, None if every_frame else cfg.negatives_per_episode,
                                cfg.hard_negative_frames, view)

    def _batch(self, bank: FrameBank, index: np.ndarray, viewed: np.ndarray | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = {c: bank.frames[c][index] for c in self.cfg.model.cameras}
        if viewed is not None and viewed.any():
            for c in frames:
                frames[c][viewed] = bank.viewed[c][index[viewed]]  # fancy indexing above copied: the bank is untouched
        images = self.model.to_images(frames)
        return (images, torch.as_tensor(bank.task_index[index], device=self.device),
                torch.as_tensor(bank.labels[index], device=self.device))

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        start = time.perf_counter()
        train_bank = self._bank(self.train_keys, view=self.view)
        # Every frame: the real share of success frames; through the view too, where the model will be used.
        val_bank = self._bank(self.val_keys, every_frame=True, view=self.view)
        pos, neg = train_bank.positives, train_bank.negatives
        if not len(pos) or not len(neg):
            raise DataError(f"training frames need both classes; got {len(pos)} positive and {len(neg)} negative "
                            f"(collect successful and failed episodes)")
        prior = positive_rate(self.datasets, self.train_keys, cfg.success_column, cfg.success_tail_frames)
        self.model.logit_offset.fill_(_log_odds(prior) - _log_odds(cfg.positive_fraction))
        log.info("training bank: %d positive, %d negative frames (%.0f s); %.2f%% of all training frames are "
                 "positive", len(pos), len(neg), time.perf_counter() - start, 100 * prior)
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(self.out / "tb"))
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_pos = max(1, int(round(cfg.positive_fraction * cfg.batch_size)))
        best, best_state, bad, history = math.inf, None, 0, []
        step = 0
        while step < cfg.max_steps and bad < cfg.patience:
            index = np.concatenate([self.rng.choice(pos, n_pos), self.rng.choice(neg, cfg.batch_size - n_pos)])
            viewed = self.rng.random(len(index)) < cfg.viewed_fraction if self.view else None
            images, task, labels = self._batch(train_bank, index, viewed)
            images = _augment(images, self.rng, cfg.shift_pixels, cfg.color_jitter)
            self.model.train()
            loss = F.binary_cross_entropy_with_logits(self.model.balanced_logits(images, task), labels.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 10 == 0:
                tb.add_scalar("reward/train_bce", loss.item(), step)
            if step % cfg.val_every == 0 or step == cfg.max_steps:
                val = self._validate(val_bank)
                history.append({"step": step, **val})
                for k, v in val.items():
                    tb.add_scalar(f"reward/val_{k}", v, step)
                if val["bce"] < best - 1e-4:
                    best, bad = val["bce"], 0
                    best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                else:
                    bad += 1
                viewed_note = (f", viewed {val['viewed_balanced_accuracy']:.3f}" if "viewed_balanced_accuracy" in val
                               else "")
                log.info("step %d: train bce %.4f; validation bce %.4f, accuracy %.4f, balanced accuracy %.3f%s "
                         "(best bce %.4f, %d/%d)", step, loss.item(), val["bce"], val["accuracy"],
                         val["balanced_accuracy"], viewed_note, best, bad, cfg.patience)
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.save(self.out)
        report = evaluate_reward_model(self.model, self.datasets, self.test_keys, cfg)
        if self.view is not None:
            through = evaluate_reward_model(self.model, self.datasets, self.test_keys, cfg, self.view)
            report["viewed"] = {k: through[k] for k in VIEWED_REPORT}
        report.update(train_steps=step, history=history, seconds=time.perf_counter() - start,
                      train_frames={"positive": int(len(pos)), "negative": int(len(neg))})
        (self.out / METRICS_FILE).write_text(json.dumps(json_ready(report), indent=2) + "\n")
        tb.close()
        return report

    @torch.no_grad()
    def _validate(self, bank: FrameBank) -> dict[str, float]:
        """Camera frames, and viewed frames when the bank has them (``viewed_*``); ``bce``, the early-stopping
        metric, is the mean of the two BCEs then."""
        metrics = self._validate_frames(bank, viewed=False)
        if bank.viewed is None:
            return metrics
        viewed = {f"viewed_{k}": v for k, v in self._validate_frames(bank, viewed=True).items()}
        return {**metrics, **viewed, "camera_bce": metrics["bce"], "bce": (metrics["bce"] + viewed["viewed_bce"]) / 2}

    @torch.no_grad()
    def _validate_frames(self, bank: FrameBank, viewed: bool) -> dict[str, float]:
        self.model.eval()
        logits, labels = [], []
        for lo in range(0, len(bank.labels), 256):
            index = np.arange(lo, min(lo + 256, len(bank.labels)))
            images, task, y = self._batch(bank, index, np.full(len(index), viewed))
            logits.append(self.model(images, task).float())
            labels.append(y)
        logit, label = torch.cat(logits), torch.cat(labels)
        m = binary_metrics(torch.sigmoid(logit).cpu().numpy(), label.cpu().numpy(), self.cfg.model.threshold)
        # Early stopping on the BCE of every validation frame: calibrated probabilities at the real share of
        # success frames, which is what both frame accuracy and the RL reward (p differences) depend on.
        return {"bce": F.binary_cross_entropy_with_logits(logit, label.float()).item(),
                "balanced_bce": _balanced_loss(logit, label).item(), "accuracy": m["accuracy"],
                "balanced_accuracy": m["balanced_accuracy"]}


VIEWED_REPORT = ("accuracy", "balanced_accuracy", "precision", "recall", "episode_agreement")


def evaluate_reward_model(model: SuccessClassifier, datasets, keys: Sequence[EpisodeKey],
                          cfg: RewardTrainConfig, view: EpisodeView | None = None) -> dict[str, Any]:
    """Every frame of the given (held-out) episodes against its label: frame metrics, calibration curve and
    episode-level agreement (of the frames seen through ``view`` when given)."""
    probs, labels, per_episode = [], [], []
    for d, i in keys:
        ep = datasets[d].episode(i)
        y = frame_labels(ep, cfg.success_column, cfg.success_tail_frames)
        if y is None:
            continue
        frames = {c: ep.frames(c) for c in model.config.cameras}
        if view is not None:
            frames = view(frames, np.asarray(ep.actions, np.float32))
        p = model.success_probability(frames, ep.task)
        probs.append(p)
        labels.append(y)
        per_episode.append((p, y, ep.meta.success))
    if not probs:
        raise DataError("no labelled held-out episodes to evaluate on")
    p, y = np.concatenate(probs), np.concatenate(labels)
    mcfg = model.config
    return {"held_out_episodes": [list(k) for k in keys],
            **binary_metrics(p, y, mcfg.threshold),
            "all_negative_accuracy": float(1 - y.mean()),  # what always answering "not yet" scores
            "calibration": calibration_curve(p, y, cfg.calibration_bins),
            **episode_metrics(per_episode, mcfg.threshold, mcfg.done_threshold),
            "label_rule": (f"per-frame '{cfg.success_column}' column when present, else the last "
                           f"{cfg.success_tail_frames} frames of successful episodes")}


def train_reward_model(cfg: RewardTrainConfig, data: Sequence[str | Path], out: str | Path,
                       preset: str | None = None, view: EpisodeView | None = None) -> dict[str, Any]:
    """Train, save the best model into ``out`` and return the held-out report (also ``out/metrics.json``)."""
    return RewardTrainer(cfg, data, out, preset, view).run()
