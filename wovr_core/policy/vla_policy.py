"""The VLA as a served :class:`~wovr_core.policy.base.Policy`, plus its checkpoint (save / load).

``infer(obs)`` = the checkpoint's input transforms (resize to the model's size, z-score the state) ->
:class:`VLAFeaturizer` -> ``VLAModel.sample`` (median or argmax, or sampled at ``temperature``) -> bin centres -> the
checkpoint's output transforms (q01/q99 unnormalize); the reply also carries the drawn ``action_tokens`` and
their ``token_log_probs``. Trainers use the same pieces in batch:

* SFT (``wovr_core.train``): :meth:`VLAPolicy.sample_transform` turns a sample (observation + the robot-unit
  ``"action"`` chunk that followed it) into model arrays; ``collate`` stacks them; ``sft_loss_from_logits``.
* RL: :meth:`VLAPolicy.sample_actions` is one batched rollout step (actions, tokens, their log-probs and the
  model batch); later ``policy.model.log_prob(batch, tokens, temperature)`` gives the same log-probs with
  gradients (a GRPO group is ``observations * 8``, or ``batch.repeat(8)``).

Checkpoint = ``wovr_core.policy.checkpoint`` layout (config.json with ``policy_type: "vla"``, norm_stats.json,
example_obs.msgpack, manifest.json) + ``model.safetensors`` + ``tokenizer.json``. The action contract's image
shapes are what clients send (``VLAConfig.input_images``: the training data's camera sizes); the model resizes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch
from safetensors.torch import load_model, save_model

from wovr_core.config import ConfigError, from_dict, to_dict
from wovr_core.errors import DataError
from wovr_core.policy.action_tokenizer import ActionTokenizer
from wovr_core.policy.base import (
    ACTIONS_KEY,
    IMAGE_KEY_PREFIX,
    STATE_KEY,
    ActionContract,
    PolicyOutputError,
    TransformedPolicy,
)
from wovr_core.policy.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    checkpoint_id,
    checkpoint_transforms,
    make_example_observation,
    read_checkpoint_config,
    read_norm_stats,
    write_checkpoint_files,
)
from wovr_core.policy.task_tokenizer import TOKENIZER_FILENAME, TaskTokenizer, train_word_tokenizer
from wovr_core.policy.vla import VLAModel, build_vla_model, pretrained_dir, rebuild_vla_model
from wovr_core.policy.vla_config import VLAConfig
from wovr_core.policy.vla_inputs import (
    ACTION_KEY,
    VLABatch,
    VLAFeaturizer,
    action_normalize_spec,
    collate,
    vla_transform_specs,
)
from wovr_core.transforms import DataTransform, NormStats, transform_from_spec, transforms_from_specs
from wovr_core.types import STATE_DIM

POLICY_TYPE = "vla"


@dataclass(frozen=True, eq=False)
class VLASampleTransform:
    """Numpy path from a raw sample (robot units) to model arrays; picklable for data-loader workers.

    With ``action_normalize`` set, the sample must carry an ``"action"`` chunk and the output has
    ``action_tokens``.
    """

    inputs: DataTransform
    featurizer: VLAFeaturizer
    action_normalize: DataTransform | None = None

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, np.ndarray]:
        data = self.inputs(dict(sample))
        if self.action_normalize is not None:
            data = self.action_normalize(data)
        return self.featurizer(data, with_action=self.action_normalize is not None)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class VLAPolicy(TransformedPolicy):
    """A :class:`VLAModel` with its tokenizer, statistics and transforms: serves ``infer(obs)``.

    ``temperature`` 0 (the config default) decodes deterministically (``greedy_decoding``); above 0 it samples from
    a generator seeded with ``seed``, so a fresh policy replays the same sequence of chunks.
    """

    def __init__(self, model: VLAModel, tokenizer: TaskTokenizer, norm_stats: Mapping[str, NormStats], *,
                 checkpoint_id: str = "untrained", input_transform: DataTransform | None = None,
                 output_transform: DataTransform | None = None, temperature: float | None = None,
                 seed: int | None = None):
        config = model.config
        self.transform_specs = vla_transform_specs(config, model.image_size)
        try:
            if input_transform is None:
                input_transform = transforms_from_specs(self.transform_specs["inputs"], norm_stats)
            if output_transform is None:
                output_transform = transforms_from_specs(self.transform_specs["outputs"], norm_stats)
            action_normalize = transform_from_spec(action_normalize_spec(config), norm_stats)
        except ConfigError as e:
            raise DataError(f"normalization statistics do not fit this policy: {e}") from None
        _check_stats(config, norm_stats)
        size = model.image_size
        contract = ActionContract(
            chunk_length=config.chunk_size, action_dim=config.action_dim, state_dim=STATE_DIM,
            image_shapes={IMAGE_KEY_PREFIX + c: (*config.input_images.get(c, (size, size)), 3) for c in config.cameras})
        self.temperature = config.temperature if temperature is None else float(temperature)
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        super().__init__(policy_type=POLICY_TYPE, checkpoint_id=checkpoint_id, contract=contract,
                         input_transform=input_transform, output_transform=output_transform,
                         extra_metadata=_describe(model))
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.norm_stats = dict(norm_stats)
        self.action_tokenizer = ActionTokenizer(config.chunk_size, config.action_dim, config.num_bins)
        self.featurizer = VLAFeaturizer(cameras=tuple(config.cameras), image_size=size, tokenizer=tokenizer,
                                        action_tokenizer=self.action_tokenizer, use_state=config.use_state)
        self._action_normalize = action_normalize
        self.generator = torch.Generator(device=model.device).manual_seed(config.seed if seed is None else seed)

    @property
    def config(self) -> VLAConfig:
        return self.model.config

    @classmethod
    def create(cls, config: VLAConfig, norm_stats: Mapping[str, NormStats], tasks: Iterable[str] | None = None,
               device: str | None = None, seed: int | None = None) -> VLAPolicy:
        """A new policy: pretrained backbones (``config.pretrained_*``) or random init (seeded).

        Without a pretrained language model, the tokenizer is a word vocabulary trained on ``tasks``.
        """
        if config.pretrained_vision:
            pretrained_dir(config.pretrained_vision, "vision")
        if config.pretrained_language:
            tokenizer = TaskTokenizer.load(pretrained_dir(config.pretrained_language, "language"),
                                           config.max_text_tokens)
        else:
            tasks = list(tasks or [])
            if not tasks:
                raise ValueError("a VLA without a pretrained language model needs the task strings to build its "
                                 "vocabulary (tasks=[...])")
            tokenizer = TaskTokenizer(train_word_tokenizer(tasks), config.max_text_tokens)
        model = build_vla_model(config, vocab_size=tokenizer.vocab_size, seed=seed)
        return cls(model.to(device or default_device()), tokenizer, norm_stats, seed=seed)

    # --- batched pieces for trainers and evaluators ---------------------------------------------------------

    def sample_transform(self, with_action: bool = True) -> VLASampleTransform:
        """Raw sample -> model arrays (``collate`` a list of them into a batch). With ``with_action`` the
        sample's ``"action"`` chunk (chunk_size, action_dim) in robot units becomes ``action_tokens``."""
        return VLASampleTransform(self.input_transform, self.featurizer,
                                  self._action_normalize if with_action else None)

    def prepare_batch(self, observations: Sequence[Mapping[str, Any]]) -> VLABatch:
        """Raw observations -> a batch on the model's device."""
        transform = self.sample_transform(with_action=False)
        batch, _ = collate([transform(obs) for obs in observations])
        return batch.to(self.model.device)

    @torch.no_grad()
    def sample_actions(self, observations: Sequence[Mapping[str, Any]], temperature: float | None = None,
                       generator: torch.Generator | None = None) -> dict[str, Any]:
        """A batched rollout step: B raw observations -> ``{"actions": (B, chunk, dim) float32 robot units,
        "action_tokens": (B, T) int64 tensor, "token_log_probs": (B, T) float32 tensor, "batch": VLABatch}``.

        ``temperature`` defaults to the policy's; the log-probs are those of the drawn tokens at that temperature
        (what PPO's ratio needs as "old" log-probs: ``model.log_prob(batch, tokens, temperature)`` recomputes
        them with gradients). ``generator`` defaults to the policy's own seeded one.
        """
        temperature = self.temperature if temperature is None else float(temperature)
        batch = self.prepare_batch(observations)
        was_training = self.model.training
        self.model.eval()
        try:
            tokens, log_probs = self.model.sample(batch, temperature, generator or self.generator)
        finally:
            self.model.train(was_training)
        return {ACTIONS_KEY: self.tokens_to_actions(tokens), "action_tokens": tokens,
                "token_log_probs": log_probs, "batch": batch}

    def tokens_to_actions(self, tokens: torch.Tensor | np.ndarray) -> np.ndarray:
        """Action tokens (..., chunk*dim) -> actions in robot units (..., chunk_size, action_dim) float32."""
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        normalized = self.action_tokenizer.decode(tokens)
        return self.output_transform({ACTIONS_KEY: normalized})[ACTIONS_KEY]

    # --- Policy ---------------------------------------------------------------------------------------------

    def predict(self, inputs: dict) -> dict:
        batch, _ = collate([self.featurizer(inputs)])
        with torch.inference_mode():
            tokens, log_probs = self.model.sample(batch.to(self.model.device), self.temperature, self.generator)
        if not torch.isfinite(log_probs).all():
            raise PolicyOutputError("the model produced non-finite logits")
        tokens_np = tokens[0].cpu().numpy()
        return {ACTIONS_KEY: self.action_tokenizer.decode(tokens_np),
                "action_tokens": tokens_np.astype(np.int64),
                "token_log_probs": log_probs[0].cpu().numpy().astype(np.float32)}

    def metadata(self) -> dict:
        return {**super().metadata(), "temperature": self.temperature}

    def close(self) -> None:
        device = self.model.device
        self.model.to("meta")
        if device.type == "cuda":
            torch.cuda.empty_cache()

    # --- checkpoint -----------------------------------------------------------------------------------------

    def save(self, directory: str | Path, example_obs: Mapping[str, Any] | None = None,
             manifest: Mapping[str, Any] | None = None) -> Path:
        """Write a complete checkpoint; config.json is written last, so an interrupted save never looks whole."""
        directory = Path(directory).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        weights = directory / WEIGHTS_FILE
        tmp = weights.with_name(weights.name + ".tmp")
        save_model(self.model, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, weights)
        self.tokenizer.save(directory)
        (directory / CONFIG_FILE).unlink(missing_ok=True)
        write_checkpoint_files(directory, policy_type=POLICY_TYPE, config=to_dict(self.config),
                               norm_stats=self.norm_stats,
                               example_obs=example_obs or make_example_observation(self.contract),
                               transforms=self.transform_specs, manifest=manifest)
        return directory


