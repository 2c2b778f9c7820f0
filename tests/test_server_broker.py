"""Chunk broker: one action per control step, next chunk requested early, stale steps skipped, ensembling.

Driven in real time by the in-process stub policy (a registered policy with a real fixed cost)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from policy_server.broker import BrokerConfig, ChunkBroker, _Chunk, ensemble_action
from wovr_core.policy.checkpoint import load_policy, read_example_obs
from wovr_core.policy.stub import write_stub_checkpoint

SMALL = {"observation.images.agentview": [16, 16, 3]}


class RecordingPolicy:
    """The stub policy with the control step encoded in the state, remembering every chunk it produced."""

    def __init__(self, checkpoint):
        self.policy = load_policy(checkpoint)
        self.chunks: list[tuple[int, np.ndarray]] = []

    def infer(self, obs: dict) -> dict:
        reply = self.policy.infer(obs)
        self.chunks.append((int(round(obs["observation.state"][0] * 100)), reply["actions"]))
        return reply


def observation(base: dict, step: int) -> dict:
    state = base["observation.state"].copy()
    state[0] = step / 100
    return base | {"observation.state": state}


def run_paced(broker: ChunkBroker, base: dict, steps: int, hz: float) -> list[np.ndarray]:
    actions, start = [], time.perf_counter()
    for step in range(steps):
        actions.append(broker.act(observation(base, step)))
        time.sleep(max(0.0, start + (step + 1) / hz - time.perf_counter()))
    return actions


def test_actions_follow_the_step_they_belong_to_and_the_robot_never_waits(tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "c", cost_ms=30, image_shapes=SMALL)
    policy = RecordingPolicy(ckpt)
    base = read_example_obs(ckpt)
    # margin_s: slack for a loaded CI machine; what is tested is that requests go out early, not the scheduler
    with ChunkBroker(policy.infer, BrokerConfig(control_hz=20, margin_s=0.15)) as broker:
        actions = run_paced(broker, base, steps=40, hz=20)
    assert broker.stats.steps == 40
    assert broker.stats.waited_steps == 0 and broker.stats.hold_steps == 0
    assert 40 / 8 <= broker.stats.requests < 40 / 2  # chunks are used, not one request per step
    # every prefetched chunk arrives at least one step after the observation it was computed from, so its first
    # action(s) are stale; excluded: the first (synchronous) chunk and the last one, still in flight at the end
    assert broker.stats.stale_actions_skipped >= broker.stats.requests - 2
    for step, action in enumerate(actions):
        # every action is row (step - r) of a chunk computed from the observation of step r
        assert any(r <= step < r + len(chunk) and np.array_equal(action, chunk[step - r])
                   for r, chunk in policy.chunks), step


def test_lead_time_grows_with_latency(tmp_path):
    leads = {}
    for cost in (5, 120):
        ckpt = write_stub_checkpoint(tmp_path / f"c{cost}", cost_ms=cost, image_shapes=SMALL)
        with ChunkBroker(load_policy(ckpt).infer, BrokerConfig(control_hz=20, margin_s=0.0)) as broker:
            broker.act(read_example_obs(ckpt))
            leads[cost] = broker.lead_steps()
    # ceil(latency * 20 Hz): ~5 ms -> 1 step ahead, >= 120 ms -> at least 3 steps ahead
    assert leads[5] <= 2 and leads[120] >= 3 and leads[120] > leads[5]


def test_slow_policy_is_detected_as_waiting(tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "slow", cost_ms=150, chunk_length=2, image_shapes=SMALL)
    with ChunkBroker(load_policy(ckpt).infer, BrokerConfig(control_hz=20)) as broker:
        run_paced(broker, read_example_obs(ckpt), steps=12, hz=20)
    assert broker.stats.waited_steps > 0 and broker.stats.hold_steps == 0


def test_failures_hold_position_or_raise(tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "c", cost_ms=0, chunk_length=2, image_shapes=SMALL)
    policy = load_policy(ckpt)
    calls = []

    def flaky(obs):
        calls.append(1)
        if len(calls) > 1:
            raise ConnectionError("server went away")
        return policy.infer(obs)

    obs = read_example_obs(ckpt)
    with ChunkBroker(flaky, BrokerConfig(control_hz=50, max_wait_s=0.2)) as broker:
        actions = [broker.act(obs) for _ in range(5)]  # steps 0, 1 from the only chunk; then failures
    hold = actions[-1]
    assert np.all(hold[:6] == 0) and hold[6] == actions[1][6]  # zero motion, last gripper command kept
    assert broker.stats.hold_steps >= 1 and broker.stats.failed_requests >= 1

    with ChunkBroker(lambda o: (_ for _ in ()).throw(ConnectionError("down")),
                     BrokerConfig(on_failure="raise", max_wait_s=0.2)) as broker:
        with pytest.raises(ConnectionError):
            broker.act(obs)


def test_reset_starts_a_new_episode(tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "c", cost_ms=0, image_shapes=SMALL)
    policy = RecordingPolicy(ckpt)
    base = read_example_obs(ckpt)
    with ChunkBroker(policy.infer) as broker:
        broker.act(observation(base, 0))
        broker.act(observation(base, 1))
        broker.reset()
        action = broker.act(observation(base, 5))
    # after reset the action comes from a fresh chunk computed on the new observation, row 0
    assert np.array_equal(action, policy.chunks[-1][1][0]) and policy.chunks[-1][0] == 5


def test_temporal_ensembling_blends_overlapping_chunks():
    old = _Chunk(0, np.tile(np.array([1, 1, 1, 1, 1, 1, -1], np.float32), (8, 1)))
    new = _Chunk(2, np.tile(np.array([3, 3, 3, 3, 3, 3, 1], np.float32), (8, 1)))
    equal = ensemble_action([old, new], step=3, decay=0.0)
    np.testing.assert_allclose(equal[:6], 2.0)
    assert equal[6] == 1.0  # the gripper follows the newest chunk instead of averaging to half-open
    weighted = ensemble_action([old, new], step=3, decay=math.log(2))  # weights 1, 0.5
    np.testing.assert_allclose(weighted[:6], (1 + 0.5 * 3) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(ensemble_action([old, new], step=9, decay=0.1)[:6], 3.0)  # only `new` covers 9
    with pytest.raises(ValueError):
        ensemble_action([old], step=8, decay=0.1)


def test_broker_with_ensembling_runs_in_real_time(tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "c", cost_ms=20, image_shapes=SMALL)
    config = BrokerConfig(control_hz=20, margin_s=0.15, ensemble_decay=0.01, request_every_steps=2)
    with ChunkBroker(load_policy(ckpt).infer, config) as broker:
        actions = run_paced(broker, read_example_obs(ckpt), steps=24, hz=20)
    assert broker.stats.waited_steps == 0 and all(a.shape == (7,) and np.all(np.isfinite(a)) for a in actions)
    assert broker.stats.requests >= 24 // 2 - 1  # a chunk every other step: overlapping chunks to blend
