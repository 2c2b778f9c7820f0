"""Action controllability of a trained world model: a tiny model trained on a synthetic scene (a square that
the x/y actions move) must move the imagined square where constant commands say, measured on the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from wm_helpers import tiny_train_config, write_synthetic_dataset

from wovr_core.data import EpisodeDataset
from wovr_core.types import DUMMY_ACTION, GRIPPER_OPEN
from wovr_core.world_model.model import WorldModel
from wovr_core.world_model.train import train_world_model

pytestmark = pytest.mark.slow  # about 1.5 minutes of CPU: 1500 training steps


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[WorldModel, EpisodeDataset]:
    root = tmp_path_factory.mktemp("wm_control")
    write_synthetic_dataset(root / "ds", n_episodes=12, length=48)
    transformer = {"patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 32, "ffn_dim": 128,
                   "num_layers": 2, "freq_dim": 32, "rope_max_seq_len": 32}
    cfg = tiny_train_config(**{
        "model.cameras": ["agentview"], "model.denoiser.transformer": transformer,
        "model.denoiser.action_token_dim": 32, "ae_max_steps": 200, "ae_val_every": 200, "ae_batch_size": 16,
        "ae_lr": 2e-3, "max_steps": 1500, "val_every": 1500, "checkpoint_every": 10_000, "batch_size": 8,
        "lr": 2e-3, "warmup_steps": 20, "val_fraction": 0.1})
    train_world_model(cfg, [root / "ds"], root / "run", progress=False)
    return WorldModel.load(root / "run" / "model").prepare_for_inference(), EpisodeDataset(root / "ds")


def _square_centre(image: np.ndarray) -> np.ndarray:
    """Centre (x, y) of the bright gripper square: the pixels well above the background's brightness."""
    ys, xs = np.nonzero(image.astype(np.float32).mean(-1) > 160)
    assert len(xs), "no square in the imagined frame"
    return np.array([xs.mean(), ys.mean()])


def test_constant_commands_move_the_imagined_square_along_their_axis(trained):
    model, dataset = trained
    first = {"agentview": dataset.episode(1).frames("agentview")[None, :1]}
    ends = {}
    for name, command in {"+x": (0.5, 0), "-x": (-0.5, 0), "+y": (0, 0.5), "-y": (0, -0.5)}.items():
        actions = np.zeros((1, model.config.chunk_frames, 7), np.float32)
        actions[..., :2] = command
        actions[..., 6] = GRIPPER_OPEN
        state = model.observe(first)
        for _ in range(2):  # 16 frames: the real square would move 16 px
            frames, state = model.imagine(state, actions)
        ends[name] = _square_centre(frames["agentview"][0, -1])
    for axis, name in enumerate("xy"):
        along = ends[f"+{name}"][axis] - ends[f"-{name}"][axis]
        across = abs(ends[f"+{name}"][1 - axis] - ends[f"-{name}"][1 - axis])
        assert along > 2.0 and along > across, (name, ends)


def test_the_true_actions_explain_the_future_better_than_other_actions(trained):
    """Teacher-forced: the validation loss of real windows rises when their actions are swapped."""
    model, dataset = trained
    latents, actions = [], []
    for e in range(len(dataset)):
        ep = dataset.episode(e)
        for start in (5, 20, 35):
            idx = np.r_[0, start:start + 12]
            with torch.no_grad():
                latents.append(model.codec.encode(model.to_video({"agentview": ep.frames("agentview")[None, idx]})))
            a = ep.actions[idx].copy()
            a[0] = DUMMY_ACTION
            actions.append(a)
    latents = torch.cat(latents)
    actions = torch.as_tensor(model.normalize_actions(np.stack(actions)))
    swapped = actions[torch.roll(torch.arange(len(actions)), 1)]
    with torch.no_grad():
        true = np.mean([model.loss(latents, actions, torch.Generator().manual_seed(i)).item() for i in range(8)])
        other = np.mean([model.loss(latents, swapped, torch.Generator().manual_seed(i)).item() for i in range(8)])
    assert true < 0.95 * other