def load_vla_policy(directory: str | Path, device: str | None = None, temperature: float | None = None,
                    seed: int | None = None) -> VLAPolicy:
    """The ``POLICIES`` loader for ``policy_type == "vla"``; every problem is a DataError naming the file."""
    directory = Path(directory).expanduser()
    raw = read_checkpoint_config(directory)
    if raw["policy_type"] != POLICY_TYPE:
        raise DataError(f"{directory / CONFIG_FILE}: policy_type is {raw['policy_type']!r}, not {POLICY_TYPE!r}")
    try:
        config = from_dict(VLAConfig, raw["config"])
    except (ConfigError, TypeError) as e:
        raise DataError(f"{directory / CONFIG_FILE}: {e}") from None
    norm_stats = read_norm_stats(directory)
    inputs, outputs = checkpoint_transforms(directory, raw, norm_stats)
    tokenizer = TaskTokenizer.load(directory / TOKENIZER_FILENAME, config.max_text_tokens)
    try:
        model = rebuild_vla_model(config)
    except (ValueError, TypeError, KeyError) as e:
        raise DataError(f"{directory / CONFIG_FILE}: cannot build the model: {e}") from None
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise DataError(f"{weights}: model weights not found")
    try:
        load_model(model, str(weights), strict=True)
    except (safetensors.SafetensorError, RuntimeError, OSError, ValueError) as e:
        raise DataError(f"{weights}: cannot load the model weights: {e}") from None
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise DataError(f"{weights}: the weights hold NaN or inf")
    if tokenizer.vocab_size > model.language.config.vocab_size:
        raise DataError(f"{directory / TOKENIZER_FILENAME}: {tokenizer.vocab_size} tokens, but the model embeds "
                        f"only {model.language.config.vocab_size}")
    return VLAPolicy(model.to(device or default_device()), tokenizer, norm_stats,
                     checkpoint_id=checkpoint_id(directory), input_transform=inputs, output_transform=outputs,
                     temperature=temperature, seed=seed)


def _check_stats(config: VLAConfig, norm_stats: Mapping[str, NormStats]) -> None:
    expected = {ACTION_KEY: config.action_dim, **({STATE_KEY: STATE_DIM} if config.use_state else {})}
    for key, dim in expected.items():
        if key not in norm_stats:
            raise DataError(f"normalization statistics lack {key!r} (have {sorted(norm_stats)})")
        if norm_stats[key].dim != dim:
            raise DataError(f"normalization statistics of {key!r} have {norm_stats[key].dim} dims, expected {dim}")


def _describe(model: VLAModel) -> dict:
    config = model.config
    return {
        "chunk_size": config.chunk_size,
        "num_bins": config.num_bins,
        "cameras": list(config.cameras),
        "image_size": model.image_size,
        "use_state": config.use_state,
        "vision_model": config.vision.get("model_type"),
        "language_model": config.language.get("model_type"),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": config.dtype,
        "device": str(model.device),
    }
