"""Imagined replay and the reward views: labelled episodes seen as imagination shows them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from wm_helpers import tiny_model_config, wan_vae_model_config

from wovr_core.errors import DataError
from wovr_core.types import DUMMY_ACTION
from wovr_core.world_model.model import WorldModel
from wovr_core.world_model.replay import imagined_replay, reward_view

LENGTH = 22  # not a whole number of 8-frame chunks after frame 0: the last anchor's chunk runs past the end


@pytest.fixture(scope="module")
def model() -> WorldModel:
    torch.manual_seed(0)
    wm = WorldModel.build(tiny_model_config())
    with torch.no_grad():  # action conditioning that matters, as after training
        for p in wm.denoiser.action_encoder.frame_mlp.parameters():
            p.normal_(0, 0.5)
    return wm.prepare_for_inference()


def _episode(model: WorldModel, length: int = LENGTH, size: int | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    size = size or model.config.image_size
    frames = {c: rng.integers(0, 255, (length, size, size, 3), dtype=np.uint8) for c in model.config.cameras}
    return frames, rng.uniform(-1, 1, (length, 7)).astype(np.float32)


def _chunk_from(model: WorldModel, frames, actions, anchor: int, chunks: int = 1):
    """What imagination makes from the real context at ``anchor`` under the recorded actions (the reference)."""
    cfg = model.config
    if anchor == 0:
        state = model.observe({c: v[None, :1] for c, v in frames.items()})
    else:
        index = np.concatenate([[0], np.arange(anchor - cfg.memory_frames + 1, anchor + 1)])
        state = model.observe({c: v[None, index] for c, v in frames.items()}, actions[None, index])
    out = []
    for k in range(chunks):
        lo = anchor + 1 + k * cfg.chunk_frames
        chunk = actions[lo:lo + cfg.chunk_frames]
        chunk = np.concatenate([chunk, np.repeat(actions[-1:], cfg.chunk_frames - len(chunk), axis=0)])
        imagined, state = model.imagine(state, chunk[None])
        out.append(imagined)
    return {c: np.concatenate([o[c][0] for o in out]) for c in frames}


def test_each_frame_is_imagined_from_the_last_real_anchor_under_the_recorded_actions(model):
    frames, actions = _episode(model)
    replay = imagined_replay(model, frames, actions, anchor_every=1, batch=2)  # anchors 0, 8, 16 in two batches
    for cam in model.config.cameras:
        assert replay[cam].shape == frames[cam].shape and replay[cam].dtype == np.uint8
        np.testing.assert_array_equal(replay[cam][0], frames[cam][0])  # the real start of every rollout
    for anchor in (0, 8, 16):
        expected = _chunk_from(model, frames, actions, anchor)
        n = min(8, LENGTH - 1 - anchor)
        for cam in model.config.cameras:
            np.testing.assert_array_equal(replay[cam][anchor + 1:anchor + 1 + n], expected[cam][:n])
    # Two chunks per anchor: frames 9..16 are the second imagined chunk from frame 0, not a fresh anchor.
    longer = imagined_replay(model, frames, actions, anchor_every=2)
    expected = _chunk_from(model, frames, actions, 0, chunks=2)
    np.testing.assert_array_equal(longer["agentview"][1:17], expected["agentview"])
    assert not np.array_equal(longer["agentview"][9:17], replay["agentview"][9:17])


def test_the_context_before_a_full_memory_is_a_reset(model):
    """With chunks shorter than the memory an anchor can come before memory_frames real frames exist: o_0 with
    the dummy action stands in for the missing ones, as in training's reset clips."""
    from wovr_core.world_model.replay import _context

    frames, actions = _episode(model, length=6)
    context, context_actions = _context(frames, actions, anchor=2, memory=4)
    np.testing.assert_array_equal(context["agentview"], frames["agentview"][[0, 0, 0, 1, 2]])
    np.testing.assert_array_equal(context_actions[:3], np.broadcast_to(DUMMY_ACTION, (3, 7)))
    np.testing.assert_array_equal(context_actions[3:], actions[[1, 2]])


def test_frames_of_another_size_come_back_at_their_size(model):
    frames, actions = _episode(model, length=10, size=2 * model.config.image_size)
    replay = imagined_replay(model, frames, actions)
    assert all(replay[c].shape == frames[c].shape for c in model.config.cameras)
    with pytest.raises(ValueError, match="one frame per action"):
        imagined_replay(model, frames, actions[:-1])
    with pytest.raises(ValueError, match="anchor_every"):
        imagined_replay(model, frames, actions, anchor_every=0)


def test_reward_views_of_a_saved_world_model(tmp_path, model):
    model.save(tmp_path / "wm")
    frames, actions = _episode(model)
    assert reward_view(tmp_path / "wm", "camera") is None
    codec = reward_view(tmp_path / "wm", "codec")
    through = codec(frames, actions)
    for cam, expected in model.through_codec(frames).items():
        np.testing.assert_array_equal(through[cam], expected)
    imagined = reward_view(tmp_path / "wm", "imagined", anchor_every=2)(frames, actions)
    for cam, expected in imagined_replay(model, frames, actions, anchor_every=2).items():
        np.testing.assert_array_equal(imagined[cam], expected)
    with pytest.raises(ValueError, match="unknown reward view"):
        reward_view(tmp_path / "wm", "dream")
    with pytest.raises(DataError, match="not found"):
        reward_view(tmp_path / "nowhere", "imagined")


def test_a_clip_codec_has_no_codec_view_but_an_imagined_one(tmp_path):
    """The paper's Wan VAE decodes clips (and is near lossless): imagined replay is its reward view."""
    torch.manual_seed(0)
    WorldModel.build(wan_vae_model_config(image_size=16)).save(tmp_path / "wm")
    assert reward_view(tmp_path / "wm", "codec") is None
    wm = WorldModel.load(tmp_path / "wm")
    frames, actions = _episode(wm, length=12)
    replay = reward_view(tmp_path / "wm", "imagined")(frames, actions)
    assert all(replay[c].shape == frames[c].shape for c in wm.config.cameras)
    assert not np.array_equal(replay["wrist"][1:], frames["wrist"][1:])
