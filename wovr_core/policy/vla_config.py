"""Configuration of the VLA policy: backbone classes and sizes, inputs, action tokenization.

``tiny`` (the defaults) is a random-init SigLIP vision tower + Llama decoder of a few million parameters that
trains and serves on a CPU. ``paper`` loads a pretrained SigLIP and a pretrained causal LM (any
``transformers`` ``AutoModel`` class, e.g. Qwen2.5-0.5B) from local directories, in bfloat16, for a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from wovr_core.config import ConfigError
from wovr_core.types import ACTION_DIM

CAMERAS = ("agentview", "wrist")
"""Camera names in token order; ``observation.images.<name>`` in an observation."""


def _tiny_vision() -> dict:
    # 64 px with 16 px patches: 16 tokens per camera. On a 2-core CPU the cost of a step grows with the number of
    # tokens; this size trains thousands of steps in tens of minutes and still shows where the objects are
    # (agentview) and how the gripper lines up with one (wrist).
    return {
        "model_type": "siglip_vision_model",
        "image_size": 64,
        "patch_size": 16,
        "hidden_size": 96,
        "intermediate_size": 384,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "vision_use_head": False,
    }


def _tiny_language() -> dict:
    # vocab_size is set from the task tokenizer when the model is built.
    return {
        "model_type": "llama",
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 256,
        "vocab_size": 2,
    }


@dataclass
class VLAConfig:
    """A VLA that reads camera images, the task instruction and proprio, and emits a chunk of action tokens.

    Actions are normalized to [-1, 1] (q01/q99 bounds; dims with ``normalize_action_dims`` False, i.e. the
    gripper, are already there), cut into ``num_bins`` uniform bins, and all ``chunk_size * action_dim`` tokens
    are predicted in one forward pass from learned query tokens (parallel decoding, OpenVLA-OFT style), so the
    log-probability of a chunk is an exact sum of per-token terms.
    """

    PRESETS: ClassVar[dict] = {
        "tiny": {},
        "paper": {
            "pretrained_vision": "~/.cache/wovr/models/siglip-base-patch16-224",
            "pretrained_language": "~/.cache/wovr/models/Qwen2.5-0.5B",
            "dtype": "bfloat16",
            "max_text_tokens": 48,
        },
    }

    chunk_size: int = 8
    action_dim: int = ACTION_DIM
    num_bins: int = 256
    # q01/q99 normalization per action dim; the gripper command is already -1 (open) / +1 (closed).
    normalize_action_dims: tuple[bool, ...] = (True, True, True, True, True, True, False)
    cameras: tuple[str, ...] = CAMERAS
    # Proprio off by default: RL in the world model imagines camera frames, not robot state, so a policy that
    # is to be improved there must act from images and language alone. Set true for an SFT-only policy.
    use_state: bool = False
    max_text_tokens: int = 20  # LIBERO's longest instructions have 16 words
    # transformers config kwargs (with "model_type"); replaced by the pretrained configs when those are given,
    # so a saved checkpoint rebuilds without the pretrained directories.
    vision: dict[str, Any] = field(default_factory=_tiny_vision)
    language: dict[str, Any] = field(default_factory=_tiny_language)
    pretrained_vision: str = ""
    pretrained_language: str = ""
    dtype: Literal["float32", "bfloat16"] = "float32"
    # Serving default: 0 = deterministic (``greedy_decoding``); > 0 samples from softmax(logits / temperature).
    temperature: float = 0.0
    greedy_decoding: Literal["median", "argmax"] = "median"
    seed: int = 0
    # What the robot or sim sends, camera -> [height, width] (the trainer records its dataset's camera sizes);
    # the policy resizes to the model's image size itself. Empty: the model's image size.
    input_images: dict[str, Any] = field(default_factory=dict)

    @property
    def num_action_tokens(self) -> int:
        return self.chunk_size * self.action_dim

    def validate(self) -> None:
        if self.chunk_size < 1 or self.action_dim < 1:
            raise ConfigError(f"chunk_size and action_dim must be >= 1, got {self.chunk_size}, {self.action_dim}")
        if self.num_bins < 2:
            raise ConfigError(f"num_bins must be >= 2, got {self.num_bins}")
        if len(self.normalize_action_dims) != self.action_dim:
            raise ConfigError(f"normalize_action_dims has {len(self.normalize_action_dims)} entries, "
                              f"expected action_dim={self.action_dim}")
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown or not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"cameras must be distinct names from {list(CAMERAS)}, got {list(self.cameras)}")
        if self.max_text_tokens < 1:
            raise ConfigError(f"max_text_tokens must be >= 1, got {self.max_text_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        for name, backbone in (("vision", self.vision), ("language", self.language)):
            if not isinstance(backbone, dict) or "model_type" not in backbone:
                raise ConfigError(f"{name} backbone config needs a 'model_type' (e.g. "
                                  f"{'siglip_vision_model' if name == 'vision' else 'llama'})")
        for camera, size in self.input_images.items():
            if camera not in self.cameras or not isinstance(size, (list, tuple)) or len(size) != 2 \
                    or not all(isinstance(n, int) and n > 0 for n in size):
                raise ConfigError(f"input_images must map cameras of {list(self.cameras)} to [height, width], "
                                  f"got {camera!r}: {size!r}")
        if self.vision["model_type"] != "siglip_vision_model":
            raise ConfigError(f"vision.model_type must be a SigLIP vision tower, got {self.vision['model_type']!r}")
