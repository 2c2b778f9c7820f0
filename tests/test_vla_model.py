"""The batched VLA model API that the SFT and RL trainers use: forward, sample, log_prob, sft_loss."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from vla_helpers import (
    TASKS,
    libero_like_stats,
    micro_config,
    observation,
    single_torch_thread,  # noqa: F401  (autouse fixture)
)

from wovr_core.policy.vla import (
    build_vla_model,
    greedy_tokens,
    sample_tokens,
    sft_loss_from_logits,
    token_log_probs,
)
from wovr_core.policy.vla_inputs import VLABatch
from wovr_core.policy.vla_policy import VLAPolicy


@pytest.fixture(scope="module")
def policy() -> VLAPolicy:
    policy = VLAPolicy.create(micro_config(), libero_like_stats(), tasks=TASKS, device="cpu")
    with torch.no_grad():  # random init gives near-uniform logits; sharpen them so sampling is not trivial
        policy.model.action_head.weight.mul_(8.0)
    return policy


@pytest.fixture(scope="module")
def batch(policy) -> VLABatch:
    return policy.prepare_batch([observation(32, TASKS[i % 3], seed=i) for i in range(3)])


def test_forward_gives_one_distribution_per_action_token(policy, batch):
    logits = policy.model(batch)
    assert logits.shape == (3, 8 * 7, 256) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert batch.images.shape == (3, 2, 32, 32, 3) and batch.text_ids.shape == (3, 8)


@pytest.mark.parametrize("temperature", [1.0, 1.6, 0.5])
def test_log_prob_is_the_tempered_log_softmax_at_the_tokens(policy, batch, temperature):
    tokens = torch.randint(0, 256, (3, 56), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = policy.model(batch)
        expected = torch.log_softmax(logits / temperature, dim=-1)[
            torch.arange(3)[:, None], torch.arange(56)[None, :], tokens]
        got = policy.model.log_prob(batch, tokens, temperature)
    assert got.shape == (3, 56)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert (got <= 0).all()


def test_sample_returns_exactly_the_log_probs_of_its_tokens(policy, batch):
    with torch.no_grad():
        tokens, log_probs = policy.model.sample(batch, 1.6, torch.Generator().manual_seed(0))
        assert tokens.shape == (3, 56) and tokens.dtype == torch.int64
        torch.testing.assert_close(log_probs, policy.model.log_prob(batch, tokens, 1.6), rtol=0, atol=1e-6)
        greedy, greedy_lp = policy.model.sample(batch, 0.0)
        mode, _ = policy.model.sample(batch, 0.0, greedy="argmax")
        logits = policy.model(batch)
    assert torch.equal(greedy, greedy_tokens(logits, "median")) and torch.equal(mode, logits.argmax(-1))
    torch.testing.assert_close(greedy_lp, token_log_probs(logits, greedy), rtol=0, atol=1e-6)


def test_median_decoding_stays_centred_where_argmax_follows_noise():
    # A flat-topped distribution whose highest bin sits off-centre by chance; and a two-valued gripper.
    logits = torch.full((1, 2, 256), -1e4)
    logits[0, 0, 100:157] = 0.0
    logits[0, 0, 150] = 0.05
    logits[0, 1, 0], logits[0, 1, 255] = 0.3, 0.0
    median = greedy_tokens(logits, "median")
    assert median[0, 0].item() == 128 and greedy_tokens(logits, "argmax")[0, 0].item() == 150
    assert median[0, 1].item() == 0 == greedy_tokens(logits, "argmax")[0, 1].item()
    with pytest.raises(ValueError, match="median"):
        greedy_tokens(logits, "mean")


def test_sampling_is_reproducible_with_a_seeded_generator(policy, batch):
    with torch.no_grad():
        a, _ = policy.model.sample(batch, 1.0, torch.Generator().manual_seed(7))
        b, _ = policy.model.sample(batch, 1.0, torch.Generator().manual_seed(7))
        c, _ = policy.model.sample(batch, 1.0, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def _chi_square_z(counts: np.ndarray, probs: np.ndarray, n: int) -> float:
    """Pooled chi-square over token positions (bins with expected count < 5 merged), as a z-score
    (Wilson-Hilferty): about N(0, 1) when ``counts`` are draws from ``probs``."""
    stat, dof = 0.0, 0
    for observed, p in zip(counts, probs, strict=True):
        expected = p * n
        big = expected >= 5
        obs_cells = np.append(observed[big], observed[~big].sum())
        exp_cells = np.append(expected[big], expected[~big].sum())
        keep = exp_cells > 0
        stat += float((((obs_cells - exp_cells) ** 2)[keep] / exp_cells[keep]).sum())
        dof += int(keep.sum()) - 1
    return ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))


@pytest.mark.parametrize("temperature", [1.6, 0.7])
def test_sampled_token_frequencies_match_softmax_of_logits_over_temperature(policy, temperature):
    n = 2000
    single = policy.prepare_batch([observation(32, TASKS[0], seed=3)])
    with torch.no_grad():
        tokens, _ = policy.model.sample(single.repeat(n), temperature, torch.Generator().manual_seed(0))
        logits = policy.model(single)[0].double()
    probs = torch.softmax(logits / temperature, dim=-1).numpy()
    untempered = torch.softmax(logits, dim=-1).numpy()
    counts = np.stack([np.bincount(tokens[:, i].numpy(), minlength=256) for i in range(56)])
    # The distribution is far from uniform, so the check has something to detect...
    assert probs.max(axis=1).mean() > 5 / 256
    z = _chi_square_z(counts, probs, n)
    assert z < 4.5, f"sampled frequencies deviate from softmax(logits / {temperature}): z = {z:.1f}"
    # ...and it would detect sampling at the wrong temperature.
    assert _chi_square_z(counts, untempered, n) > 10


def test_sft_loss_is_token_cross_entropy_and_falls_when_overfitting_a_batch(batch):
    torch.manual_seed(0)
    policy = VLAPolicy.create(micro_config(), libero_like_stats(), tasks=TASKS, device="cpu")
    model = policy.model.train()
    targets = torch.randint(0, 256, (3, 56), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = -token_log_probs(model(batch), targets).mean()
        torch.testing.assert_close(model.sft_loss(batch, targets), expected, rtol=1e-5, atol=1e-5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model.sft_loss(batch, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(256), rel=0.05)  # untrained: about uniform over the bins
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        accuracy = (model(batch).argmax(-1) == targets).float().mean().item()
    assert accuracy > 0.5


def test_logits_do_not_depend_on_padding_or_on_the_rest_of_the_batch(policy, batch):
    with torch.no_grad():
        together = policy.model(batch)
        alone = policy.model(VLABatch(batch.images[1:2], batch.text_ids[1:2], batch.text_mask[1:2],
                                      batch.state[1:2]))
        other_pad_ids = batch.text_ids.masked_fill(~batch.text_mask, 5)
        repadded = policy.model(dataclasses.replace(batch, text_ids=other_pad_ids))
    assert (~batch.text_mask).any()
    torch.testing.assert_close(alone[0], together[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(repadded, together, rtol=0, atol=1e-5)


def test_every_input_reaches_the_action_logits(policy, batch):
    """The image, state and instruction each change the output (the attention mask lets queries see them)."""
    with torch.no_grad():
        base = policy.model(batch)
        changes = {
            "image": dataclasses.replace(batch, images=255 - batch.images),
            "state": dataclasses.replace(batch, state=batch.state + 1.0),
            "task": dataclasses.replace(batch, text_ids=batch.text_ids.roll(1, dims=0),
                                        text_mask=batch.text_mask.roll(1, dims=0)),
        }
        for name, changed in changes.items():
            assert (policy.model(changed) - base).abs().max() > 1e-3, f"{name} does not affect the logits"


def test_build_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_vla_model(micro_config(seed=5), vocab_size=20)
    after = torch.rand(1)
    b = build_vla_model(micro_config(seed=5), vocab_size=20)
    c = build_vla_model(micro_config(seed=6), vocab_size=20)
    assert torch.equal(before, after)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.action_queries, c.action_queries)


def test_malformed_batches_are_rejected(policy, batch):
    with pytest.raises(ValueError, match="images"):
        policy.model(dataclasses.replace(batch, images=batch.images[:, :, :16]))
    with pytest.raises(ValueError, match="proprio"):
        policy.model(dataclasses.replace(batch, state=None))
    with pytest.raises(ValueError, match="temperature"):
        policy.model.log_prob(batch, torch.zeros(3, 56, dtype=torch.long), temperature=0.0)
    with pytest.raises(ValueError, match="tokens"):
        policy.model.log_prob(batch, torch.full((3, 56), 256))


def test_augmentation_shifts_each_image_within_its_padding(batch):
    shifted = batch.augmented(torch.Generator().manual_seed(0), max_shift=4)
    assert shifted.images.shape == batch.images.shape and shifted.images.dtype == torch.uint8
    assert not torch.equal(shifted.images, batch.images)
    assert torch.equal(shifted.text_ids, batch.text_ids) and torch.equal(shifted.state, batch.state)
    # Each output is a window of the edge-padded input.
    original = batch.images[0, 0].permute(2, 0, 1).float()
    padded = torch.nn.functional.pad(original[None], (4, 4, 4, 4), mode="replicate")[0]
    out = shifted.images[0, 0].permute(2, 0, 1).float()
    windows = [(dy, dx) for dy in range(9) for dx in range(9) if torch.equal(padded[:, dy:dy + 32, dx:dx + 32], out)]
    assert windows
    assert batch.augmented(max_shift=0) is batch


def test_sampling_never_draws_a_bin_of_probability_zero():
    logits = torch.full((500, 3, 256), float("-inf"))
    logits[:, :, 0] = 0.0
    logits[:, :, 255] = 1.0
    tokens = sample_tokens(logits, 1.6, torch.Generator().manual_seed(0))
    assert set(tokens.unique().tolist()) == {0, 255}


def test_smoothed_sft_loss_is_cross_entropy_against_a_gaussian_over_neighbouring_bins():
    logits = torch.randn(2, 3, 256, generator=torch.Generator().manual_seed(0))
    tokens = torch.tensor([[0, 128, 255], [10, 11, 12]])
    assert sft_loss_from_logits(logits, tokens, 0.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten()).item())
    sigma = 2.0
    bins = torch.arange(256.0)
    target = torch.exp(-0.5 * ((bins - 128) / sigma) ** 2) * ((bins - 128).abs() <= 3 * sigma)
    target /= target.sum()
    expected = -(target * torch.log_softmax(logits[0, 1], -1)).sum()
    per_token = sft_loss_from_logits(logits[:1, 1:2], tokens[:1, 1:2], sigma)
    assert per_token.item() == pytest.approx(expected.item(), rel=1e-5)
    # Predicting the target distribution itself gives the minimum: its entropy.
    at_target = sft_loss_from_logits(torch.log(target)[None, None].clamp(min=-1e4), torch.tensor([[128]]), sigma)
    entropy = -(target[target > 0] * target[target > 0].log()).sum()
    assert at_target.item() == pytest.approx(entropy.item(), rel=1e-4)
    # An edge bin's target is the half-Gaussian inside the range, still normalized: uniform logits cost log(256).
    edge = sft_loss_from_logits(torch.zeros(1, 1, 256), torch.tensor([[255]]), sigma)
    assert edge.item() == pytest.approx(np.log(256), rel=1e-6)
