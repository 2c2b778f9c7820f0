"""World-model fidelity: open-loop replay of real action sequences from the same start.

For each held-out episode the model starts from the episode's first frame(s) and imagines the rest with
the episode's recorded actions, never seeing another real frame. Reported:

* PSNR and SSIM against the real frames, averaged over the first h frames for each horizon h;
* reward-model agreement (p(success) on imagined vs real frames) when a frame scorer is given, and episode
  outcomes: each labelled episode imagined whole under its recorded actions, success or not by the scorer,
  against its recorded outcome (how often imagination invents a success that the same actions did not reach);
* action controllability: displacement of the imagined gripper under constant commands along each axis,
  read by a state probe fitted on real frames (its own held-out error is reported alongside), and the paired
  tracking gain: the + and - command of an axis from the same start, against how far the real arm moves;
* side-by-side videos (real | imagined) and a frame grid.

LPIPS and FVD need pretrained network weights that cannot be downloaded here; they are not computed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wovr_core.errors import DataError
from wovr_core.registry import Registry
from wovr_core.types import ACTION_DIM, GRIPPER_CLOSED, GRIPPER_OPEN
from wovr_core.world_model.config import WorldModelEvalConfig
from wovr_core.world_model.data import EpisodeKey, LoadedEpisode, load_episode
from wovr_core.world_model.metrics import horizon_means, psnr, ssim
from wovr_core.world_model.model import WorldModel
from wovr_core.world_model.probe import PROBE_TARGETS, fit_state_probe, probe_quality, probe_targets
from wovr_core.world_model.replay import imagined_replay
from wovr_core.world_model.visualize import frame_grid, side_by_side, write_mp4

log = logging.getLogger(__name__)

# An axis whose commands and measured motion correlate less than this in real data never moves there: its
# imagined motion has nothing to be checked against and is left out.
MIN_AXIS_CORRELATION = 0.1

FrameScorer = Callable[[dict[str, np.ndarray], str], np.ndarray]  # (frames, task) -> p(success) per frame

# Loaders of frame scorers by name, resolved lazily: the reward model lives in a sibling package that this
# one must not import (see the import-linter layers), so it is reached by name, like any registered device.
FRAME_SCORERS: Registry[FrameScorer] = Registry("frame scorer")
FRAME_SCORERS.register("reward_model", "wovr_core.reward.model:load_frame_scorer")


def rollout_open_loop(model: WorldModel, episodes: Sequence[LoadedEpisode], chunks: int, start: int = 0
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Imagine ``chunks`` chunks for each episode from frame ``start`` with the episode's real actions.

    The context is the reset context (o_0 alone) when ``start`` is 0, else ``[o_0] + the memory frames up to
    start``. Returns (real, imagined): camera -> (B, chunks * chunk_frames, H, W, 3), frames start+1...
    """
    cfg = model.config
    cams = cfg.cameras
    n = chunks * cfg.chunk_frames
    if start == 0:
        state = model.observe({c: np.stack([e.frames[c][:1] for e in episodes]) for c in cams})
    else:
        if start < cfg.memory_frames:
            raise ValueError(f"start must be 0 or >= memory_frames ({cfg.memory_frames})")
        idx = np.concatenate([[0], np.arange(start - cfg.memory_frames + 1, start + 1)])
        state = model.observe({c: np.stack([e.frames[c][idx] for e in episodes]) for c in cams},
                              np.stack([e.actions[idx] for e in episodes]))
    outputs: dict[str, list[np.ndarray]] = {c: [] for c in cams}
    for k in range(chunks):
        lo = start + 1 + k * cfg.chunk_frames
        actions = np.stack([e.actions[lo:lo + cfg.chunk_frames] for e in episodes])
        frames, state = model.imagine(state, actions)
        for c in cams:
            outputs[c].append(frames[c])
    imagined = {c: np.concatenate(v, axis=1) for c, v in outputs.items()}
    real = {c: np.stack([e.frames[c][start + 1:start + 1 + n] for e in episodes]) for c in cams}
    return real, imagined


