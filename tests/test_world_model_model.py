"""WorldModel: observe/imagine contract, determinism, anchoring, action conditioning, save/load, loss.

Both code paths run: the ``tiny`` design (frame autoencoder) and the ``paper`` design (diffusers
AutoencoderKLWan, causal, cameras side by side) with tiny random configs of the same classes.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from wm_helpers import tiny_model_config, wan_vae_model_config

from wovr_core.config import ConfigError
from wovr_core.errors import DataError
from wovr_core.types import DUMMY_ACTION
from wovr_core.world_model.model import (
    NULL_ACTION,
    ActionContrast,
    WorldModel,
    WorldState,
    codec_is_frame_wise,
    without_commands,
)

B = 3


@pytest.fixture(scope="module")
def model() -> WorldModel:
    torch.manual_seed(0)
    wm = WorldModel.build(tiny_model_config())
    # Give the zero-initialized action-to-timestep MLP weights, as training would.
    with torch.no_grad():
        for p in wm.denoiser.action_encoder.frame_mlp.parameters():
            p.normal_(0, 0.5)
    return wm.prepare_for_inference()


def _context(model: WorldModel, seed: int = 0, batch: int = B):
    rng = np.random.default_rng(seed)
    size = model.config.image_size
    n = model.config.context_frames
    frames = {c: rng.integers(0, 255, (batch, n, size, size, 3), dtype=np.uint8) for c in model.config.cameras}
    actions = rng.uniform(-1, 1, (batch, n, 7)).astype(np.float32)
    return frames, actions


def _chunk(model: WorldModel, seed: int, batch: int = B) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (batch, model.config.chunk_frames, 7)).astype(np.float32)


def test_imagine_returns_a_chunk_per_camera_and_a_state_of_the_same_shape(model):
    state = model.observe(*_context(model))
    frames, new_state = model.imagine(state, _chunk(model, 1))
    size = model.config.image_size
    assert set(frames) == set(model.config.cameras)
    for video in frames.values():
        assert video.shape == (B, model.config.chunk_frames, size, size, 3) and video.dtype == np.uint8
    assert new_state.latents.shape == state.latents.shape
    assert new_state.actions.shape == (B, model.config.context_frames, 7)
    assert new_state.frames_imagined == model.config.chunk_frames


def test_imagination_is_deterministic_and_batch_independent(model):
    ctx_frames, ctx_actions = _context(model)
    actions = _chunk(model, 2)
    a, _ = model.imagine(model.observe(ctx_frames, ctx_actions), actions)
    b, _ = model.imagine(model.observe(ctx_frames, ctx_actions), actions)
    cam = model.config.cameras[0]
    np.testing.assert_array_equal(a[cam], b[cam])
    # Element 1 alone gets the same future as inside the batch: the noise is fixed per call, not per slot.
    alone, _ = model.imagine(model.observe({c: v[1:2] for c, v in ctx_frames.items()}, ctx_actions[1:2]),
                             actions[1:2])
    assert np.abs(alone[cam][0].astype(int) - a[cam][1].astype(int)).max() <= 1
    # States of separate starts combine into one batch (e.g. groups of rollouts from different keyframes).
    state = model.observe(ctx_frames, ctx_actions)
    combined = WorldState.concat([state.select([2]), state.select([0, 1])])
    c, _ = model.imagine(combined, actions[[2, 0, 1]])
    assert np.abs(c[cam].astype(int) - a[cam][[2, 0, 1]].astype(int)).max() <= 1


def test_different_actions_give_different_futures(model):
    state = model.observe(*_context(model))
    a, _ = model.imagine(state, _chunk(model, 3))
    b, _ = model.imagine(state, -_chunk(model, 3))
    cam = model.config.cameras[0]
    assert np.abs(a[cam].astype(int) - b[cam].astype(int)).mean() > 0.5


def test_the_first_frame_anchor_is_never_overwritten(model):
    state = model.observe(*_context(model))
    anchor = state.latents[:, :, :1].clone()
    for k in range(3):
        _, state = model.imagine(state, _chunk(model, 10 + k))
        torch.testing.assert_close(state.latents[:, :, :1], anchor)
        np.testing.assert_allclose(state.actions[:, 0].float().numpy(),
                                   np.broadcast_to(model.normalize_actions(DUMMY_ACTION), (B, 7)), atol=1e-6)
    assert state.frames_imagined == 3 * model.config.chunk_frames


def test_the_memory_holds_the_newest_frames_even_when_a_chunk_is_shorter_than_it():
    torch.manual_seed(0)
    wm = WorldModel.build(tiny_model_config(chunk_frames=2)).prepare_for_inference()
    state = wm.observe(*_context(wm, batch=1))
    _, new = wm.imagine(state, _chunk(wm, 1, batch=1))
    torch.testing.assert_close(new.latents[:, :, :1], state.latents[:, :, :1])  # anchor
    torch.testing.assert_close(new.latents[:, :, 1:3], state.latents[:, :, 3:5])  # the 2 newest old frames...
    torch.testing.assert_close(new.actions[:, 1:3], state.actions[:, 3:5])  # ...with the actions that led to them
    assert new.latents.shape == state.latents.shape


def test_a_single_frame_context_is_the_reset_context(model):
    frames, _ = _context(model)
    first = {c: v[:, :1] for c, v in frames.items()}
    repeated = {c: np.repeat(v, model.config.context_frames, axis=1) for c, v in first.items()}
    dummy = np.broadcast_to(DUMMY_ACTION, (B, model.config.context_frames, 7))
    a, b = model.observe(first), model.observe(repeated, dummy)
    torch.testing.assert_close(a.latents, b.latents)
    torch.testing.assert_close(a.actions, b.actions)


def test_actions_enter_through_both_cross_attention_and_the_timestep_embedding():
    torch.manual_seed(0)
    wm = WorldModel.build(tiny_model_config()).eval()
    enc = wm.denoiser.action_encoder
    x = torch.randn(2, wm.codec.latent_channels, 13, 8, 8)
    t = torch.cat([torch.zeros(2, 5), torch.full((2, 8), 0.7)], dim=1)
    a1, a2 = torch.randn(2, 13, 7), torch.randn(2, 13, 7)
    with torch.no_grad():
        # Path 1 only: the timestep MLP starts at zero, so any effect comes from the cross-attention tokens.
        assert (wm.denoiser(x, t, a1) - wm.denoiser(x, t, a2)).abs().mean() > 1e-4
        # Path 2 only: silence the token MLP (tokens become position embeddings) and open the timestep MLP.
        for p in enc.token_mlp.parameters():
            p.zero_()
        assert (wm.denoiser(x, t, a1) - wm.denoiser(x, t, a2)).abs().max() == 0
        for p in enc.frame_mlp.parameters():
            p.normal_(0, 0.5)
        assert (wm.denoiser(x, t, a1) - wm.denoiser(x, t, a2)).abs().mean() > 1e-4


def test_the_displacement_embedding_gives_each_frame_the_arm_command_summed_since_the_last_context_frame():
    torch.manual_seed(0)
    wm = WorldModel.build(tiny_model_config(**{"denoiser.displacement_embedding": "true"}))
    enc = wm.denoiser.action_encoder
    actions = torch.zeros(1, 13, 7)
    actions[0, :, 0] = 1.0  # +x every frame, the dummy anchor action included
    actions[0, :, 2] = -0.5
    actions[0, :, 6] = 1.0  # the gripper is absolute: never summed
    disp = enc.displacement(actions)[0]
    assert disp.shape == (13, 6)
    # anchor | memory frames m_1..m_4 (m_4 is the reference) | generated frames, over the 8 frames of a chunk
    expected_x = torch.tensor([0, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8]) / 8
    torch.testing.assert_close(disp[:, 0], expected_x)
    torch.testing.assert_close(disp[:, 2], -0.5 * expected_x)
    assert disp[:, [1, 3, 4, 5]].abs().max() == 0
    # Two chunks whose last actions agree but whose sums differ now embed that last frame differently.
    moved, still = actions.clone(), actions.clone()
    still[0, 5:12, 0] = 0.0
    with torch.no_grad():
        for p in enc.frame_mlp.parameters():
            p.normal_(0, 0.5)
        last = enc.frame_embedding(torch.cat([moved, still]), 13)[:, -1]
    assert (last[0] - last[1]).abs().max() > 1e-3
    # Without it, the frame embedding reads each frame's own action alone.
    plain = WorldModel.build(tiny_model_config()).denoiser.action_encoder
    assert plain.frame_mlp[0].in_features == 7 and enc.frame_mlp[0].in_features == 13


@pytest.mark.parametrize("config", [tiny_model_config, wan_vae_model_config], ids=["frame_ae", "wan_vae"])
def test_a_model_with_the_displacement_embedding_imagines_saves_and_loads(tmp_path, config):
    torch.manual_seed(0)
    wm = WorldModel.build(config(image_size=16, **{"denoiser.displacement_embedding": "true"}))
    wm = wm.prepare_for_inference()
    ctx, actions = _context(wm, batch=2), _chunk(wm, 1, batch=2)
    frames, _ = wm.imagine(wm.observe(*ctx), actions)
    wm.save(tmp_path / "wm")
    loaded = WorldModel.load(tmp_path / "wm").prepare_for_inference()
    assert loaded.config.denoiser.displacement_embedding
    again, _ = loaded.imagine(loaded.observe(*ctx), actions)
    np.testing.assert_array_equal(again["wrist"], frames["wrist"])


def test_loss_trains_both_the_transformer_and_the_action_encoder():
    torch.manual_seed(0)
    wm = WorldModel.build(tiny_model_config())
    latents = torch.randn(2, wm.codec.latent_channels, 13, 8, 8)
    actions = torch.randn(2, 13, 7)
    loss = wm.loss(latents, actions)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert wm.denoiser.action_encoder.token_mlp[0].weight.grad.abs().sum() > 0
    assert wm.denoiser.action_encoder.frame_mlp[-1].weight.grad.abs().sum() > 0
    assert wm.denoiser.transformer.proj_out.weight.grad.abs().sum() > 0
    # A fixed generator makes the validation loss reproducible.
    with torch.no_grad():
        l1 = wm.loss(latents, actions, generator=torch.Generator().manual_seed(3))
        l2 = wm.loss(latents, actions, generator=torch.Generator().manual_seed(3))
    assert l1.item() == l2.item()
    # A fixed noise level replaces the drawn t (the action-sensitivity benchmark compares models at equal t).
    with torch.no_grad():
        at = {level: wm.loss(latents, actions, generator=torch.Generator().manual_seed(3), noise_level=level).item()
              for level in (0.2, 1.0)}
    assert len({l1.item(), *at.values()}) == 3
    with pytest.raises(ValueError, match="noise_level"):
        wm.loss(latents, actions, noise_level=0.0)



def _relative_gap(wm: WorldModel, latents, actions, altered) -> float:
    with torch.no_grad():
        recorded = wm.loss(latents, actions, generator=torch.Generator().manual_seed(5)).item()
        other = wm.loss(latents, altered, generator=torch.Generator().manual_seed(5)).item()
    return (other - recorded) / recorded


def test_the_action_contrast_hinge_pays_until_altered_actions_cost_its_margin():
    torch.manual_seed(0)
    wm = WorldModel.build(tiny_model_config())
    latents = torch.randn(4, wm.codec.latent_channels, 13, 8, 8)
    actions = torch.randn(4, 13, 7)
    altered = actions.clone()
    altered[:, wm.config.context_frames:, :3] *= -1
    with torch.no_grad():
        plain = wm.loss(latents, actions, generator=torch.Generator().manual_seed(3)).item()
        # Unaltered "altered" actions: no gap, so the whole margin is paid, on top of the plain loss.
        same = wm.loss(latents, actions, generator=torch.Generator().manual_seed(3),
                       contrast=ActionContrast(actions, weight=2.0, margin=0.1)).item()
        # A margin already met costs nothing.
        met = wm.loss(latents, actions, generator=torch.Generator().manual_seed(3),
                      contrast=ActionContrast(altered, weight=2.0, margin=-1.0)).item()
    assert same == pytest.approx(plain + 0.2, rel=1e-5)
    assert met == pytest.approx(plain, rel=1e-5)
    # Training on the hinge makes the model's prediction depend on the reversed translation; the same steps
    # without it (weight 0) hardly do.
    gaps = {}
    for weight in (0.0, 5.0):
        torch.manual_seed(1)
        trained = WorldModel.build(tiny_model_config())
        optimizer = torch.optim.Adam(trained.denoiser.parameters(), lr=3e-3)
        for step in range(40):
            loss = trained.loss(latents, actions, generator=torch.Generator().manual_seed(100 + step),
                                contrast=ActionContrast(altered, weight=weight, margin=0.5))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        gaps[weight] = _relative_gap(trained, latents, actions, altered)
    assert gaps[5.0] > gaps[0.0] + 0.2


def _loss_with_output_offsets(wm: WorldModel, latents, actions, context_offset: float, chunk_offset: float) -> float:
    """The loss when the denoiser's velocity is shifted on the context / on the generated latent frames."""
    n_ctx = wm.context_latent_frames

    def shift(module, inputs, output):
        out = output.clone()
        out[:, :, :n_ctx] += context_offset
        out[:, :, n_ctx:] += chunk_offset
        return out

    handle = wm.denoiser.register_forward_hook(shift)
    try:
        with torch.no_grad():
            return wm.loss(latents, actions, generator=torch.Generator().manual_seed(0)).item()
    finally:
        handle.remove()


