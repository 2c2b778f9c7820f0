"""Shared builders for the VLA tests: small configs, plausible statistics and observations."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wovr_core.config import make_config
from wovr_core.policy.vla_config import VLAConfig
from wovr_core.transforms import NormStats


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread():
    """Models this small gain nothing from intra-op threads, and on CPU cores shared with other jobs those
    threads spin-wait on each other: one thread keeps the tests fast under load (import this into a module)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TASKS = ["put the black bowl on the plate", "open the top drawer of the cabinet", "pick up the milk"]

# The tiny preset's classes at a size where a batch of thousands runs in well under a second.
MICRO_OVERRIDES = {
    "vision": {"model_type": "siglip_vision_model", "image_size": 32, "patch_size": 16, "hidden_size": 32,
               "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "vision_use_head": False},
    "language": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                 "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256,
                 "vocab_size": 2},
    "max_text_tokens": 8,
    "use_state": True,  # the full input path (the presets leave proprio out)
}


def micro_config(**overrides) -> VLAConfig:
    # Backbone dicts are whole values (config overrides would address keys inside them as nested configs).
    backbones = {k: MICRO_OVERRIDES[k] for k in ("vision", "language")}
    rest = {k: v for k, v in MICRO_OVERRIDES.items() if k not in backbones}
    config = dataclasses.replace(make_config(VLAConfig, "tiny", {**rest, **overrides}), **backbones)
    config.validate()
    return config


def libero_like_stats(seed: int = 0) -> dict[str, NormStats]:
    """Statistics of LIBERO-scale delta actions (about +-0.9 per dim) and proprio, gripper +-1."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-0.9, 0.9, size=(5000, 7)) * np.array([1, 1, 1, 0.2, 0.2, 0.3, 1])
    actions[:, 6] = rng.choice([-1.0, 1.0], size=5000)
    state = rng.normal([0.0, 0.1, 1.0, 3.1, 0.0, 0.0, 0.03, -0.03], 0.05, size=(5000, 8))
    return {"action": NormStats.compute(actions), "observation.state": NormStats.compute(state)}


def observation(size: int = 128, task: str = TASKS[0], seed: int = 0, wrist: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    obs = {
        "observation.images.agentview": rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8),
        "observation.state": rng.normal([0.0, 0.1, 1.0, 3.1, 0.0, 0.0, 0.03, -0.03], 0.05).astype(np.float32),
        "task": task,
    }
    if wrist:
        obs["observation.images.wrist"] = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return obs


def micro_cli_args() -> list[str]:
    """``--set`` arguments that give ``wovr train-policy`` the micro VLA (dict fields are whole values)."""
    import json

    args = []
    for key in ("vision", "language"):
        args += ["--set", f"model.{key}={json.dumps(MICRO_OVERRIDES[key])}"]
    return args + ["--set", f"model.max_text_tokens={MICRO_OVERRIDES['max_text_tokens']}"]


def demo_dataset(base_dir) -> Path:
    """Two short scripted episodes (libero_object tasks 0 and 1, 64 px cameras) recorded by ``wovr collect``,
    once per test session under pytest's session temp dir, and reused by every module that asks."""
    root = Path(base_dir) / "vla-demo-dataset"
    done = root / "meta" / "collect_config.json"  # written after the last episode
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        cmd = [sys.executable, "-m", "wovr_core.cli", "collect", "--out", str(root), "--suite", "libero_object",
               "--episodes", "1", "--workers", "1", "--set", "tasks=[0,1]", "--set", "twin.image_size=64",
               "--set", "twin.max_steps=30"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0 and done.exists(), result.stderr[-3000:]
    return root


def build_pretrained(root: Path) -> dict:
    """A full SigLIP (text + vision towers) and a Qwen2 causal LM with its byte-level BPE tokenizer.json, tiny and
    random, saved the way the hub ships them: what the ``paper`` preset loads, at test size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipConfig, SiglipModel

    torch.manual_seed(0)
    siglip = SiglipModel(SiglipConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 64, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0},
        vision_config={"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 64, "patch_size": 16}))
    siglip.save_pretrained(root / "siglip")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(TASKS * 5, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    lm = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=320,
                                      max_position_embeddings=512, tie_word_embeddings=True))
    lm.save_pretrained(root / "qwen")
    tokenizer.save(str(root / "qwen" / "tokenizer.json"))
    return {"vision": root / "siglip", "language": root / "qwen", "siglip": siglip, "lm": lm}
