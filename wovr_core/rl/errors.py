"""Errors of RL in imagination, each raised before anything is committed (env state, policy weights)."""

from __future__ import annotations

from wovr_core.errors import WovrError


class ImaginationError(WovrError, RuntimeError):
    """The world model or the reward model returned something unusable (NaN, wrong shape, probability outside
    [0, 1]); the environment is left at its previous step."""


class PolicyError(WovrError, RuntimeError):
    """The policy produced non-finite log-probabilities (sampling or update), or an update non-finite
    gradients; the failing optimizer step was not taken."""