def evaluate_world_model(model: WorldModel, datasets, keys: Sequence[EpisodeKey], cfg: WorldModelEvalConfig,
                         out_dir: str | Path | None = None, scorer: FrameScorer | None = None,
                         probe_keys: Sequence[EpisodeKey] = ()) -> dict[str, Any]:
    """Evaluate on the episodes ``keys``; ``probe_keys`` (training episodes) fit the controllability probe."""
    mcfg = model.config
    out = Path(out_dir) if out_dir is not None else None
    keys = list(keys)[: cfg.max_episodes or None]
    if not keys:
        raise DataError("no episodes to evaluate")
    episodes = [load_episode(datasets, k, mcfg.cameras, mcfg.image_size) for k in keys]
    max_h = max(cfg.horizons)
    chunk = mcfg.chunk_frames
    usable = [e for e in episodes if len(e) - 1 - cfg.start >= chunk]
    if not usable:
        raise DataError(f"no episode has {chunk} frames after frame {cfg.start}")

    per_frame_psnr: list[np.ndarray] = []
    per_frame_ssim: list[np.ndarray] = []
    baseline_psnr: dict[str, list[np.ndarray]] = {"codec": [], "hold": []}
    agreement: list[dict[str, float]] = []
    videos: list[tuple[LoadedEpisode, dict, dict]] = []
    # Batches of episodes with equal rollout length (the shortest of the batch, capped at the longest horizon).
    usable.sort(key=len, reverse=True)
    for lo in range(0, len(usable), cfg.batch_size):
        batch = usable[lo:lo + cfg.batch_size]
        n_chunks = min(math.ceil(max_h / chunk), min((len(e) - 1 - cfg.start) // chunk for e in batch))
        real, imagined = rollout_open_loop(model, batch, n_chunks, cfg.start)
        for i, ep in enumerate(batch):
            r = {c: real[c][i] for c in mcfg.cameras}
            g = {c: imagined[c][i] for c in mcfg.cameras}
            per_frame_psnr.append(_camera_mean(psnr, r, g))
            per_frame_ssim.append(_camera_mean(ssim, r, g))
            for name, frames in _baselines(model, ep, r, cfg.start).items():
                baseline_psnr[name].append(_camera_mean(psnr, r, frames))
            if scorer is not None:
                agreement.append(_reward_agreement(scorer, r, g, ep.task))
            if len(videos) < cfg.videos:
                videos.append((ep, r, g))
        log.info("evaluated %d/%d episodes", min(lo + cfg.batch_size, len(usable)), len(usable))

    report: dict[str, Any] = {
        "episodes": [list(e.key) for e in usable],
        "start": cfg.start,
        "action_guidance": mcfg.action_guidance,
        "psnr": _by_horizon(per_frame_psnr, cfg.horizons),
        "ssim": _by_horizon(per_frame_ssim, cfg.horizons),
        "psnr_baselines": {name: _by_horizon(curves, cfg.horizons) for name, curves in baseline_psnr.items()},
        "psnr_baselines_note": "codec: the real frames through the model's codec (what a perfect denoiser "
                               "would score); hold: the last real context frame repeated (a model of no motion)",
        "psnr_per_frame": _mean_curve(per_frame_psnr),
        "ssim_per_frame": _mean_curve(per_frame_ssim),
        "lpips": None, "fvd": None,
        "lpips_fvd_note": "not computed: their pretrained network weights are not available offline",
    }
    if agreement:
        report["reward_agreement"] = {k: float(np.mean([a[k] for a in agreement])) for k in agreement[0]}
    labelled = [e for e in episodes if e.success is not None and len(e) > 1]
    if scorer is not None and cfg.outcome_threshold > 0 and labelled:
        report["outcomes"] = episode_outcomes(model, labelled, scorer, cfg.outcome_threshold)
    if cfg.controllability:
        report["controllability"] = measure_controllability(model, datasets, usable, probe_keys, cfg)
    if out is not None:
        _write_outputs(out, report, videos, mcfg.cameras)
    return report


def _camera_mean(metric: Callable[[np.ndarray, np.ndarray], np.ndarray], real: dict[str, np.ndarray],
                 other: dict[str, np.ndarray]) -> np.ndarray:
    """A per-frame metric of two camera -> (T, H, W, 3) videos, averaged over the cameras."""
    return np.mean([metric(real[c], other[c]) for c in real], axis=0)


@torch.no_grad()
def _baselines(model: WorldModel, episode: LoadedEpisode, real: dict[str, np.ndarray], start: int
               ) -> dict[str, dict[str, np.ndarray]]:
    """Reference frames that place the imagination's PSNR: the codec's reconstruction of the real frames, and
    the last context frame held still."""
    cams = model.config.cameras
    # The context frame leads, so a causal video codec gets the 1 + k n frames it encodes.
    video = model.to_video({c: np.concatenate([episode.frames[c][start:start + 1], real[c]])[None] for c in cams})
    decoded = model.to_frames(model.codec.decode(model.codec.encode(video)))
    hold = {c: np.repeat(episode.frames[c][start:start + 1], len(real[c]), axis=0) for c in cams}
    return {"codec": {c: decoded[c][0, 1:] for c in cams}, "hold": hold}


def _by_horizon(curves: list[np.ndarray], horizons: Sequence[int]) -> dict[str, dict[str, float]]:
    """Per horizon: the mean over the first h frames, over episodes whose rollout reached h frames."""
    out = {}
    for h in horizons:
        reached = [c for c in curves if len(c) >= h]
        if reached:
            out[str(h)] = {"mean": float(np.mean([horizon_means(c, (h,))[h] for c in reached])),
                           "at_frame": float(np.mean([c[h - 1] for c in reached])), "episodes": len(reached)}
    return out


def _mean_curve(curves: list[np.ndarray]) -> list[float]:
    n = max(len(c) for c in curves)
    return [float(np.mean([c[t] for c in curves if len(c) > t])) for t in range(n)]


def _reward_agreement(scorer: FrameScorer, real: dict, imagined: dict, task: str) -> dict[str, float]:
    p_real = np.asarray(scorer(real, task), np.float64)
    p_imag = np.asarray(scorer(imagined, task), np.float64)
    return {"mean_abs_prob_diff": float(np.abs(p_real - p_imag).mean()),
            "label_agreement": float(np.mean((p_real >= 0.5) == (p_imag >= 0.5))),
            "max_prob_real": float(p_real.max()), "max_prob_imagined": float(p_imag.max()),
            "episode_success_agreement": float((p_real.max() >= 0.5) == (p_imag.max() >= 0.5))}


def episode_outcomes(model: WorldModel, episodes: Sequence[LoadedEpisode], scorer: FrameScorer,
                     threshold: float) -> dict[str, Any]:
    """Each episode imagined whole from ``o_0`` under its recorded actions (never re-anchored), a success when
    a frame's p(success) reaches ``threshold``; against the recorded outcome, and the same rule on the real
    frames, which separates the reward model's errors from the world model's."""
    rows = []
    for ep in episodes:
        chunks = math.ceil((len(ep) - 1) / model.config.chunk_frames)
        imagined = imagined_replay(model, ep.frames, ep.actions, anchor_every=chunks)
        p_imagined = np.asarray(scorer({c: v[1:] for c, v in imagined.items()}, ep.task), np.float64)
        p_real = np.asarray(scorer({c: v[1:] for c, v in ep.frames.items()}, ep.task), np.float64)
        rows.append((bool(ep.success), bool(p_imagined.max() >= threshold), bool(p_real.max() >= threshold)))
    outcome, imagined, real = (np.array(col, bool) for col in zip(*rows, strict=True))

    def rate(hits: np.ndarray, given: np.ndarray) -> float | None:
        return float(hits[given].mean()) if given.any() else None

    return {"threshold": threshold, "episodes": len(rows), "successes": int(outcome.sum()),
            "imagined_success_given_success": rate(imagined, outcome),
            "imagined_success_given_failure": rate(imagined, ~outcome),
            "real_frames_success_given_success": rate(real, outcome),
            "real_frames_success_given_failure": rate(real, ~outcome),
            "agreement": float((imagined == outcome).mean())}


# -------------------------------------------------------------------------------------- controllability
def _commands(magnitude: float) -> dict[str, np.ndarray]:
    cmds = {}
    for axis, name in enumerate("xyz"):
        for sign in (1, -1):
            a = np.zeros(ACTION_DIM, np.float32)
            a[axis] = sign * magnitude
            a[6] = GRIPPER_OPEN
            cmds[f"{'+' if sign > 0 else '-'}{name}"] = a
    still = np.zeros(ACTION_DIM, np.float32)
    still[6] = GRIPPER_OPEN
    close = still.copy()
    close[6] = GRIPPER_CLOSED
    cmds["still"] = still
    cmds["close"] = close
    return cmds


def _real_action_response(episodes: Sequence[LoadedEpisode]) -> tuple[dict[str, float], dict[str, float]]:
    """How each commanded translation axis moves the measured end effector in real data: the correlation of
    the command with the next state change (its direction, checked rather than assumed; 0: the axis never
    moved) and the least-squares slope (metres per step per unit of command: how far a constant command
    carries the real arm, to first order)."""
    acts = np.concatenate([e.actions[1:, :3] for e in episodes]).astype(np.float64)
    deltas = np.concatenate([np.diff(e.states[:, :3], axis=0) for e in episodes]).astype(np.float64)
    correlation, slope = {}, {}
    for k, name in enumerate("xyz"):
        a, d = acts[:, k] - acts[:, k].mean(), deltas[:, k] - deltas[:, k].mean()
        var_a, var_d = (a * a).sum(), (d * d).sum()
        correlation[name] = float((a * d).sum() / np.sqrt(var_a * var_d)) if var_a * var_d > 0 else 0.0
        slope[name] = float((a * d).sum() / var_a) if var_a > 0 else 0.0
    return correlation, slope


def direction_tracking(plus: np.ndarray, minus: np.ndarray, still: np.ndarray, axis: int,
                       expected_m: float) -> dict[str, Any]:
    """How far imagined arms follow two opposite constant commands along ``axis``, from the probe's
    end-effector readings ``(starts, 3)`` after the same frames under ``+``, ``-`` and no command.

    ``contrast_m`` is half the ``+`` minus ``-`` displacement along the axis, per start: motion both commands
    share (a drift towards the typical demonstration) cancels, so only what the command's direction changes is
    left. ``gain`` divides it by ``expected_m``, the signed displacement the real arm makes under the ``+``
    command: 1 follows the command as far as the real arm, 0 ignores its direction, < 0 goes the wrong way.
    """
    if expected_m == 0:
        raise ValueError("expected_m is 0: the real data never moves along this axis, there is nothing to track")
    contrast = (plus[:, axis] - minus[:, axis]) / 2
    common = (plus + minus) / 2 - still
    return {"expected_m": float(expected_m), "contrast_m": float(contrast.mean()),
            "gain": float(contrast.mean() / expected_m),
            "contrast_accuracy": float(np.mean(np.sign(contrast) == np.sign(expected_m))),
            "common_drift_m": common.mean(0).round(4).tolist()}


def _probe_training_set(datasets, keys: Sequence[EpisodeKey], fallback: Sequence[LoadedEpisode],
                        cams: list[str], image_size: int, max_frames: int):
    """Episodes (actions and states only) and evenly spaced frames + probe targets to fit the probe on, read
    one episode at a time so memory holds ``max_frames`` frames, not every training episode."""
    episodes = list(fallback) if not keys else None
    per_episode = math.ceil(max_frames / max(1, len(keys) or len(fallback)))
    kept, frames, targets = [], {c: [] for c in cams}, []
    for item in episodes if episodes is not None else keys:
        ep = item if episodes is not None else load_episode(datasets, item, cams, image_size)
        pick = np.linspace(0, len(ep) - 1, min(per_episode, len(ep))).astype(int)
        for c in cams:
            frames[c].append(ep.frames[c][pick])
        targets.append(probe_targets(ep.states[pick]))
        kept.append(LoadedEpisode(ep.key, {}, ep.actions, ep.states, ep.task, ep.success))
    return kept, {c: np.concatenate(v) for c, v in frames.items()}, np.concatenate(targets)


def measure_controllability(model: WorldModel, datasets, episodes: Sequence[LoadedEpisode],
                            probe_keys: Sequence[EpisodeKey], cfg: WorldModelEvalConfig) -> dict[str, Any]:
    mcfg = model.config
    cams = list(mcfg.cameras)
    fit_eps, frames, targets = _probe_training_set(datasets, probe_keys, episodes, cams, mcfg.image_size,
                                                   cfg.probe_frames)
    probe = fit_state_probe(frames, targets, cams, cfg.probe_steps, seed=cfg.seed)
    held_frames = {c: np.concatenate([e.frames[c] for e in episodes]) for c in cams}
    held_targets = probe_targets(np.concatenate([e.states for e in episodes]))
    quality = probe_quality(probe, held_frames, held_targets, cams)
    # The same frames after the codec: how much of the arm's state survives into the latents the denoiser
    # works on. Close to ``held_out``, a direction-blind model cannot blame its codec.
    through_codec = (probe_quality(probe, model.through_codec(held_frames), held_targets, cams)
                     if model.codec.temporal_factor == 1 else None)
    real_corr, response = _real_action_response(fit_eps)

    commands = _commands(cfg.control_magnitude)
    n_chunks = max(1, math.ceil(cfg.control_frames / mcfg.chunk_frames))
    starts = episodes[: cfg.control_starts]
    last_frames = {name: {c: [] for c in cams} for name in commands}
    for i in range(0, len(starts), cfg.batch_size):
        batch = starts[i:i + cfg.batch_size]
        state0 = model.observe({c: np.stack([e.frames[c][:1] for e in batch]) for c in cams})
        for name, action in commands.items():
            state = state0
            for _ in range(n_chunks):
                frames_out, state = model.imagine(state, np.broadcast_to(action, (len(batch), mcfg.chunk_frames,
                                                                                 ACTION_DIM)).copy())
            for c in cams:
                last_frames[name][c].append(frames_out[c][:, -1])
    last_frames = {name: {c: np.concatenate(v) for c, v in per_cam.items()} for name, per_cam in last_frames.items()}
    final = {name: probe.predict(frames, cams) for name, frames in last_frames.items()}
    # Displacement relative to the "still" rollout of the same start: cancels the probe's bias on imagined
    # frames and any drift the model has without motion.
    rows, hits, selective = {}, [], []
    for name in commands:
        if name in ("still", "close"):
            continue
        axis = "xyz".index(name[1])
        if abs(real_corr[name[1]]) < MIN_AXIS_CORRELATION:
            continue
        sign = 1.0 if name[0] == "+" else -1.0
        expected = sign * np.sign(real_corr[name[1]])
        delta = final[name][:, :3] - final["still"][:, :3]
        hit = np.sign(delta[:, axis]) == expected
        sel = np.abs(delta[:, axis]) > np.abs(np.delete(delta, axis, axis=1)).max(axis=1)
        hits += hit.tolist()
        selective += sel.tolist()
        rows[name] = {"mean_displacement_m": delta.mean(0).round(4).tolist(), "direction_accuracy": float(hit.mean())}
    tracking = {}
    for axis, name in enumerate("xyz"):
        if abs(real_corr[name]) < MIN_AXIS_CORRELATION:
            continue
        expected = response[name] * cfg.control_magnitude * n_chunks * mcfg.chunk_frames
        tracking[name] = direction_tracking(final[f"+{name}"][:, :3], final[f"-{name}"][:, :3],
                                            final["still"][:, :3], axis, expected)
    grip = final["close"][:, 3] - final["still"][:, 3]
    open_sign = np.sign(np.mean(probe_targets(np.concatenate([e.states for e in fit_eps]))[:, 3]))
    gripper_hit = np.sign(grip) == -open_sign  # closing shrinks the (signed) finger opening
    diffs = [float(np.mean(np.abs(last_frames[a][cams[0]].astype(np.int16) - last_frames[b][cams[0]].astype(np.int16))))
             for a, b in (("+x", "-x"), ("+y", "-y"), ("+z", "-z"))]
    return {
        "frames": n_chunks * mcfg.chunk_frames, "magnitude": cfg.control_magnitude, "starts": len(starts),
        "direction_accuracy": float(np.mean(hits)) if hits else float("nan"),
        "axis_selectivity": float(np.mean(selective)) if selective else float("nan"),
        # The paired measures: + against - from the same start, scaled by how far the real arm would move.
        "tracking_gain": float(np.mean([t["gain"] for t in tracking.values()])) if tracking else float("nan"),
        "contrast_accuracy": (float(np.mean([t["contrast_accuracy"] for t in tracking.values()]))
                              if tracking else float("nan")),
        "per_axis": tracking,
        "gripper_close_accuracy": float(gripper_hit.mean()), "per_command": rows,
        "opposite_commands_mean_abs_pixel_diff": float(np.mean(diffs)),
        "probe": {"targets": list(PROBE_TARGETS), "held_out": quality, "held_out_through_codec": through_codec,
                  "fit_frames": int(len(targets)),
                  # Without a training split the probe is fitted on the evaluated episodes: "held_out" is not.
                  "fit_on": "training episodes" if probe_keys else "the evaluated episodes",
                  "real_action_state_correlation": real_corr, "real_response_m_per_step": response},
    }


def format_controllability(control: dict[str, Any]) -> str:
    """One line of the controllability report, as ``wovr eval-wm`` and the fidelity benchmark print it."""
    return (f"tracking gain {control['tracking_gain']:.2f} (contrast accuracy {control['contrast_accuracy']:.2f}, "
            f"{control['starts']} starts), direction accuracy {control['direction_accuracy']:.2f}, axis selectivity "
            f"{control['axis_selectivity']:.2f}, gripper {control['gripper_close_accuracy']:.2f}")


# -------------------------------------------------------------------------------------------- outputs
def _write_outputs(out: Path, report: dict, videos: list, cameras: Sequence[str]) -> None:
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    grids = []
    for ep, real, imagined in videos:
        name = f"episode-{ep.key[0]}-{ep.key[1]}"
        write_mp4(out / "videos" / f"{name}.mp4", side_by_side(real, imagined, cameras))
        every = max(1, len(real[cameras[0]]) // 8)
        grids.append(np.concatenate([frame_grid(real[c], imagined[c], every) for c in cameras], axis=0))
    if grids:
        width = max(g.shape[1] for g in grids)
        grid = np.concatenate([np.pad(g, ((0, 6), (0, width - g.shape[1]), (0, 0)), constant_values=255)
                               for g in grids])
        cv2.imwrite(str(out / "grid.png"), grid[..., ::-1])


def load_scorer(kind: str, path: str | Path) -> FrameScorer:
    return FRAME_SCORERS.get(kind)(path)