def test_the_loss_covers_the_generated_frames_only():
    torch.manual_seed(0)
    wm = WorldModel.build(tiny_model_config())
    latents = torch.randn(2, wm.codec.latent_channels, 13, 8, 8)
    actions = torch.randn(2, 13, 7)
    base = _loss_with_output_offsets(wm, latents, actions, 0.0, 0.0)
    assert _loss_with_output_offsets(wm, latents, actions, 1000.0, 0.0) == base  # context predictions: masked
    assert _loss_with_output_offsets(wm, latents, actions, 0.0, 0.5) > base + 0.1


def test_training_keeps_the_anchor_clean_noises_the_memory_and_tells_the_model_t_0():
    torch.manual_seed(0)
    wm = WorldModel.build(tiny_model_config())
    n_ctx = wm.context_latent_frames
    seen = {}

    def capture(module, args):
        seen["latents"], seen["t"] = args[0].detach().clone(), args[1].detach().clone()

    handle = wm.denoiser.register_forward_pre_hook(capture)
    latents = torch.randn(4, wm.codec.latent_channels, 13, 8, 8)
    with torch.no_grad():
        wm.loss(latents, torch.randn(4, 13, 7), generator=torch.Generator().manual_seed(1))
    handle.remove()
    torch.testing.assert_close(seen["latents"][:, :, :1], latents[:, :, :1], rtol=0, atol=0)  # o_0: clean
    memory_change = (seen["latents"][:, :, 1:n_ctx] - latents[:, :, 1:n_ctx]).abs().flatten(1).amax(1)
    assert torch.all(memory_change > 0)  # memory frames: noised...
    assert torch.all(seen["t"][:, :n_ctx] == 0)  # ...while the model is told t = 0
    t_chunk = seen["t"][:, n_ctx:]
    assert torch.all(t_chunk > 0) and torch.all(t_chunk == t_chunk[:, :1])  # one noise level per generated chunk
    # Noise level of the memory: x = (1 - s) x0 + s eps with s <= memory_noise_max.
    sigma_max = wm.config.memory_noise_max
    diff = seen["latents"][:, :, 1:n_ctx] - latents[:, :, 1:n_ctx]
    assert 0 < diff.std().item() < 2 * sigma_max


