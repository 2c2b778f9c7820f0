"""Group starts drawn over several episode datasets: first frames and keyframes (KIR) in a configured share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wovr_core.data import EpisodeDataset
from wovr_core.errors import DataError
from wovr_core.rl.config import RLConfig
from wovr_core.rl.keyframes import KeyframeSampler, load_starts, mine_keyframes, operator_keyframes
from wovr_core.rl.protocols import SuccessScorer
from wovr_core.rl.starts import Start, resize_start


class StartPool:
    """Group starts over several datasets: each draw splits its groups across datasets by episode count, then
    each dataset's KeyframeSampler mixes first frames and keyframes (KIR) in its configured share.

    ``get_state``/``set_state`` carry every random generator involved, so a resumed RL run draws the starts
    an uninterrupted one would have drawn."""

    def __init__(self, roots: list[Path], config: RLConfig, scorer: SuccessScorer, cameras: list[str],
                 image_size: int, seed: int):
        self.cameras, self.image_size, self.memory = cameras, image_size, config.env.memory_frames
        self.datasets, self.samplers, weights = [], [], []
        for root in roots:
            dataset = EpisodeDataset(root, on_error="skip")
            if not len(dataset) or any(c not in dataset.cameras for c in cameras):
                continue
            keyframes = operator_keyframes(dataset) + mine_keyframes(dataset, config.keyframes, scorer, cameras=cameras)
            self.datasets.append(dataset)
            self.samplers.append(KeyframeSampler(dataset.episode_indices, keyframes, config.keyframes))
            weights.append(len(dataset))
        if not self.datasets:
            raise DataError(f"no dataset among {[str(r) for r in roots]} has episodes with the cameras {cameras}")
        self.weights = np.asarray(weights, np.float64) / sum(weights)
        self.rng = np.random.default_rng(seed)
        self.keyframes = {s: len(v) for sampler in self.samplers for s, v in sampler.by_source.items()}

    def sample(self, groups: int) -> list[Start]:
        counts = self.rng.multinomial(groups, self.weights)
        starts = []
        for dataset, sampler, n in zip(self.datasets, self.samplers, counts, strict=True):
            if n:
                points = sampler.sample(int(n))
                starts += load_starts(dataset, points, self.memory, self.cameras)
        return [resize_start(s, self.image_size) for s in starts]

    def get_state(self) -> dict[str, Any]:
        """JSON-able state of the pool's and its samplers' generators."""
        return {"pool": self.rng.bit_generator.state,
                "samplers": [s.get_state() for s in self.samplers]}

    def set_state(self, state: dict[str, Any]) -> None:
        if len(state["samplers"]) != len(self.samplers):
            raise DataError(f"the saved start-pool state has {len(state['samplers'])} datasets, this pool "
                            f"{len(self.samplers)}: resume with the same --data")
        self.rng.bit_generator.state = state["pool"]
        for sampler, s in zip(self.samplers, state["samplers"], strict=True):
            sampler.set_state(s)
