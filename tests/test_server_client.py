"""The robot-side clients against a real server: reconnect with backoff, errors, broker at 20 Hz."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from server_harness import running_server

from policy_server.broker import BrokerConfig, ChunkBroker
from policy_server.client import Backoff, ConnectionLost, HttpPolicyClient, PolicyClient, ServerError
from wovr_core.policy.checkpoint import checkpoint_id, read_example_obs
from wovr_core.policy.stub import write_stub_checkpoint

SMALL = {"observation.images.agentview": [32, 32, 3]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_backoff_grows_and_is_capped():
    delays = [d for d, _ in zip(Backoff(initial_s=0.1, max_s=0.5, jitter=0.0).delays(), range(6), strict=False)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    jittered = [d for d, _ in zip(Backoff(initial_s=1.0, jitter=0.2).delays(), range(50), strict=False)]
    assert all(0.8 <= d for d in jittered) and len(set(jittered)) > 1


def test_unreachable_server_is_a_clear_error_within_the_budget():
    port = free_port()
    start = time.monotonic()
    with pytest.raises(ConnectionLost, match=f"127.0.0.1:{port}"):
        PolicyClient(f"ws://127.0.0.1:{port}/ws", reconnect_timeout_s=0.3)
    assert time.monotonic() - start < 3
    with pytest.raises(ConnectionLost):
        HttpPolicyClient(f"http://127.0.0.1:{port}", timeout_s=1).health()
    with pytest.raises(ConnectionLost, match="invalid server URL"):
        PolicyClient("not a url", reconnect_timeout_s=0.3)


def test_client_reconnects_after_a_server_restart(tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "c", cost_ms=1, image_shapes=SMALL)
    obs = read_example_obs(ckpt)
    port = free_port()
    with running_server(ckpt, tmp_path / "first", port=port) as srv:
        client = PolicyClient(srv.ws_url, reconnect_timeout_s=30)
        first = client.infer(obs)
    # the server is gone; a new one comes up on the same port while the robot keeps its client
    with running_server(ckpt, tmp_path / "second", port=port):
        second = client.infer(obs)
    client.close()
    np.testing.assert_array_equal(first["actions"], second["actions"])
    assert client.reconnects == 1 and second["checkpoint_id"] == checkpoint_id(ckpt)


def test_client_side_validation_fails_fast(tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "c", cost_ms=1, image_shapes=SMALL)
    with running_server(ckpt, tmp_path) as srv:
        with srv.client(validate=True) as client:
            obs = read_example_obs(ckpt)
            with pytest.raises(ValueError, match="observation.state"):
                client.infer(obs | {"observation.state": np.zeros(3, np.float32)})
            assert client.infer(obs)["actions"].shape == (8, 7)


def test_broker_over_the_network_at_20hz_never_waits(tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "c", cost_ms=10, image_shapes=SMALL)
    obs = read_example_obs(ckpt)
    with running_server(ckpt, tmp_path) as srv, srv.client() as client:
        with ChunkBroker(client.infer, BrokerConfig(control_hz=20, margin_s=0.15)) as broker:
            start = time.perf_counter()
            for step in range(50):
                action = broker.act(obs)
                assert action.shape == (7,) and np.all(np.isfinite(action))
                time.sleep(max(0.0, start + (step + 1) / 20 - time.perf_counter()))
    assert broker.stats.waited_steps == 0 and broker.stats.hold_steps == 0 and broker.stats.failed_requests == 0
    assert broker.stats.requests < 50 / 2  # chunks are used, not one request per step
    assert broker.last_checkpoint_id == checkpoint_id(ckpt)


def test_server_error_types(tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "c", cost_ms=1, image_shapes=SMALL)
    with running_server(ckpt, tmp_path) as srv:
        with pytest.raises(ServerError) as error:
            srv.http().activate("/nonexistent")
        assert error.value.status == 404 and error.value.field == "checkpoint"


def test_a_late_reply_is_never_taken_for_the_next_requests_answer(tmp_path):
    ckpt = write_stub_checkpoint(tmp_path / "c", cost_ms=200, image_shapes=SMALL)
    obs = read_example_obs(ckpt)
    other = obs | {"observation.state": obs["observation.state"] + 1.0}
    with running_server(ckpt, tmp_path) as srv, srv.client(timeout_s=0.05) as client:
        with pytest.raises(TimeoutError):
            client.infer(obs)  # its reply arrives ~150 ms later, on the same connection
        client.timeout_s = 5.0
        reply = client.infer(other)
        expected = srv.http().infer(other)["actions"]
    np.testing.assert_array_equal(reply["actions"], expected)
    assert client.reconnects == 0