def test_frames_through_the_codec_look_as_imagination_decodes_them(model):
    frames, _ = _context(model, batch=5)
    single = {c: v[:, 0] for c, v in frames.items()}  # (5, H, W, 3) per camera
    through = model.through_codec(single, batch=2)  # in parts of 2: the same as all at once
    decoded = model.to_frames(model.codec.decode(model.codec.encode(model.to_video({c: v[:, None] for c, v in
                                                                                     single.items()}))))
    for c in model.config.cameras:
        assert through[c].shape == single[c].shape and through[c].dtype == np.uint8
        np.testing.assert_array_equal(through[c], decoded[c][:, 0])
    assert not np.array_equal(through["agentview"], single["agentview"])  # an untrained codec is far from lossless
    # Camera-size frames go through at the model's size (as imagination renders them) and come back at theirs.
    large = {c: np.repeat(np.repeat(v, 2, axis=1), 2, axis=2) for c, v in single.items()}
    back = model.through_codec(large)
    assert all(back[c].shape == large[c].shape for c in model.config.cameras)
    assert np.abs(back["agentview"][:, ::2, ::2].astype(int) - through["agentview"]).mean() < 10


def test_the_paper_code_path_runs_with_a_tiny_wan_vae(tmp_path):
    """AutoencoderKLWan (causal, temporal factor 2 here) + cameras side by side, as the paper preset."""
    torch.manual_seed(0)
    wm = WorldModel.build(wan_vae_model_config(image_size=16)).prepare_for_inference()
    k = wm.codec.temporal_factor
    assert k == 2
    assert wm.context_latent_frames == 1 + wm.config.memory_frames // k
    assert wm.chunk_latent_frames == wm.config.chunk_frames // k
    ctx = _context(wm, batch=1)
    state = wm.observe(*ctx)
    assert state.latents.shape[2] == wm.context_latent_frames
    assert state.latents.shape[-1] == 2 * state.latents.shape[-2]  # two cameras side by side
    anchor = state.latents[:, :, :1].clone()
    frames, next_state = wm.imagine(state, _chunk(wm, 1, batch=1))
    assert frames["wrist"].shape == (1, wm.config.chunk_frames, 16, 16, 3)
    _, next_state = wm.imagine(next_state, _chunk(wm, 2, batch=1))
    torch.testing.assert_close(next_state.latents[:, :, :1], anchor)
    wm.save(tmp_path / "wm")
    loaded = WorldModel.load(tmp_path / "wm").prepare_for_inference()
    again, _ = loaded.imagine(loaded.observe(*ctx), _chunk(wm, 1, batch=1))
    np.testing.assert_array_equal(again["agentview"], frames["agentview"])  # deterministic, and reloaded
    assert not codec_is_frame_wise(tmp_path / "wm")  # a clip codec: no frame-by-frame round trip


