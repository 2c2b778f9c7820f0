"""The VLA as a :class:`~wovr_core.rl.protocols.TokenPolicy`: batched sampling and differentiable token
log-probs through the checkpoint's own transforms (the same preprocessing as serving)."""

from __future__ import annotations

import torch
from torch import nn

from wovr_core.config import ConfigError
from wovr_core.policy.vla_policy import VLAPolicy
from wovr_core.rl.protocols import Observations, PolicySample


class VLATokenPolicy(nn.Module):
    """Wraps a :class:`VLAPolicy`; its ``model`` is this module's only submodule (what the optimizer trains).

    The world model imagines frames, not robot state, so the VLA must not read proprio (``use_state=False``).
    """

    def __init__(self, policy: VLAPolicy):
        super().__init__()
        if policy.config.use_state:
            raise ConfigError("RL in imagination needs a VLA without proprio input (use_state=False): the world "
                              "model imagines camera frames, not robot state")
        self.vla = policy
        self.model = policy.model

    def sample(self, observations: Observations, temperature: float,
               generator: torch.Generator | None = None) -> PolicySample:
        batch = self.vla.prepare_batch(observations.to_policy_inputs())
        with torch.no_grad():
            tokens, log_probs = self.model.sample(batch, temperature, generator)
        return PolicySample(tokens, log_probs, self.vla.tokens_to_actions(tokens))

    def log_prob(self, observations: Observations, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
        batch = self.vla.prepare_batch(observations.to_policy_inputs())
        return self.model.log_prob(batch, tokens.to(self.model.device), temperature)
