"""The ``paper`` preset's code path (pretrained SigLIP + pretrained causal LM, bfloat16), exercised with tiny
random models of the same classes saved the way the hub ships them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from vla_helpers import (
    TASKS,
    build_pretrained,
    libero_like_stats,
    observation,
    single_torch_thread,  # noqa: F401  (autouse fixture)
)

from wovr_core.config import make_config
from wovr_core.errors import DataError
from wovr_core.policy.vla_config import VLAConfig
from wovr_core.policy.vla_policy import VLAPolicy, load_vla_policy


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return build_pretrained(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def paper_policy(pretrained) -> VLAPolicy:
    config = make_config(VLAConfig, "paper", {"pretrained_vision": str(pretrained["vision"]),
                                              "pretrained_language": str(pretrained["language"])})
    return VLAPolicy.create(config, libero_like_stats(), device="cpu")


def test_paper_preset_loads_the_pretrained_backbones_in_bfloat16(paper_policy, pretrained):
    model = paper_policy.model
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert type(model.language).__name__ == "Qwen2Model" and type(model.vision).__name__ == "SiglipVisionModel"
    # The pretrained weights, not a random init: vision tower of the full SigLIP, base model of the causal LM.
    torch.testing.assert_close(model.vision.embeddings.patch_embedding.weight,
                               pretrained["siglip"].vision_model.embeddings.patch_embedding.weight.bfloat16())
    torch.testing.assert_close(model.language.embed_tokens.weight,
                               pretrained["lm"].model.embed_tokens.weight.bfloat16())
    # The architecture recorded in the config comes from the pretrained files.
    assert model.config.vision["image_size"] == 64 and model.config.vision["hidden_size"] == 48
    assert model.config.language["model_type"] == "qwen2" and model.config.language["num_key_value_heads"] == 2
    assert paper_policy.tokenizer.vocab_size == pretrained_vocab(pretrained)
    assert paper_policy.metadata()["action_contract"]["image_keys"]["observation.images.agentview"] == [64, 64, 3]


def pretrained_vocab(pretrained) -> int:
    return Tokenizer.from_file(str(pretrained["language"] / "tokenizer.json")).get_vocab_size()


def test_paper_policy_infers_samples_and_trains_in_bfloat16(paper_policy):
    reply = paper_policy.infer(observation(size=128))
    assert reply["actions"].shape == (8, 7) and np.isfinite(reply["actions"]).all()
    model = paper_policy.model
    batch = paper_policy.prepare_batch([observation(size=64, seed=i, task=TASKS[i]) for i in range(2)])
    with torch.no_grad():
        tokens, log_probs = model.sample(batch, 1.6, torch.Generator().manual_seed(0))
        torch.testing.assert_close(log_probs, model.log_prob(batch, tokens, 1.6), rtol=0, atol=1e-6)
    model.train()
    try:
        loss = model.sft_loss(batch, tokens)
        loss.backward()
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        for part in (model.vision, model.language, model.action_head):
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_paper_checkpoint_reloads_without_the_pretrained_directories(paper_policy, pretrained, tmp_path):
    saved = paper_policy.save(tmp_path / "vla-paper")
    config = json.loads((saved / "config.json").read_text())["config"]
    assert config["dtype"] == "bfloat16" and config["language"]["model_type"] == "qwen2"
    moved = {key: path.rename(path.with_name(path.name + "-gone")) for key, path in
             (("vision", pretrained["vision"]), ("language", pretrained["language"]))}
    try:
        loaded = load_vla_policy(saved, device="cpu")
    finally:
        for key, path in moved.items():
            path.rename(pretrained[key])
    assert all(p.dtype == torch.bfloat16 for p in loaded.model.parameters())
    batch = paper_policy.prepare_batch([observation(size=64, seed=3)])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(batch), paper_policy.model(batch), rtol=0, atol=0)
    obs = observation(size=64, seed=4)
    np.testing.assert_array_equal(loaded.infer(obs)["actions"], paper_policy.infer(obs)["actions"])


def test_missing_pretrained_directories_are_named(tmp_path):
    config = make_config(VLAConfig, "paper", {"pretrained_vision": str(tmp_path / "nowhere"),
                                              "pretrained_language": str(tmp_path / "nowhere")})
    with pytest.raises(DataError, match="nowhere.*pretrained_vision"):
        VLAPolicy.create(config, libero_like_stats())
