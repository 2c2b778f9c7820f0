"""Configs of ``wovr rl``: a GRPO run in imagination, PACE around it, and the same-budget twin baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from wovr_core.config import ConfigError
from wovr_core.policy.evaluate import EvalConfig
from wovr_core.reward.config import RewardTrainConfig
from wovr_core.rl.config import RLConfig
from wovr_core.world_model.config import WorldModelTrainConfig


@dataclass
class PaceConfig:
    """PACE co-evolution (DESIGN.md section 4): RL stage 1 -> new twin rollouts of the updated policy ->
    fine-tune the world model and the reward model on old + new data -> RL stage 2."""

    stage1_updates: int = 10
    stage2_updates: int = 10
    rollouts_per_task: int = 4  # (paper: 1,000 updated-policy trajectories per suite, i.e. 100 per task)
    tasks: tuple[int, ...] = ()  # twin tasks the new rollouts come from; empty: every task of the suite
    first_init_state: int = 0  # new rollouts start from LIBERO init states k, k+1, ... (the evaluation's are 0..)
    temperature: float = 1.0  # sampling temperature of the recorded rollouts (some spread, mostly the policy)
    world_model: WorldModelTrainConfig = field(default_factory=WorldModelTrainConfig)
    reward: RewardTrainConfig = field(default_factory=RewardTrainConfig)

    def validate(self) -> None:
        if self.stage1_updates < 0 or self.stage2_updates < 0 or self.rollouts_per_task < 1:
            raise ConfigError("pace.stage1_updates/stage2_updates must be >= 0 and rollouts_per_task >= 1")


@dataclass
class TwinEnvConfig:
    """The twin as a GRPO environment (the baseline): chunks in LIBERO, rewards from its own predicate."""

    suite: str = "libero_object"
    tasks: tuple[int, ...] = ()  # empty: every task of the suite
    image_size: int = 0  # render size; 0: the policy's camera size
    chunk_size: int = 8
    max_steps: int = 0  # 0: the suite's standard step limit (rounded up to whole chunks)
    reward_scale: float = 5.0  # r_t = scale * (s_t - s_{t-1}), s in {0, 1}: the predicate
    # One twin per rollout of a batch: all in this process, or each in its own process (TwinPool: worth it with
    # as many cores as rollouts).
    processes: bool = False
    # Groups stepped together: G twins per group are alive at once, about half a GB each in this process
    # (all 4 x 8 of the tiny preset's update need some 18 GB). 0: every group of an update at once.
    groups_at_once: int = 1
    first_init_state: int = 0

    def validate(self) -> None:
        if self.chunk_size < 1 or self.max_steps < 0 or self.image_size < 0 or self.groups_at_once < 0:
            raise ConfigError("twin.chunk_size >= 1, max_steps, image_size and groups_at_once >= 0 are required")


@dataclass
class RLRunConfig:
    """One ``wovr rl`` run: the GRPO stage, how often it is saved and evaluated, PACE, the twin baseline."""

    # pace.reward stays at its defaults under "paper": RewardTrainConfig's own "paper" preset does not apply
    # (its model.backbone is a plain dict), set pace.reward.* explicitly until it does.
    PRESETS: ClassVar[dict] = {
        "tiny": {},
        "paper": {"rl": RLConfig.PRESETS["paper"], "eval": EvalConfig.PRESETS["paper"], "checkpoint_every": 10,
                  "eval_every": 50, "pace": {"stage1_updates": 100, "stage2_updates": 100, "rollouts_per_task": 100,
                                             "world_model": WorldModelTrainConfig.PRESETS["paper"]}},
    }

    rl: RLConfig = field(default_factory=RLConfig)
    checkpoint_every: int = 5  # updates between resumable checkpoints (the last update always saves)
    eval_every: int = 0  # updates between twin evaluations (0: never); logged only, never a training signal
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(episodes_per_task=2, videos=0, workers=1))
    pace: PaceConfig = field(default_factory=PaceConfig)
    twin: TwinEnvConfig = field(default_factory=TwinEnvConfig)
    # Real (twin) trajectories a run may use: PACE's new rollouts, or every rollout of the twin baseline.
    # 0: unlimited. Recorded in <out>/budget.json.
    real_budget: int = 0
    device: str = ""  # "" = cuda when available, else cpu
    threads: int = 0  # torch threads (0: torch's default)
    seed: int = 0

    def validate(self) -> None:
        self.rl.validate()
        self.pace.validate()
        self.twin.validate()
        if self.checkpoint_every < 1 or self.eval_every < 0 or self.real_budget < 0:
            raise ConfigError("checkpoint_every must be >= 1, eval_every and real_budget >= 0")
