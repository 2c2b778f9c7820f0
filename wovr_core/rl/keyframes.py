"""Keyframes for Keyframe-Initialized Rollouts (KIR): where they come from, and how starts are drawn.

Sources (``StartPoint.source``):

- ``operator``: frames the operator flagged while recording (``is_keyframe``, the teleop keyframe button).
- mined from policy rollouts (episodes with ``source == "policy"``), each placed ``lead_frames`` before the
  event so the policy gets to act in the situation that led to it:

  - ``intervention``: the operator took over (rising edge of ``is_intervention``): the policy was failing.
  - ``failure``: an unsuccessful episode's closest approach (the peak of the reward model's success
    probability), or its end when there is no probability curve.
  - ``drop``: the success probability fell by ``drop_threshold`` from its running peak (something was
    undone, e.g. an object slipped); placed before the peak.
  - ``stall``: in an unsuccessful episode, the probability had risen above ``stall_floor`` and then its running
    max did not grow by ``stall_tolerance`` for ``stall_frames`` frames: the policy got stuck there.
  - ``grasp``: the gripper command switches open -> closed. ``action[t]`` led to ``o[t]``, so the command was
    chosen on ``o[t-1]``: the keyframe is ``t - 1`` (no lead: the grasp decision itself is the critical state).

The selection rule and the share of KIR starts are unpublished (DESIGN.md section 4): ours, configurable, and
to be measured per source (``RolloutBatch.stats()`` reports success by start source).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from wovr_core.data import EpisodeDataset
from wovr_core.rl.config import KEYFRAME_SOURCES, KeyframeConfig
from wovr_core.rl.protocols import SuccessScorer
from wovr_core.rl.starts import EPISODE_START, Start, start_from_dataset

GRIPPER_DIM = 6


@dataclass(frozen=True, order=True)
class StartPoint:
    """A frame of a recorded episode that a group of rollouts can start from, and why."""

    episode_index: int
    frame_index: int
    source: str = EPISODE_START


# ---- mining ------------------------------------------------------------------------------------------------

def grasp_frames(actions: np.ndarray) -> np.ndarray:
    """Observations on which the gripper command switched from open (< 0) to closed (>= 0)."""
    gripper = np.asarray(actions, np.float32)[:, GRIPPER_DIM]
    closed = gripper >= 0
    return np.flatnonzero(closed[1:] & ~closed[:-1])  # action t+1 closes -> chosen on o[t]


def intervention_onsets(is_intervention: np.ndarray) -> np.ndarray:
    flags = np.asarray(is_intervention, bool)
    return np.flatnonzero(flags & ~np.concatenate([[False], flags[:-1]]))


def drop_peaks(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Frames of the peaks from which the probability then fell by at least ``threshold``, one per fall (a
    long fall counts once: after a drop the tracker follows the curve down and re-arms when it rises)."""
    peaks: list[int] = []
    peak, peak_at, falling = -np.inf, 0, False
    for t, p in enumerate(np.asarray(probs, np.float64)):
        if falling:
            if p <= peak:
                peak, peak_at = p, t
                continue
            falling = False
        if p > peak:
            peak, peak_at = p, t
        elif peak - p >= threshold:
            peaks.append(peak_at)
            peak, peak_at, falling = p, t, True
    return np.asarray(peaks, np.int64)


def stall_onset(probs: np.ndarray, config: KeyframeConfig) -> int | None:
    """First frame after which the running max (already above ``stall_floor``, still below success) grows by
    no more than ``stall_tolerance`` over ``stall_frames`` frames; None if there is no such plateau."""
    running = np.maximum.accumulate(np.asarray(probs, np.float64))
    w = config.stall_frames
    if len(running) <= w:
        return None
    base, gain = running[:-w], running[w:] - running[:-w]
    stuck = (base >= config.stall_floor) & (base < config.success_threshold) & (gain <= config.stall_tolerance)
    hits = np.flatnonzero(stuck)
    return int(hits[0]) if len(hits) else None


def mine_episode(episode_index: int, actions: np.ndarray, *, success: bool | None,
                 probs: np.ndarray | None = None, is_intervention: np.ndarray | None = None,
                 config: KeyframeConfig | None = None) -> list[StartPoint]:
    """Mined keyframes of one policy episode from its arrays (``probs``: reward-model success probability per
    frame, optional). Points of one source closer than ``min_gap_frames`` are merged (the first is kept)."""
    config = config or KeyframeConfig()
    length = len(actions)
    lead = config.lead_frames
    found: dict[str, list[int]] = {s: [] for s in KEYFRAME_SOURCES if s != "operator"}
    if is_intervention is not None:
        found["intervention"] = [t - lead for t in intervention_onsets(is_intervention)]
    if probs is not None:
        probs = np.asarray(probs, np.float64)
        if probs.shape != (length,):
            raise ValueError(f"probs must hold one value per frame ({length}), got {probs.shape}")
        if not np.isfinite(probs).all():
            raise ValueError(f"success probabilities of episode {episode_index} hold NaN or inf")
        found["drop"] = [t - lead for t in drop_peaks(probs, config.drop_threshold)]
    if success is False:
        found["failure"] = [(int(np.argmax(probs)) if probs is not None else length - 1) - lead]
        onset = stall_onset(probs, config) if probs is not None else None
        if onset is not None:
            found["stall"] = [onset]
    found["grasp"] = list(grasp_frames(actions))
    points = []
    for source, frames in found.items():
        last = None
        for t in sorted(min(max(int(t), 0), length - 1) for t in frames):
            if last is None or t - last >= config.min_gap_frames:
                points.append(StartPoint(episode_index, t, source))
                last = t
    return sorted(points)


