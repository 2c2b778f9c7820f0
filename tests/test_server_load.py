"""Load + hot swap: 4 robots at 20 Hz for 30 s while the checkpoint is swapped twice.

Acceptance: 0 failed requests and every reply tagged with a valid checkpoint id, whose actions are exactly
what that checkpoint computes for that client's observation (so tags and routing are both checked)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest
from server_harness import running_server

from wovr_core.policy.checkpoint import checkpoint_id, load_policy, read_example_obs
from wovr_core.policy.stub import write_stub_checkpoint

CLIENTS = 4
RATE_HZ = 20.0
DURATION_S = 30.0
SWAP_AT_S = (10.0, 20.0)


@pytest.mark.slow
def test_four_clients_at_20hz_through_two_swaps(tmp_path):
    root = tmp_path / "checkpoints"
    names = ["a", "b", "c"]
    paths = [write_stub_checkpoint(root / n, cost_ms=5, action_bias=0.5 * i) for i, n in enumerate(names)]
    ids = [checkpoint_id(p) for p in paths]
    base = read_example_obs(paths[0])
    observations = [base | {"observation.state": base["observation.state"] + 0.1 * k} for k in range(CLIENTS)]
    expected = {(k, ckpt_id): load_policy(path).infer(observations[k])["actions"]
                for k in range(CLIENTS) for ckpt_id, path in zip(ids, paths, strict=True)}

    failures: list[str] = []
    served: list[Counter] = [Counter() for _ in range(CLIENTS)]
    mismatches: list[tuple] = []
    with running_server(paths[0], tmp_path / "srv", args=("--checkpoint-root", str(root))) as srv:
        start = time.monotonic() + 0.5

        def robot(k: int) -> None:
            try:
                client = srv.client()
            except Exception as e:
                failures.append(f"client {k} connect: {e!r}")
                return
            with client:
                step = 0
                while (t := time.monotonic()) < start + DURATION_S:
                    tick = start + step / RATE_HZ
                    if tick > t:
                        time.sleep(tick - t)
                    step += 1
                    try:
                        reply = client.infer(observations[k])
                    except Exception as e:
                        failures.append(f"client {k} step {step}: {e!r}")
                        continue
                    served[k][reply["checkpoint_id"]] += 1
                    key = (k, reply["checkpoint_id"])
                    if key not in expected or not np.array_equal(reply["actions"], expected[key]):
                        mismatches.append((k, step, reply["checkpoint_id"]))

        threads = [threading.Thread(target=robot, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        swaps = []
        for at, name in zip(SWAP_AT_S, names[1:], strict=True):
            time.sleep(max(0.0, start + at - time.monotonic()))
            swaps.append(srv.http().activate(name))
        for t in threads:
            t.join(DURATION_S + 30)
        metrics = srv.http().metadata()

    total = sum(sum(c.values()) for c in served)
    per_checkpoint = sum(served, Counter())
    print(f"\n{total} replies from {CLIENTS} clients; per checkpoint {dict(per_checkpoint)}; swaps {swaps}")
    assert not failures, failures[:5]
    assert not mismatches, mismatches[:5]
    assert [s["checkpoint_id"] for s in swaps] == ids[1:]
    assert set(per_checkpoint) == set(ids)  # every client-visible id is a real checkpoint, all three served
    assert all(sum(c.values()) > 0 for c in served)
    assert metrics["checkpoint_id"] == ids[2]
