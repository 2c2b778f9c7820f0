"""A policy that runs elsewhere: the policy server, reached through its torch-free client.

wovr_core never imports the server package, so the client is any object with ``infer(obs) -> dict`` and a
``metadata`` mapping (``policy_server.client.PolicyClient``: a property refreshed on every reconnect). With
it, the twin evaluation (:func:`wovr_core.policy.evaluate.evaluate_policy`) drives a served checkpoint
exactly as the robot does: every observation crosses the wire, every chunk comes back through the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from wovr_core.policy.base import Policy


class InferenceClient(Protocol):
    @property
    def metadata(self) -> Mapping[str, Any]: ...

    def infer(self, obs: Mapping[str, Any]) -> dict: ...


class RemotePolicy(Policy):
    """A :class:`Policy` whose ``infer`` is a request to a policy server."""

    def __init__(self, client: InferenceClient):
        self.client = client
        self.checkpoints_seen: set[str] = set()  # a swap on the server mid-evaluation shows up here

    def infer(self, obs: dict) -> dict:
        reply = self.client.infer(obs)
        if reply.get("checkpoint_id"):
            self.checkpoints_seen.add(str(reply["checkpoint_id"]))
        return reply

    def metadata(self) -> dict:
        return dict(self.client.metadata)