def test_save_and_load_reproduce_the_model(tmp_path, model):
    model.save(tmp_path / "wm")
    loaded = WorldModel.load(tmp_path / "wm").prepare_for_inference()
    ctx = _context(model, 5)
    actions = _chunk(model, 6)
    a, _ = model.imagine(model.observe(*ctx), actions)
    b, _ = loaded.imagine(loaded.observe(*ctx), actions)
    for cam in model.config.cameras:
        np.testing.assert_array_equal(a[cam], b[cam])
    assert codec_is_frame_wise(tmp_path / "wm")
    with pytest.raises(DataError, match="not found"):
        codec_is_frame_wise(tmp_path / "nowhere")


def test_loading_a_damaged_checkpoint_names_the_file(tmp_path, model):
    with pytest.raises(DataError, match="not found"):
        WorldModel.load(tmp_path / "nowhere")
    model.save(tmp_path / "wm")
    (tmp_path / "wm" / "action_encoder.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="action_encoder.safetensors"):
        WorldModel.load(tmp_path / "wm")
    model.save(tmp_path / "wm2")
    (tmp_path / "wm2" / "norm_stats.json").unlink()
    with pytest.raises(DataError, match="norm_stats.json"):
        WorldModel.load(tmp_path / "wm2")
    model.save(tmp_path / "wm3")
    weights = next((tmp_path / "wm3" / "transformer").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # truncated by a full disk or a killed copy
    with pytest.raises(DataError, match="transformer"):
        WorldModel.load(tmp_path / "wm3")
    model.save(tmp_path / "wm4")
    (tmp_path / "wm4" / "config.json").write_text('{"type": "oops"')
    with pytest.raises(DataError, match="config.json"):
        WorldModel.load(tmp_path / "wm4")


def test_no_command_replaces_the_chunk_actions_and_keeps_the_context_actions():
    window = torch.randn(2, 13, 7)
    null = without_commands(window, context_frames=5)
    assert torch.equal(null[:, :5], window[:, :5])
    assert torch.equal(null[:, 5:], torch.as_tensor(NULL_ACTION).expand(2, 8, 7))
    # The gripper of "no command" is neither open nor closed: no recorded action looks like it.
    assert NULL_ACTION[-1] not in (-1.0, 1.0)


def _sample_with_guidance(model: WorldModel, guidance: float, context, window_actions, steps: int):
    old = model.config.action_guidance
    try:
        return model.use_action_guidance(guidance).sample(context, window_actions, steps=steps)
    finally:
        model.use_action_guidance(old)


def test_action_guidance_extrapolates_from_no_command_towards_the_commanded_actions(model):
    frames, actions = _context(model)
    state = model.observe(frames, actions)
    window = torch.cat([state.actions, torch.as_tensor(model.normalize_actions(_chunk(model, 1)))], dim=1)
    ctx = model.config.context_frames

    def sample(guidance, acts=window, steps=1):
        return _sample_with_guidance(model, guidance, state.latents, acts, steps).float()

    # w = 0 is the prediction without a command, w = 1 (the default) the plain commanded one ...
    torch.testing.assert_close(sample(0.0), sample(1.0, without_commands(window, ctx)), atol=1e-4, rtol=0)
    assert torch.equal(sample(1.0), model.sample(state.latents, window, steps=1).float())
    # ... and the velocity is linear in w: one Euler step moves w times the commanded difference.
    torch.testing.assert_close(sample(3.0) - sample(1.0), 2 * (sample(1.0) - sample(0.0)), atol=1e-4, rtol=0)
    assert (sample(3.0, steps=3) - sample(1.0, steps=3)).abs().mean() > 1e-3
    # Batch elements stay independent with the doubled batch.
    one = _sample_with_guidance(model, 3.0, state.latents[:1], window[:1], 3).float()
    torch.testing.assert_close(one, sample(3.0, steps=3)[:1], atol=1e-4, rtol=0)


def test_action_guidance_outside_its_range_is_refused():
    for guidance in (-1.0, 50.0):
        config = tiny_model_config()
        config.action_guidance = guidance
        with pytest.raises(ConfigError, match="action_guidance"):
            config.validate()


def test_bad_inputs_are_rejected_with_a_clear_message(model):
    frames, actions = _context(model)
    with pytest.raises(ValueError, match="missing cameras"):
        model.observe({model.config.cameras[0]: frames[model.config.cameras[0]]}, actions)
    with pytest.raises(ValueError, match="uint8"):
        model.observe({c: v.astype(np.float32) for c, v in frames.items()}, actions)
    with pytest.raises(ValueError, match="1 frame"):
        model.observe({c: v[:, :3] for c, v in frames.items()}, actions[:, :3])
    state = model.observe(frames, actions)
    bad = _chunk(model, 1)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.imagine(state, bad)
    with pytest.raises(ValueError, match="actions must be"):
        model.imagine(state, _chunk(model, 1)[:, :5])


def test_a_new_model_starts_from_a_trained_frame_autoencoder_in_its_folder(tmp_path, model):
    model.save(tmp_path / "first")
    cfg = tiny_model_config(**{"codec.pretrained_path": str(tmp_path / "first" / "codec")})
    reused = WorldModel.build(cfg)
    for name, tensor in model.codec.state_dict().items():
        torch.testing.assert_close(reused.codec.state_dict()[name], tensor.float(), msg=name)
    reused.save(tmp_path / "second")  # the saved model carries its codec: it loads without the first folder
    shutil.rmtree(tmp_path / "first")
    assert WorldModel.load(tmp_path / "second").codec.autoencoder.config.latent_channels == 4
    with pytest.raises(DataError, match="no_codec"):
        WorldModel.build(tiny_model_config(**{"codec.pretrained_path": str(tmp_path / "no_codec")}))


def test_presets_build_configs_and_missing_pretrained_weights_are_named(tmp_path):
    from wovr_core.config import make_config
    from wovr_core.world_model.config import WorldModelConfig, WorldModelTrainConfig

    paper = make_config(WorldModelTrainConfig, "paper").model
    assert paper.codec.kind == "wan_vae" and paper.codec.camera_layout == "width" and paper.image_size == 256
    assert make_config(WorldModelConfig, "tiny").codec.kind == "frame_ae"
    missing = make_config(WorldModelConfig, "paper", {"codec.pretrained_path": str(tmp_path / "no_vae")})
    with pytest.raises(DataError, match="no_vae"):
        WorldModel.build(missing)