def operator_keyframes(dataset: EpisodeDataset) -> list[StartPoint]:
    """Every frame flagged ``is_keyframe`` in the dataset (per-frame tables only; no video is decoded)."""
    return [StartPoint(ep.index, int(t), "operator") for ep in dataset.iter_episodes() for t in ep.keyframes]


def mine_keyframes(dataset: EpisodeDataset, config: KeyframeConfig | None = None,
                   scorer: SuccessScorer | None = None, episode_sources: Iterable[str] = ("policy",),
                   cameras: Sequence[str] | None = None) -> list[StartPoint]:
    """Mined keyframes of the dataset's policy rollouts. With a ``scorer`` (the reward model) every frame is
    scored, which enables the ``drop`` and ``stall`` sources and places ``failure`` at the closest approach."""
    config = config or KeyframeConfig()
    wanted = set(episode_sources)
    points: list[StartPoint] = []
    for ep in dataset.iter_episodes():
        if ep.meta.source not in wanted:
            continue
        probs = None
        if scorer is not None:
            cams = list(cameras) if cameras is not None else dataset.cameras
            probs = np.asarray(scorer.success_probability({c: ep.frames(c) for c in cams}, ep.task))
        points += mine_episode(ep.index, ep.actions, success=ep.meta.success, probs=probs,
                               is_intervention=ep.is_intervention, config=config)
    return points


# ---- sampling ----------------------------------------------------------------------------------------------

class KeyframeSampler:
    """Draws group starts: a ``kir_share`` of them from keyframes, the rest from episodes' first frames.

    The number of keyframe groups in a draw of n is ``round(kir_share * n)`` (a fixed share, not a coin per
    group, so small batches keep their mix). Each keyframe group picks a source with probability proportional
    to its weight among sources that have keyframes, then a keyframe of that source uniformly. Episode starts
    are uniform over ``episode_indices``. Seeded: the same config and inputs give the same draws.
    """

    def __init__(self, episode_indices: Sequence[int], keyframes: Sequence[StartPoint],
                 config: KeyframeConfig | None = None):
        self.config = config or KeyframeConfig()
        self.config.validate()
        self.episode_indices = np.asarray(sorted(set(int(i) for i in episode_indices)), np.int64)
        unknown = sorted({k.source for k in keyframes} - set(KEYFRAME_SOURCES))
        if unknown:
            raise ValueError(f"keyframes with unknown sources {unknown}; known: {list(KEYFRAME_SOURCES)}")
        self.by_source = {s: [k for k in keyframes if k.source == s] for s in KEYFRAME_SOURCES}
        self._rng = np.random.default_rng(self.config.seed)

    def get_state(self) -> dict:
        """The random stream's position (a resumed run draws the same starts as an uninterrupted one)."""
        return self._rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state

    @property
    def source_probabilities(self) -> dict[str, float]:
        """The probability of each keyframe source in a keyframe draw (sources without keyframes get 0)."""
        weights = {s: self.config.source_weights.get(s, 0.0) if self.by_source[s] else 0.0 for s in KEYFRAME_SOURCES}
        total = sum(weights.values())
        return {s: (w / total if total else 0.0) for s, w in weights.items()}

    def sample(self, num_groups: int) -> list[StartPoint]:
        probs = self.source_probabilities
        has_keyframes = sum(probs.values()) > 0
        n_kir = int(round(self.config.kir_share * num_groups)) if has_keyframes else 0
        if n_kir < num_groups and len(self.episode_indices) == 0:
            if not has_keyframes:
                raise ValueError("no episodes and no keyframes to start rollouts from")
            n_kir = num_groups
        points = []
        sources = list(probs)
        for _ in range(n_kir):
            source = sources[int(self._rng.choice(len(sources), p=[probs[s] for s in sources]))]
            pool = self.by_source[source]
            points.append(pool[int(self._rng.integers(len(pool)))])
        for _ in range(num_groups - n_kir):
            points.append(StartPoint(int(self._rng.choice(self.episode_indices)), 0, EPISODE_START))
        order = self._rng.permutation(num_groups)  # keyframe and episode groups interleaved
        return [points[i] for i in order]


def load_starts(dataset: EpisodeDataset, points: Sequence[StartPoint], memory_frames: int = 4,
                cameras: Sequence[str] | None = None) -> list[Start]:
    """The :class:`Start` of each point, read from ``dataset``."""
    return [start_from_dataset(dataset, p.episode_index, p.frame_index, memory_frames, cameras, p.source)
            for p in points]
