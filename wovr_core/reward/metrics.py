"""Classification metrics of the success classifier: accuracy, precision/recall and calibration."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def binary_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Frame-level metrics. Accuracy alone flatters a rare positive class, so balanced accuracy, precision,
    recall and F1 come with it."""
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, bool)
    pred = p >= threshold
    tp = int(np.sum(pred & y))
    tn = int(np.sum(~pred & ~y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    n = max(1, len(y))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    specificity = tn / (tn + fp) if tn + fp else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    eps = 1e-7
    bce = float(-np.mean(y * np.log(np.clip(p, eps, 1)) + (~y) * np.log(np.clip(1 - p, eps, 1)))) if len(y) else 0.0
    return {"accuracy": (tp + tn) / n, "balanced_accuracy": float(np.nanmean([recall, specificity])),
            "precision": precision, "recall": recall, "specificity": specificity, "f1": f1, "bce": bce,
            "frames": int(len(y)), "positives": int(y.sum()), "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def calibration_curve(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict:
    """Reliability diagram in equal-width bins of predicted probability, and the expected calibration error."""
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        if count:
            conf, freq = float(p[mask].mean()), float(y[mask].mean())
            ece += count / max(1, len(p)) * abs(conf - freq)
        else:
            conf = freq = float("nan")
        rows.append({"bin": [float(edges[b]), float(edges[b + 1])], "mean_probability": conf,
                     "fraction_positive": freq, "count": count})
    return {"bins": rows, "ece": ece}


def episode_metrics(per_episode: list[tuple[np.ndarray, np.ndarray, bool | None]], threshold: float,
                    done_threshold: float) -> dict[str, float]:
    """Episode-level agreement: does max p cross ``threshold`` exactly in successful episodes, and how far
    from the true first success frame does the first frame with p >= ``done_threshold`` fall?"""
    agree, offsets = [], []
    for probs, labels, success in per_episode:
        if success is None:
            continue
        predicted = bool(np.max(probs) >= threshold) if len(probs) else False
        agree.append(predicted == bool(success))
        if success and labels.any() and (probs >= done_threshold).any():
            offsets.append(int(np.argmax(probs >= done_threshold)) - int(np.argmax(labels)))
    return {"episode_agreement": float(np.mean(agree)) if agree else float("nan"),
            "episodes": len(agree),
            "mean_abs_done_offset_frames": float(np.mean(np.abs(offsets))) if offsets else float("nan")}


def json_ready(value: Any) -> Any:
    """A report with NaN/inf (undefined metrics, empty calibration bins) as None, so the JSON is standard."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
