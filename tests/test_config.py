"""Typed configs: presets, overrides, did-you-mean errors, saving next to artifacts."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest

from wovr_core.config import (
    ConfigError,
    add_config_arguments,
    config_from_args,
    load_config,
    make_config,
    save_config,
)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class TrainConfig:
    PRESETS: ClassVar[dict] = {"tiny": {}, "paper": {"batch_size": 64, "optim.lr": 1e-4, "device": "cuda"}}

    batch_size: int = 4
    device: Literal["cpu", "cuda"] = "cpu"
    cameras: tuple[str, ...] = ("agentview",)
    resume: str | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    backbone: dict = field(default_factory=lambda: {"depths": [2, 2], "act": {"name": "relu", "slope": 0.0}})

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")


def test_presets_and_overrides():
    assert make_config(TrainConfig).batch_size == 4
    paper = make_config(TrainConfig, "paper", ["optim.lr=3e-4", "cameras=agentview,wrist", "resume=none"])
    assert (paper.batch_size, paper.device, paper.optim.lr) == (64, "cuda", 3e-4)
    assert paper.cameras == ("agentview", "wrist") and paper.resume is None
    assert make_config(TrainConfig, overrides={"optim": {"betas": [0.8, 0.9]}}).optim.betas == (0.8, 0.9)


def test_mapping_fields_take_keys_inside_them():
    """A free-form mapping (a backbone's kwargs) is updated key by key, from a preset, YAML or --set."""
    cfg = make_config(TrainConfig, overrides={"backbone": {"act": {"slope": 0.1}, "width": 8}})
    assert cfg.backbone == {"depths": [2, 2], "act": {"name": "relu", "slope": 0.1}, "width": 8}
    cfg = make_config(TrainConfig, "tiny", ["backbone.depths=[1, 3]", "backbone.act.name=gelu"])
    assert cfg.backbone == {"depths": [1, 3], "act": {"name": "gelu", "slope": 0.0}}
    assert make_config(TrainConfig).backbone["depths"] == [2, 2]  # the default is not mutated
    assert make_config(TrainConfig, "tiny", ['backbone={"depths": [4]}']).backbone == {"depths": [4]}  # replaced


def test_every_preset_of_the_project_builds():
    from wovr_core.pipeline.config import RetrainConfig
    from wovr_core.pipeline.demo import DemoConfig
    from wovr_core.reward.config import RewardTrainConfig

    for cls in (RewardTrainConfig, RetrainConfig, DemoConfig):
        for preset in cls.PRESETS:
            make_config(cls, preset)
    assert make_config(RewardTrainConfig, "paper").model.backbone["depths"] == [2, 2, 2, 2]


@pytest.mark.parametrize("preset,overrides,message", [
    ("papr", [], "unknown preset 'papr'.*Did you mean 'paper'"),
    ("tiny", ["batch_sise=3"], "unknown config key 'batch_sise'.*Did you mean 'batch_size'"),
    ("tiny", ["optim.lrr=3"], "unknown config key 'optim.lrr'.*Did you mean 'lr'"),
    ("tiny", ["device=gpu"], "'device': 'gpu' is not one of"),
    ("tiny", ["batch_size=two"], "expected int"),
    ("tiny", ["batch_size=0"], "batch_size must be >= 1"),
    ("tiny", ["batch_size"], "key=value"),
    ("tiny", ["optim.betas=1,2,3"], "expected 2 items"),
])
def test_bad_presets_keys_and_values_fail_clearly(preset, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(TrainConfig, preset, overrides)


def test_saved_next_to_artifact_and_reloaded(tmp_path):
    cfg = make_config(TrainConfig, "paper", ["cameras=[agentview, wrist]"])
    path = save_config(cfg, tmp_path / "ckpt", preset="paper")
    saved = json.loads(path.read_text())
    assert saved["preset"] == "paper" and saved["type"].endswith(":TrainConfig")
    assert load_config(tmp_path / "ckpt", TrainConfig) == cfg
    (tmp_path / "bad.json").write_text(json.dumps({"batch_size": 2, "batchsize": 1}))
    with pytest.raises(ConfigError, match="bad.json.*Did you mean"):
        load_config(tmp_path / "bad.json", TrainConfig)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json", TrainConfig)


def test_cli_arguments(tmp_path):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    overrides = tmp_path / "o.yaml"
    overrides.write_text("optim:\n  lr: 0.5\nbatch_size: 8\n")
    args = parser.parse_args(["--preset", "paper", "--config", str(overrides), "--set", "batch_size=16"])
    cfg = config_from_args(args, TrainConfig)
    assert (cfg.batch_size, cfg.optim.lr, cfg.device) == (16, 0.5, "cuda")
