"""A real ``wovr serve`` on 127.0.0.1 driven by the real clients: metadata, inference, bad inputs, auth,
metrics, overload, hot swap + rollback, corrupt checkpoints."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest
from server_harness import TOKEN, running_server
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from policy_server import protocol
from policy_server.client import ServerBusy, ServerError
from wovr_core.policy.checkpoint import checkpoint_id, load_policy, read_example_obs
from wovr_core.policy.stub import write_stub_checkpoint

IMAGES = {"observation.images.agentview": [64, 64, 3], "observation.images.wrist": [48, 64, 3]}
TIMING_KEYS = {"decode_ms", "queue_ms", "preprocess_ms", "infer_ms", "postprocess_ms", "policy_ms", "total_ms"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkpoints")
    write_stub_checkpoint(root / "a", cost_ms=2, image_shapes=IMAGES)
    write_stub_checkpoint(root / "b", cost_ms=2, image_shapes=IMAGES, action_bias=0.5)
    write_stub_checkpoint(root / "chunk4", cost_ms=2, image_shapes=IMAGES, chunk_length=4)
    corrupt = write_stub_checkpoint(root / "corrupt", cost_ms=2, image_shapes=IMAGES)
    (corrupt / "norm_stats.json").write_text('{"action": {"mean": [0.0]')
    return root


@pytest.fixture(scope="module")
def server(root, tmp_path_factory):
    with running_server(root / "a", tmp_path_factory.mktemp("srv"), args=("--max-request-mb", "1")) as srv:
        yield srv


@pytest.fixture(scope="module")
def obs(root) -> dict:
    return read_example_obs(root / "a")


def expected_actions(checkpoint: Path, obs: dict) -> np.ndarray:
    return load_policy(checkpoint).infer(obs)["actions"]


# ------------------------------------------------------------------------------------------- happy path
def test_first_ws_message_is_metadata(server, root):
    with server.client() as client:
        meta = client.metadata
    assert meta["checkpoint_id"] == checkpoint_id(root / "a")
    assert meta["protocol_version"] == protocol.PROTOCOL_VERSION
    contract = meta["action_contract"]
    assert contract["chunk_length"] == 8 and contract["action_dim"] == 7 and contract["state_dim"] == 8
    assert contract["image_keys"] == IMAGES
    assert meta["server"]["max_request_bytes"] == 2**20
    assert server.http().metadata() == json.loads(json.dumps(meta))


def test_ws_inference_returns_this_requests_actions_with_timing_and_id(server, root, obs):
    with server.client() as client:
        for shift in (0.0, 0.3):
            request = obs | {"observation.state": obs["observation.state"] + shift}
            reply = client.infer(request)
            np.testing.assert_array_equal(reply["actions"], expected_actions(root / "a", request))
            assert reply["actions"].dtype == np.float32
            assert reply["checkpoint_id"] == checkpoint_id(root / "a")
            timing = reply["server_timing"]
            assert set(timing) == TIMING_KEYS and all(v >= 0 for v in timing.values())
            assert timing["infer_ms"] >= 2.0  # the stub's fixed cost
            assert timing["total_ms"] >= timing["policy_ms"]
        assert client.refresh_metadata()["checkpoint_id"] == reply["checkpoint_id"]


def test_http_msgpack_and_json_agree(server, root, obs):
    expected = expected_actions(root / "a", obs)
    reply = server.http().infer(obs)
    np.testing.assert_array_equal(reply["actions"], expected)
    as_json = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in obs.items()}
    response = httpx.post(server.url + "/infer", json={"obs": as_json}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    np.testing.assert_allclose(np.array(body["actions"], np.float32), expected, rtol=1e-6)
    assert body["checkpoint_id"] == reply["checkpoint_id"] and set(body["server_timing"]) == TIMING_KEYS


def test_health_and_checkpoint_listing(server, root):
    health = server.http().health()
    assert health["status"] == "ok" and health["checkpoint_id"] == checkpoint_id(root / "a")
    listing = server.http().checkpoints()
    assert listing["active"]["checkpoint_id"] == checkpoint_id(root / "a")
    assert listing["available"] == []  # no --checkpoint-root given to this server


# ------------------------------------------------------------------------------------------- bad inputs
BAD_OBS = [
    ("missing image", lambda o: {k: v for k, v in o.items() if k != "observation.images.wrist"},
     "observation.images.wrist"),
    ("wrong shape", lambda o: o | {"observation.images.agentview": np.zeros((64, 63, 3), np.uint8)},
     "observation.images.agentview"),
    ("float image", lambda o: o | {"observation.images.agentview": np.zeros((64, 64, 3), np.float32)},
     "observation.images.agentview"),
    ("short state", lambda o: o | {"observation.state": np.zeros(7, np.float32)}, "observation.state"),
    ("nan state", lambda o: o | {"observation.state": np.full(8, np.nan, np.float32)}, "observation.state"),
    ("inf state", lambda o: o | {"observation.state": np.full(8, np.inf)}, "observation.state"),
    ("list state", lambda o: o | {"observation.state": [0.0] * 8}, "observation.state"),
    ("task int", lambda o: o | {"task": 42}, "task"),
    ("task missing", lambda o: {k: v for k, v in o.items() if k != "task"}, "task"),
    ("obs not a map", lambda o: [1, 2, 3], "obs"),
]


@pytest.mark.parametrize("name, mutate, field", BAD_OBS, ids=[b[0] for b in BAD_OBS])
def test_bad_observations_get_422_naming_the_field(server, obs, name, mutate, field):
    with server.client() as client:
        with pytest.raises(ServerError) as ws_error:
            client.infer(mutate(dict(obs)))
        assert ws_error.value.status == 422 and ws_error.value.field == field and field in ws_error.value.detail
        client.infer(obs)  # the same connection keeps working
    with pytest.raises(ServerError) as http_error:
        server.http().infer(mutate(dict(obs)))
    assert http_error.value.status == 422 and http_error.value.field == field


def _raw_ws(server, frame) -> dict:
    with connect(server.ws_url, compression=None) as ws:
        protocol.decode(ws.recv(timeout=10))  # metadata
        ws.send(frame)
        return protocol.decode(ws.recv(timeout=10))


@pytest.mark.parametrize("frame, status, match", [
    ("a text frame", 400, "binary"),
    (b"\xc1\xc1garbage", 400, "not a valid msgpack"),
    (msgpack.packb([1, 2]), 400, "expected a map"),
    (msgpack.packb({"type": "shutdown"}), 400, "unknown message type"),
    (msgpack.packb({"type": "infer"}), 422, "obs: missing"),
    (msgpack.packb({"type": "infer", "obs": {"observation.state": {
        "__ndarray__": True, "dtype": "|O", "shape": [8], "data": b"\0" * 64}}}), 400, "not allowed"),
    (msgpack.packb({"type": "infer", "obs": {"observation.state": {
        "__ndarray__": True, "dtype": "<f4", "shape": [8], "data": b"\0" * 5}}}), 400, "needs 32 bytes"),
])
def test_malformed_ws_frames_get_an_error_reply(server, frame, status, match):
    reply = _raw_ws(server, frame)
    assert reply["type"] == "error" and reply["status"] == status, reply
    assert match in reply["detail"]


def test_oversized_request_is_refused_by_the_client_before_sending(server, obs):
    with server.client() as client:
        huge = obs | {"padding": np.zeros(2 * 2**20, np.uint8)}
        with pytest.raises(ServerError) as error:
            client.infer(huge)
        assert error.value.status == 413 and "limit" in error.value.detail
        assert client.infer(obs)["actions"].shape == (8, 7)
        assert client.reconnects == 0


def test_oversized_ws_frame_closes_only_that_connection(server, obs):
    """A client that ignores the advertised limit loses its connection (close 1009 or a reset, depending on
    how far the frame got), and the server keeps serving everyone else."""
    with connect(server.ws_url, compression=None, max_size=None) as ws:
        limit = protocol.decode(ws.recv(timeout=10))["metadata"]["server"]["max_request_bytes"]
        with pytest.raises((ConnectionClosed, OSError)):
            ws.send(b"\0" * (limit + 1))
            ws.recv(timeout=10)
    with server.client() as client:
        assert client.infer(obs)["actions"].shape == (8, 7)


@pytest.mark.parametrize("content, headers, status, match", [
    (b"{}", {"content-type": "text/plain"}, 415, "content-type"),
    (b"", {}, 415, "content-type"),
    (b"{not json", {"content-type": "application/json"}, 400, "not valid JSON"),
    (b'{"observation": 1}', {"content-type": "application/json"}, 422, "obs: missing"),
    (b'{"obs": {"observation.images.agentview": [[[256]]]}}', {"content-type": "application/json"}, 422, "[0, 255]"),
    (b"[" * 100_000 + b"]" * 100_000, {"content-type": "application/json"}, 400, "JSON"),
    (b"\xc1", {"content-type": "application/msgpack"}, 400, "msgpack"),
    (b"x" * (2**20 + 1), {"content-type": "application/msgpack"}, 413, "exceeds the limit"),
])
def test_bad_http_bodies_get_4xx(server, content, headers, status, match):
    response = httpx.post(server.url + "/infer", content=content, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    assert match in response.json()["detail"]


def test_chunked_oversized_body_is_cut_off(server):
    def body():
        for _ in range(40):
            yield b"\0" * 65536

    response = httpx.post(server.url + "/infer", content=body(), headers={"content-type": "application/msgpack"},
                          timeout=30)
    assert response.status_code == 413


def test_server_survives_all_of_the_above(server, obs):
    assert server.proc.poll() is None
    assert server.http().health()["status"] == "ok"
    assert server.http().infer(obs)["actions"].shape == (8, 7)


# ----------------------------------------------------------------------------------------------- auth
def test_mutating_endpoints_need_the_token(server, root):
    url = server.url + "/checkpoints/activate"
    body = {"checkpoint": str(root / "b")}
    assert httpx.post(url, json=body).status_code == 401
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API token"
    assert httpx.post(url, json=body, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert httpx.post(server.url + "/checkpoints/rollback").status_code == 401
    with pytest.raises(ServerError) as error:
        server.http(token=None).rollback()
    assert error.value.status == 401
    # with the token, validation of the body happens (and nothing changed above)
    bad_body = httpx.post(url, json={"wait": True}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad_body.status_code == 422
    assert server.http().health()["checkpoint_id"] == checkpoint_id(root / "a")


def test_without_a_token_mutation_is_disabled(root, tmp_path):
    with running_server(root / "a", tmp_path, token=None) as srv:
        response = httpx.post(srv.url + "/checkpoints/rollback", headers={"Authorization": "Bearer anything"})
        assert response.status_code == 403 and "WOVR_API_TOKEN" in response.json()["detail"]


# -------------------------------------------------------------------------------------------- metrics
def test_metrics_are_prometheus_text(server, obs):
    with server.client() as client:
        for _ in range(3):
            client.infer(obs)
    response = httpx.get(server.url + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    ok = [line for line in text.splitlines() if line.startswith('wovr_requests_total{transport="ws",outcome="ok"}')]
    assert ok and float(ok[0].split()[-1]) >= 3
    assert 'wovr_requests_total{transport="ws",outcome="invalid"}' in text
    assert 'wovr_request_latency_seconds_bucket{stage="total",le="+Inf"}' in text
    assert "wovr_queue_depth 0" in text
    assert "# TYPE wovr_checkpoint_swaps_total counter" in text
    assert "wovr_active_checkpoint{checkpoint_id=" in text


# ------------------------------------------------------------------------------------------- overload
def test_overload_answers_503_quickly_and_never_hangs(root, tmp_path):
    slow = write_stub_checkpoint(tmp_path / "slow", cost_ms=300, image_shapes=IMAGES)
    obs = read_example_obs(slow)
    args = ("--max-queue", "1", "--request-timeout-s", "0.5")
    with running_server(slow, tmp_path / "srv", args=args) as srv:
        results, elapsed = [], []

        def call():
            start = time.monotonic()
            try:
                results.append(srv.http().infer(obs)["checkpoint_id"])
            except ServerBusy as e:
                results.append(e.status)
            elapsed.append(time.monotonic() - start)

        threads = [threading.Thread(target=call) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert len(results) == 6, "a request hung"
        assert results.count(503) >= 3 and any(isinstance(r, str) for r in results), results
        assert max(elapsed) < 5
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'outcome="overloaded"' in metrics
        assert srv.http().health()["status"] == "ok"


# ------------------------------------------------------------------------------- hot swap + rollback
def test_swap_rollback_and_rejections(root, tmp_path, obs):
    ids = {name: checkpoint_id(root / name) for name in ("a", "b")}
    with running_server(root / "a", tmp_path, args=("--checkpoint-root", str(root))) as srv:
        http = srv.http()
        with srv.client() as client:
            assert client.infer(obs)["checkpoint_id"] == ids["a"]

            result = http.activate("b")
            assert result["status"] == "active" and result["checkpoint_id"] == ids["b"]
            assert result["previous_checkpoint_id"] == ids["a"]
            reply = client.infer(obs)  # same connection, new model, between requests
            assert reply["checkpoint_id"] == ids["b"]
            np.testing.assert_array_equal(reply["actions"], expected_actions(root / "b", obs))
            assert client.refresh_metadata()["checkpoint_id"] == ids["b"]
            listing = http.checkpoints()
            assert [c["checkpoint_id"] for c in listing["previous"]] == [ids["a"]]
            assert listing["available"] == ["a", "b", "chunk4", "corrupt"]

            assert http.rollback() == {"status": "active", "checkpoint_id": ids["a"], "rolled_back_from": ids["b"]}
            np.testing.assert_array_equal(client.infer(obs)["actions"], expected_actions(root / "a", obs))
            with pytest.raises(ServerError) as error:
                http.rollback()
            assert error.value.status == 409

            for name, status, match in (("chunk4", 422, "chunk_length: 8 != 4"),
                                        ("corrupt", 422, "norm_stats.json"),
                                        ("missing", 404, "no config.json"),
                                        (str(tmp_path), 403, "outside the checkpoint root")):
                with pytest.raises(ServerError) as error:
                    http.activate(name)
                assert error.value.status == status and match in error.value.detail, error.value
                assert client.infer(obs)["checkpoint_id"] == ids["a"]  # the old model keeps serving

            assert http.activate("b", wait=False)["status"] == "loading"
            deadline = time.monotonic() + 10
            while http.checkpoints()["activation"]["state"] == "loading" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert http.checkpoints()["activation"]["state"] == "active"
            assert client.infer(obs)["checkpoint_id"] == ids["b"]
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'wovr_checkpoint_swaps_total{result="activated"} 2' in metrics
        assert 'wovr_checkpoint_swaps_total{result="rejected"} 2' in metrics
        assert 'wovr_checkpoint_swaps_total{result="rollback"} 1' in metrics
        assert f'wovr_active_checkpoint{{checkpoint_id="{ids["b"]}"}} 1' in metrics


def test_corrupt_first_checkpoint_is_a_clear_startup_error(root, tmp_path):
    with pytest.raises(RuntimeError, match=r"exited with 2:[\s\S]*norm_stats.json"):
        with running_server(root / "corrupt", tmp_path):
            pass
