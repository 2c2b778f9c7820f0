"""Small episode datasets for the world-model and reward-model tests, and tiny model configs.

The synthetic scene: a grey "gripper" square whose position integrates the x/y actions, on a textured
background; the wrist camera sees a shifted, recoloured view. Successful episodes end with a green block in
the top-left "basket" for their last ``SUCCESS_TAIL`` frames, so success is visible in single frames.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from wovr_core.config import make_config
from wovr_core.data import EpisodeWriter, WriterConfig
from wovr_core.types import DUMMY_ACTION
from wovr_core.world_model.config import WorldModelConfig, WorldModelTrainConfig

# The commands of this area, as registered under [project.entry-points."wovr.commands"] in pyproject.toml.
COMMAND_ENTRY_POINTS = {
    "train-wm": "wovr_core.world_model.train_cli:COMMAND",
    "eval-wm": "wovr_core.world_model.eval_cli:COMMAND",
    "train-reward": "wovr_core.reward.train_cli:COMMAND",
}

# Runs the real `wovr` main(). Until the installed package metadata lists the commands above (pip install -e .
# after they are added to pyproject.toml), they are added to what main() discovers; once installed, this
# changes nothing.
_WOVR_MAIN = """
import sys
from importlib.metadata import EntryPoint
import wovr_core.cli as cli
discover = cli._discover
def with_these_commands():
    found = discover()
    for name, value in {entry_points!r}.items():
        found.setdefault(name, EntryPoint(name, value, cli.ENTRY_POINT_GROUP))
    return found
cli._discover = with_these_commands
sys.exit(cli.main(sys.argv[1:]))
"""


def wovr_argv(*args: str) -> list[str]:
    """argv of a ``wovr ...`` process (for subprocess.run / Popen)."""
    return [sys.executable, "-c", _WOVR_MAIN.format(entry_points=COMMAND_ENTRY_POINTS), *args]


SUCCESS_TAIL = 6
HOLD_STEPS = 4
PIXELS_PER_ACTION = 2.0  # x/y action 1 moves the gripper square by this much per step
CAMERAS = ("agentview", "wrist")
TASKS = ("put the cube in the basket", "put the ball in the basket")


def render(pos: np.ndarray, size: int, success: bool, phase: float) -> dict[str, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    background = 90 + 30 * np.sin(x / 5 + phase) * np.cos(y / 7)
    img = np.repeat(background[..., None], 3, axis=2)
    cx, cy = int(pos[0]), int(pos[1])
    half = max(2, size // 8)
    img[max(0, cy - half):cy + half, max(0, cx - half):cx + half] = (220, 220, 220)
    if success:
        img[1:9, 1:9] = (30, 220, 60)
    agent = np.clip(img, 0, 255).astype(np.uint8)
    wrist = np.roll(agent[..., ::-1], shift=(size // 4, size // 4), axis=(0, 1))
    return {"agentview": agent, "wrist": wrist}


def write_synthetic_dataset(root: Path, n_episodes: int = 4, length: int = 40, size: int = 32, seed: int = 0,
                            per_frame_success: bool = False) -> list[dict]:
    """Episodes alternate success/failure and the two tasks. Returns per-episode metadata."""
    rng = np.random.default_rng(seed)
    cameras = {c: (size, size) for c in CAMERAS}
    extra = {"success": ()} if per_frame_success else None
    meta = []
    with EpisodeWriter(root, fps=10, cameras=cameras, config=WriterConfig(episodes_per_file=4),
                       extra_features=extra) as writer:
        for e in range(n_episodes):
            success = e % 2 == 0
            task = TASKS[(e // 2) % 2]
            writer.start_episode(task, source="scripted", success=success, success_source="sim_predicate")
            pos = np.array([size / 2, size / 2], np.float32)
            # Commands held for a few steps, like a policy's action chunks: motion the model can learn quickly.
            blocks = rng.uniform(-0.8, 0.8, (length // HOLD_STEPS + 1, 7))
            actions = np.repeat(blocks, HOLD_STEPS, axis=0)[:length].astype(np.float32)
            actions[:, 6] = np.where(np.arange(length) > length // 2, 1.0, -1.0)
            actions[0] = DUMMY_ACTION
            for t in range(length):
                if t:
                    pos = np.clip(pos + PIXELS_PER_ACTION * actions[t, :2], 4, size - 4)
                done = success and t >= length - SUCCESS_TAIL
                images = render(pos, size, done, phase=0.3 * e)
                fingers = 0.04 if actions[t, 6] < 0 else 0.0
                state = np.array([pos[0] / size, pos[1] / size, 0.1, 0, 0, 0, fingers, -fingers], np.float32)
                extras = {"success": float(done)} if per_frame_success else {}
                writer.add_frame(images, state, None if t == 0 else actions[t], extras=extras)
            writer.end_episode()
            meta.append({"success": success, "task": task, "length": length})
    return meta


def tiny_model_config(**overrides) -> WorldModelConfig:
    """The tiny preset's design at test size: 32 px, f = 4 frame autoencoder, a 1-layer Wan transformer."""
    base = {
        "image_size": 32,
        "codec.frame_ae": {"block_channels": [8, 16], "latent_channels": 4, "mid_blocks": 0},
        "denoiser.transformer": {"patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 16,
                                 "ffn_dim": 64, "num_layers": 1, "freq_dim": 32, "rope_max_seq_len": 32},
        "denoiser.action_hidden": 32, "denoiser.action_token_dim": 16,
    }
    return make_config(WorldModelConfig, "tiny", _as_overrides({**base, **overrides}))


def _as_overrides(values: dict) -> list[str]:
    # Dict-valued fields (constructor kwargs) must be set whole: "key={json}" rather than a nested mapping.
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in values.items()]


def wan_vae_model_config(**overrides) -> WorldModelConfig:
    """The ``paper`` code path (AutoencoderKLWan codec, cameras side by side) with a tiny random VAE."""
    return tiny_model_config(**{
        "codec.kind": "wan_vae", "codec.camera_layout": "width",
        "codec.wan_vae": {"base_dim": 4, "z_dim": 4, "dim_mult": [1, 1], "num_res_blocks": 0,
                          "temperal_downsample": [True], "scale_factor_temporal": 2, "scale_factor_spatial": 2},
        **overrides,
    })


def tiny_train_overrides(**overrides) -> list[str]:
    """``--set`` values of a test-size train-wm run (the tiny design, 32 px, a few steps)."""
    model = {f"model.{k}": v for k, v in {
        "image_size": 32,
        "codec.frame_ae": {"block_channels": [8, 16], "latent_channels": 4, "mid_blocks": 0},
        "denoiser.transformer": {"patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 16,
                                 "ffn_dim": 64, "num_layers": 1, "freq_dim": 32, "rope_max_seq_len": 32},
        "denoiser.action_hidden": 32, "denoiser.action_token_dim": 16}.items()}
    base = {**model, "batch_size": 4, "ae_batch_size": 8, "ae_max_steps": 3, "max_steps": 3, "ae_val_every": 2,
            "val_every": 2, "checkpoint_every": 2, "val_clips": 4, "val_rollout_frames": 8, "log_images_every": 2,
            "warmup_steps": 1, "val_fraction": 0.34, "threads": 1}
    return _as_overrides({**base, **overrides})


def tiny_train_config(**overrides) -> WorldModelTrainConfig:
    return make_config(WorldModelTrainConfig, "tiny", tiny_train_overrides(**overrides))
