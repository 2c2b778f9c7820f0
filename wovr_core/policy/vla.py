"""The VLA network: SigLIP vision tower + a transformers decoder LM + parallel action-token head.

Sequence fed to the language model (one forward pass, no autoregression)::

    [instruction tokens (padded)] [proprio] [camera 1 patches] [camera 2 patches] | [chunk*dim action queries]
    prefix: attends within itself in both directions, never to padding or queries  | queries: attend to all

Each of the ``chunk_size * action_dim`` learned query tokens reads out the logits of one action token over
``num_bins`` bins. The tokens of a chunk are conditionally independent given the observation, so
``log p(chunk) = sum of per-token log-probs`` exactly: what GRPO needs. The batched API (``forward``, ``sample``,
``log_prob``, ``sft_loss``) is what the SFT and RL trainers call; :mod:`wovr_core.policy.vla_policy` wraps it
for serving.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel, SiglipVisionConfig, SiglipVisionModel

from wovr_core.errors import DataError
from wovr_core.policy.task_tokenizer import TOKENIZER_FILENAME
from wovr_core.policy.vla_config import VLAConfig
from wovr_core.policy.vla_inputs import VLABatch
from wovr_core.types import STATE_DIM

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Custom 4-D masks (the bidirectional prefix) need an attention kernel that takes them.
_ATTENTION = "sdpa"
# transformers config keys that describe a saved file rather than the architecture.
_NON_ARCH_KEYS = ("_name_or_path", "architectures", "transformers_version", "dtype", "torch_dtype", "_attn_implementation")


class VLAModel(nn.Module):
    """Batched VLA: ``forward(batch) -> logits (B, chunk*dim, num_bins)`` plus sampling, log-probs and SFT loss."""

    def __init__(self, config: VLAConfig, vision: SiglipVisionModel, language: PreTrainedModel):
        super().__init__()
        self.config = config
        self.vision = vision
        self.language = language
        width = language.config.hidden_size
        vision_width = vision.config.hidden_size
        self.image_projector = nn.Sequential(nn.Linear(vision_width, width), nn.GELU(), nn.Linear(width, width))
        self.camera_embedding = nn.Parameter(torch.zeros(len(config.cameras), width))
        self.state_projector = nn.Linear(STATE_DIM, width) if config.use_state else None
        # One query per chunk step, read out by one linear head per action dim (all dims in one matrix).
        self.action_queries = nn.Parameter(torch.randn(config.chunk_size, width) * 0.02)
        self.action_head = nn.Linear(width, config.action_dim * config.num_bins)

    @property
    def image_size(self) -> int:
        return int(self.vision.config.image_size)

    @property
    def device(self) -> torch.device:
        return self.action_queries.device

    @property
    def dtype(self) -> torch.dtype:
        return self.action_queries.dtype

    def forward(self, batch: VLABatch) -> torch.Tensor:
        """Logits (B, chunk*dim, num_bins), float32 whatever the model dtype."""
        self._check_batch(batch)
        b = batch.batch_size
        num_queries = self.config.chunk_size
        parts = [self.language.get_input_embeddings()(batch.text_ids).to(self.dtype)]
        if self.state_projector is not None:
            parts.append(self.state_projector(batch.state.to(self.dtype)).unsqueeze(1))
        parts.append(self._image_tokens(batch.images))
        parts.append(self.action_queries.unsqueeze(0).expand(b, -1, -1))
        embeds = torch.cat(parts, dim=1)
        # Only instruction padding is ever invalid: proprio, patches and queries are always there.
        always = torch.ones(b, embeds.shape[1] - batch.text_mask.shape[1], dtype=torch.bool, device=self.device)
        key_valid = torch.cat([batch.text_mask, always], dim=1)
        hidden = self.language(inputs_embeds=embeds, attention_mask=self._attention_mask(key_valid, num_queries),
                               use_cache=False).last_hidden_state
        logits = self.action_head(hidden[:, -num_queries:]).float()  # (B, chunk, dim * bins)
        return logits.view(b, self.config.num_action_tokens, self.config.num_bins)  # step-major tokens

    def _image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        b, c = images.shape[:2]
        # SigLIP's preprocessing: [0, 255] -> [-1, 1].
        pixels = images.flatten(0, 1).permute(0, 3, 1, 2).to(self.dtype) / 127.5 - 1.0
        patches = self.vision(pixel_values=pixels).last_hidden_state  # (B*C, N, vision width)
        tokens = self.image_projector(patches).unflatten(0, (b, c)) + self.camera_embedding[:, None, :]
        return tokens.flatten(1, 2)

    @staticmethod
    def _attention_mask(key_valid: torch.Tensor, num_queries: int) -> torch.Tensor:
        """(B, 1, S, S) bool, True = may attend: the prefix attends within itself (both ways), the action queries
        attend to everything; nobody attends to padding."""
        seq = key_valid.shape[1]
        is_query = torch.zeros(seq, dtype=torch.bool, device=key_valid.device)
        is_query[seq - num_queries:] = True
        allowed = is_query[:, None] | ~is_query[None, :]
        return (allowed[None] & key_valid[:, None, :]).unsqueeze(1)

    def _check_batch(self, batch: VLABatch) -> None:
        expected = (len(self.config.cameras), self.image_size, self.image_size, 3)
        if tuple(batch.images.shape[1:]) != expected or batch.images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (B, {', '.join(map(str, expected))}), "
                             f"got {batch.images.dtype} {tuple(batch.images.shape)}")
        if (self.state_projector is None) != (batch.state is None):
            raise ValueError("this model " + ("uses" if self.state_projector is not None else "does not use")
                             + " proprio state, but the batch " + ("has none" if batch.state is None else "has it"))

    # --- what the trainers call -------------------------------------------------------------------------------

    def sample(self, batch: VLABatch, temperature: float = 1.0, generator: torch.Generator | None = None,
               greedy: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw action tokens from softmax(logits / temperature) -> (tokens (B, T) int64, log-probs (B, T)).

        The log-probs are exactly ``log_prob(batch, tokens, temperature)``. ``temperature == 0`` decodes
        deterministically (``greedy``, default ``config.greedy_decoding``; see :func:`greedy_tokens`) and
        returns the log-probs under the untempered distribution.
        """
        logits = self.forward(batch)
        if temperature <= 0:
            tokens = greedy_tokens(logits, greedy or self.config.greedy_decoding)
            return tokens, token_log_probs(logits, tokens, 1.0)
        tokens = sample_tokens(logits, temperature, generator)
        return tokens, token_log_probs(logits, tokens, temperature)

    def log_prob(self, batch: VLABatch, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Per-token log-probabilities (B, T) of ``tokens`` under softmax(logits / temperature)."""
        return token_log_probs(self.forward(batch), tokens, temperature)

    def sft_loss(self, batch: VLABatch, tokens: torch.Tensor, smoothing_sigma: float = 0.0) -> torch.Tensor:
        """Mean token cross-entropy against demonstration tokens (B, T); see :func:`sft_loss_from_logits`."""
        return sft_loss_from_logits(self.forward(batch), tokens, smoothing_sigma)


def sft_loss_from_logits(logits: torch.Tensor, tokens: torch.Tensor, smoothing_sigma: float = 0.0) -> torch.Tensor:
    """Token cross-entropy (B, T, V) vs (B, T), averaged over tokens.

    ``smoothing_sigma > 0`` replaces each one-hot target by a Gaussian over neighbouring bins (std in bins): the
    bins are ordered, and a demonstration's 0.31 says the same about 0.30 as about 0.31. With few
    demonstrations this learns much faster than one-hot targets that treat adjacent bins as unrelated
    classes. The policy is still an exact categorical over tokens; only the training target changes.
    (Trainers call this on ``model(batch)`` so that a DDP-wrapped model's forward is what runs.)
    """
    tokens = tokens.to(logits.device)
    if smoothing_sigma <= 0:
        return F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten())
    kernel = _gaussian_targets(logits.shape[-1], float(smoothing_sigma), logits.device)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return -(kernel[tokens] * log_probs).sum(-1).mean()


_KERNELS: dict[tuple, torch.Tensor] = {}


def _gaussian_targets(num_bins: int, sigma: float, device: torch.device) -> torch.Tensor:
    """(V, V): row k is a normalized Gaussian over bins centred on bin k, cut at 3 sigma."""
    key = (num_bins, sigma, str(device))
    if key not in _KERNELS:
        bins = torch.arange(num_bins, dtype=torch.float32)
        distance = bins[None, :] - bins[:, None]
        weights = torch.exp(-0.5 * (distance / sigma) ** 2) * (distance.abs() <= 3 * sigma + 1e-6)
        _KERNELS[key] = (weights / weights.sum(-1, keepdim=True)).to(device)
    return _KERNELS[key]


def greedy_tokens(logits: torch.Tensor, mode: str = "median") -> torch.Tensor:
    """Deterministic decoding (B, T, V) -> (B, T): ``"argmax"`` (the mode) or ``"median"`` (the bin where the
    cumulative probability reaches 1/2).

    The median is the better deterministic action when demonstrations are noisy: an almost flat distribution
    (e.g. the rotation of a noise-injected expert that never rotates) has an arbitrary argmax, off-centre by a
    different amount in every state, and executing it step after step drifts; its median stays at the
    centre of the mass. For two-valued dims (the gripper) both pick the more likely side.
    """
    if mode == "argmax":
        return logits.argmax(dim=-1)
    if mode != "median":
        raise ValueError(f"greedy decoding is 'argmax' or 'median', got {mode!r}")
    cdf = torch.softmax(logits.float(), dim=-1).cumsum(dim=-1)
    return (cdf < 0.5).sum(dim=-1).clamp_(max=logits.shape[-1] - 1)


def sample_tokens(logits: torch.Tensor, temperature: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row from softmax(logits / temperature): (B, T, V) -> (B, T) int64.

    Inverse-CDF sampling (one uniform per token): several times faster than ``torch.multinomial`` for the
    many small categoricals of a rollout batch, and a bin with probability 0 can never be drawn.
    """
    cdf = torch.softmax(logits.float() / temperature, dim=-1).cumsum(dim=-1)
    u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, device=cdf.device, dtype=cdf.dtype)
    tokens = torch.searchsorted(cdf, u * cdf[..., -1:], right=True).squeeze(-1)
    return tokens.clamp_(max=logits.shape[-1] - 1)


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at ``tokens``: (B, T, V), (B, T) -> (B, T)."""
    if temperature <= 0:
        raise ValueError(f"log-probs need a temperature > 0, got {temperature}")
    tokens = tokens.to(logits.device)
    if tokens.shape != logits.shape[:2]:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} do not match logits {tuple(logits.shape[:2])}")
    if tokens.min() < 0 or tokens.max() >= logits.shape[-1]:
        raise ValueError(f"tokens must lie in [0, {logits.shape[-1]})")
    log_probs = torch.log_softmax(logits.float() / temperature, dim=-1)
    return log_probs.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)


def build_vla_model(config: VLAConfig, vocab_size: int | None = None, seed: int | None = None) -> VLAModel:
    """A VLAModel for ``config``: backbones from the pretrained directories when given, else random init.

    The returned model's ``config`` records the backbones' full architecture, so a checkpoint saved from it
    rebuilds (:func:`rebuild_vla_model`) without the pretrained directories.
    """
    seed = config.seed if seed is None else seed
    dtype = DTYPES[config.dtype]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if config.pretrained_vision:
            vision = SiglipVisionModel.from_pretrained(
                pretrained_dir(config.pretrained_vision, "vision"), dtype=dtype, vision_use_head=False,
                attn_implementation=_ATTENTION)
        else:
            vision = SiglipVisionModel(SiglipVisionConfig(**_arch_kwargs(config.vision)))
        if config.pretrained_language:
            language = AutoModel.from_pretrained(pretrained_dir(config.pretrained_language, "language"),
                                                 dtype=dtype, attn_implementation=_ATTENTION)
        else:
            language_kwargs = _arch_kwargs(config.language)
            if vocab_size is not None:
                language_kwargs["vocab_size"] = vocab_size
            language = AutoModel.from_config(AutoConfig.for_model(**language_kwargs), attn_implementation=_ATTENTION)
        if vocab_size is not None and vocab_size > language.config.vocab_size:
            raise DataError(f"the tokenizer has {vocab_size} tokens but the language model embeds only "
                            f"{language.config.vocab_size}")
        config = dataclasses.replace(config, vision=_architecture(vision.config),
                                     language=_architecture(language.config))
        model = VLAModel(config, vision, language)
    return model.to(dtype)


def rebuild_vla_model(config: VLAConfig) -> VLAModel:
    """The architecture of a saved VLA (weights still random): never touches the pretrained directories."""
    return build_vla_model(dataclasses.replace(config, pretrained_vision="", pretrained_language=""))


def pretrained_dir(path: str, what: str) -> Path:
    """The local directory of a pretrained ``what`` ("vision" | "language") backbone, checked for its files."""
    directory = Path(path).expanduser()
    if not (directory / "config.json").is_file():
        raise DataError(f"{directory}: no pretrained {what} model here (expected a transformers model directory "
                        f"with config.json and *.safetensors; set it with --set pretrained_{what}=DIR)")
    if what == "language" and not (directory / TOKENIZER_FILENAME).is_file():
        raise DataError(f"{directory}: the pretrained language model has no {TOKENIZER_FILENAME}")
    return directory


def _architecture(backbone_config) -> dict:
    arch = backbone_config.to_diff_dict()
    for key in _NON_ARCH_KEYS:
        arch.pop(key, None)
    arch["model_type"] = backbone_config.model_type
    return arch


def _arch_kwargs(arch: dict) -> dict:
    kwargs = {k: v for k, v in arch.items() if k not in _NON_ARCH_KEYS}
    if kwargs.get("model_type") == "siglip_vision_model":
        kwargs.pop("model_type")
    return kwargs
