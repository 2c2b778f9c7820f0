"""Config of ``wovr retrain``: one dataclass tree, saved into every run (``runs/<id>/config.json``).

Presets: ``tiny`` (defaults: the real stages at CPU scale), ``paper`` (GPU scale: the trainers' own
``paper`` presets) and ``smoke`` (the pipeline's mechanics with minimal stand-in training stages, see
:mod:`wovr_core.pipeline.smoke`; for tests and for checking a workspace set-up in seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from wovr_core.config import ConfigError
from wovr_core.policy.evaluate import EvalConfig
from wovr_core.reward.config import RewardTrainConfig
from wovr_core.rl.config import RLConfig
from wovr_core.world_model.config import WorldModelTrainConfig

STAGE_ORDER: tuple[str, ...] = ("ingest", "world_model", "reward", "rl", "evaluate", "promote", "push")


@dataclass
class StageImplementations:
    """Which registered implementation runs each stage (``wovr_core.pipeline.stages.STAGES``)."""

    ingest: str = "default"
    world_model: str = "pace"
    reward: str = "refresh"
    rl: str = "grpo"
    evaluate: str = "imagination"
    promote: str = "gate"
    push: str = "http"

    def __getitem__(self, stage: str) -> str:
        return getattr(self, stage)


SMOKE_STAGES = {"world_model": "smoke", "reward": "smoke", "rl": "smoke", "evaluate": "smoke"}


@dataclass
class IngestConfig:
    """Where new episodes arrive and how hard they are checked before anything trains on them."""

    # Dataset folders waiting here are ingested (relative to the workspace, or absolute). Point each
    # recording session's ``record_dir`` at a new folder inside it; one still held by its writer waits.
    inbox: str = "inbox"
    decode_all: bool = True  # decode every frame: finds corruption in the middle of a video stream


@dataclass
class EvaluateConfig:
    """How the candidate and the incumbent policy are compared, and how the world model is checked."""

    starts: int = 16  # imagined evaluation: start states (first frames of recent real episodes), ...
    rollouts_per_start: int = 4  # ... each rolled out this many times
    temperature: float = 1.0  # sampling temperature of the policies under evaluation
    reliability_episodes: int = 8  # world-model check on the latest real episodes (held out from nothing)
    reliability_horizon: int = 32  # frames of open-loop imagination scored by PSNR
    # Also run both policies in the MuJoCo twin and count LIBERO's own success predicate (needs wovr[sim]).
    twin: bool = False
    twin_eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    device: str = ""  # "" = cuda when available, else cpu

    def validate(self) -> None:
        if self.starts < 1 or self.rollouts_per_start < 1:
            raise ConfigError("evaluate.starts and evaluate.rollouts_per_start must be >= 1")
        if self.reliability_episodes < 1 or self.reliability_horizon < 1:
            raise ConfigError("evaluate.reliability_episodes and reliability_horizon must be >= 1")
        if self.temperature <= 0:
            raise ConfigError(f"evaluate.temperature must be > 0, got {self.temperature}")


@dataclass
class GateConfig:
    """The promotion rule (see :func:`wovr_core.pipeline.gate.decide`)."""

    confidence: float = 0.95  # two-sided Wilson interval; its lower bound is compared
    margin: float = 0.0  # promote only if lower bound(candidate) > incumbent success + margin
    min_trials: int = 32  # fewer imagined rollouts per policy than this cannot promote
    require_twin: bool = False  # without a twin evaluation, refuse to promote
    twin_margin: float = 0.0  # the same rule on the twin's predicate success, when measured
    min_twin_trials: int = 10
    # World-model reliability on the latest real episodes; None disables a check. A check that is enabled
    # but was not measured fails: an unverified world model never promotes a policy.
    min_psnr_db: float | None = 18.0
    min_reward_agreement: float | None = 0.8
    min_reliability_episodes: int = 1

    def validate(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"gate.confidence must be in [0.5, 1), got {self.confidence}")
        if self.min_trials < 1 or self.min_twin_trials < 1 or self.min_reliability_episodes < 0:
            raise ConfigError("gate.min_trials and min_twin_trials must be >= 1, min_reliability_episodes >= 0")
        if self.min_reward_agreement is not None and not 0 <= self.min_reward_agreement <= 1:
            raise ConfigError(f"gate.min_reward_agreement must be in [0, 1], got {self.min_reward_agreement}")


@dataclass
class PushConfig:
    """Where a promoted checkpoint is activated. The API token comes from ``WOVR_API_TOKEN`` only."""

    server_url: str = "http://127.0.0.1:8000"
    # "path": send the checkpoint's absolute path (the server reads the workspace's registry/);
    # "name": send its folder name (the server runs with --checkpoint-root pointing at registry/).
    send: Literal["path", "name"] = "path"
    timeout_s: float = 120.0  # loading + validating a checkpoint on the server
    client: str = "http"  # PUSH_CLIENTS entry

    def validate(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigError(f"push.timeout_s must be > 0, got {self.timeout_s}")


@dataclass
class SmokeConfig:
    """Knobs of the smoke stages (:mod:`wovr_core.pipeline.smoke`); ignored by the real ones."""

    seconds_per_episode: float = 0.0  # world-model stand-in: pause per episode (makes a stage killable in tests)
    image_size: int = 32
    bias_step: float = 0.5  # RL stand-in: the candidate stub's action_bias = incumbent's + this
    success_gain: float = 2.0  # evaluator stand-in: p(success) = sigmoid(gain * action_bias)
    trials: int = 64
    twin_trials: int = 20


@dataclass
class RetrainConfig:
    """``wovr retrain``: ingest -> refine world model -> refresh reward -> RL in imagination -> evaluate ->
    promote -> push, over one workspace folder."""

    PRESETS: ClassVar[dict] = {
        "tiny": {},
        "paper": {"world_model": WorldModelTrainConfig.PRESETS["paper"], "reward": RewardTrainConfig.PRESETS["paper"],
                  "rl": RLConfig.PRESETS["paper"], "evaluate": {"starts": 64, "rollouts_per_start": 8,
                                                              "reliability_episodes": 32, "reliability_horizon": 128,
                                                              "twin_eval": EvalConfig.PRESETS["paper"]}},
        "smoke": {"stages": SMOKE_STAGES, "gate": {"min_trials": 16, "min_psnr_db": 5.0,
                                                               "min_reward_agreement": None}},
    }

    # The SFT checkpoint the robot runs before the first promotion (copied into registry/ on the first run).
    initial_policy: str = ""
    # Datasets every refinement also trains on (e.g. the demonstrations of the SFT policy); PACE = these
    # plus every real episode ingested so far.
    base_data: list[str] = field(default_factory=list)
    stages: StageImplementations = field(default_factory=StageImplementations)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    world_model: WorldModelTrainConfig = field(default_factory=WorldModelTrainConfig)
    reward: RewardTrainConfig = field(default_factory=RewardTrainConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    push: PushConfig = field(default_factory=PushConfig)
    smoke: SmokeConfig = field(default_factory=SmokeConfig)
    seed: int = 0


# Which part of the config each stage's manifest records.
STAGE_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "ingest": ("ingest",), "world_model": ("world_model", "base_data"), "reward": ("reward", "base_data"),
    "rl": ("rl",), "evaluate": ("evaluate",), "promote": ("gate",), "push": ("push",),
}
