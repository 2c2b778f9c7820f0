"""Policy-server latency (issue #4): server overhead with a fixed-cost stub, end-to-end with the tiny VLA.

overhead = client round trip - the policy's in-process ``infer`` time of that request (``server_timing.policy_ms``,
measured around ``policy.infer`` inside the server). Observation: two 224x224 RGB images + 8-D state + task.
Targets on the stub with a fixed 10 ms cost: p50 <= 2 ms, p99 <= 5 ms.

    python benchmarks/server_latency.py                       # stub only
    python benchmarks/server_latency.py --vla-checkpoint DIR  # + a (tiny) VLA checkpoint end to end
    python benchmarks/server_latency.py --vla-tiny-random     # + the tiny preset VLA, random init

Prints the figures and writes benchmarks/results/server_latency.json; the stub checkpoint goes under
--workspace (default ~/.cache/wovr/bench/server_latency), never into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from policy_server.client import HttpPolicyClient, PolicyClient
from policy_server.process import ServerProcess
from wovr_core.policy.checkpoint import checkpoint_id, load_policy, read_example_obs
from wovr_core.policy.stub import write_stub_checkpoint

RESULTS = Path(__file__).resolve().parent / "results" / "server_latency.json"
TARGET_P50_MS, TARGET_P99_MS = 2.0, 5.0
IMAGES = {"observation.images.agentview": [224, 224, 3], "observation.images.wrist": [224, 224, 3]}


def percentiles(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "max": float(a.max()), "n": int(a.size)}


def in_process_ms(checkpoint: Path, obs: dict, n: int) -> dict:
    policy = load_policy(checkpoint)
    for _ in range(3):
        policy.infer(obs)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        policy.infer(obs)
        times.append((time.perf_counter() - t0) * 1e3)
    policy.close()
    return percentiles(times)


def measure_ws(url: str, obs: dict, n: int, warmup: int) -> dict:
    rtt, overhead, server_side, policy = [], [], [], []
    with PolicyClient(url, timeout_s=60) as client:
        for _ in range(warmup):
            client.infer(obs)
        for _ in range(n):
            t0 = time.perf_counter()
            reply = client.infer(obs)
            ms = (time.perf_counter() - t0) * 1e3
            timing = reply["server_timing"]
            rtt.append(ms)
            policy.append(timing["policy_ms"])
            overhead.append(ms - timing["policy_ms"])
            server_side.append(timing["total_ms"] - timing["policy_ms"])
    return {"round_trip_ms": percentiles(rtt), "overhead_ms": percentiles(overhead),
            "server_side_overhead_ms": percentiles(server_side), "policy_infer_in_server_ms": percentiles(policy)}


def measure_http(url: str, obs: dict, n: int) -> dict:
    client = HttpPolicyClient(url)
    client.infer(obs)
    rtt, overhead = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        reply = client.infer(obs)
        ms = (time.perf_counter() - t0) * 1e3
        rtt.append(ms)
        overhead.append(ms - reply["server_timing"]["policy_ms"])
    return {"round_trip_ms": percentiles(rtt), "overhead_ms": percentiles(overhead)}


def bench_stub(workspace: Path, n: int, warmup: int) -> dict:
    checkpoint = write_stub_checkpoint(workspace / "stub-10ms", cost_ms=10.0, image_shapes=IMAGES)
    obs = read_example_obs(checkpoint)
    result = {"checkpoint_id": checkpoint_id(checkpoint), "stub_cost_ms": 10.0,
              "in_process_infer_ms": in_process_ms(checkpoint, obs, 50)}
    with ServerProcess(checkpoint) as server:
        result["websocket_msgpack"] = measure_ws(server.ws_url, obs, n, warmup)
        result["http_msgpack"] = measure_http(server.url, obs, max(50, n // 4))
    overhead = result["websocket_msgpack"]["overhead_ms"]
    result["targets"] = {"overhead_p50_ms": TARGET_P50_MS, "overhead_p99_ms": TARGET_P99_MS,
                         "p50_met": overhead["p50"] <= TARGET_P50_MS, "p99_met": overhead["p99"] <= TARGET_P99_MS}
    return result


def tiny_random_vla(workspace: Path) -> Path:
    """The tiny preset VLA with random weights, saved once under ``workspace`` (latency does not need training)."""
    from wovr_core.config import make_config
    from wovr_core.errors import DataError
    from wovr_core.policy.vla_config import VLAConfig
    from wovr_core.policy.vla_policy import VLAPolicy, load_vla_policy
    from wovr_core.transforms import NormStats

    directory = workspace / "tiny-vla-random"
    if (directory / "config.json").is_file():
        try:
            load_vla_policy(directory, device="cpu")
            return directory
        except DataError as exc:  # saved by an older version of the model: make it again
            print(f"rebuilding {directory}: {exc}".splitlines()[0])
            shutil.rmtree(directory)

    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.9, 0.9, size=(1000, 7))
    actions[:, 6] = rng.choice([-1.0, 1.0], size=1000)
    stats = {"action": NormStats.compute(actions), "observation.state": NormStats.compute(rng.normal(size=(1000, 8)))}
    tasks = ["put the black bowl on the plate", "pick up the alphabet soup and place it in the basket"]
    policy = VLAPolicy.create(make_config(VLAConfig, "tiny"), stats, tasks=tasks, device="cpu", seed=0)
    return policy.save(directory)


def bench_vla(checkpoint: Path | None, n: int, warmup: int) -> dict:
    if checkpoint is None:
        return {"skipped": "no --vla-checkpoint DIR (or --vla-tiny-random) given; the tiny VLA was not measured"}
    obs = read_example_obs(checkpoint)
    result = {"checkpoint_id": checkpoint_id(checkpoint)}
    try:  # torch start-up on a busy 2-core machine can take a minute
        with ServerProcess(checkpoint, args=("--request-timeout-s", "30"), startup_timeout_s=240) as server:
            result["websocket_msgpack"] = measure_ws(server.ws_url, obs, n, warmup)
    except RuntimeError as e:
        result["error"] = str(e)[-2000:]
    return result


def realtime_processes() -> int:
    """User processes under a real-time scheduling policy (Linux): they can starve everything else for up to
    ~950 ms per second, which shows up here as p99 outliers that have nothing to do with the server."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 38 and fields[38] in ("1", "2"):  # field 41 of stat: policy, SCHED_FIFO / SCHED_RR
            try:
                count += bool((stat.parent / "cmdline").read_bytes())  # kernel threads have no command line
            except OSError:
                continue
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="measured requests per configuration")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--vla-checkpoint", type=Path, default=None, help="tiny VLA checkpoint directory")
    parser.add_argument("--vla-tiny-random", action="store_true",
                        help="build the tiny preset VLA with random weights under --workspace and measure it")
    parser.add_argument("--vla-requests", type=int, default=60)
    parser.add_argument("--workspace", type=Path, default=Path.home() / ".cache" / "wovr" / "bench" / "server_latency")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    started = time.time()
    load_before = os.getloadavg()
    stub = bench_stub(args.workspace, args.requests, args.warmup)
    vla_checkpoint = args.vla_checkpoint
    if vla_checkpoint is None and args.vla_tiny_random:
        vla_checkpoint = tiny_random_vla(args.workspace)
    vla = bench_vla(vla_checkpoint, args.vla_requests, min(args.warmup, 10))
    if vla_checkpoint is not None:
        vla["source"] = "tiny preset, random init" if args.vla_checkpoint is None else str(vla_checkpoint)
    report = {
        "benchmark": "server_latency",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "load_average_1m_before": load_before[0], "load_average_1m_after": os.getloadavg()[0],
                    "realtime_processes": realtime_processes()},
        "observation": "two 224x224x3 uint8 images + 8-D float32 state + task string (~301 KB msgpack)",
        "definition": "overhead = client round trip - server-measured policy.infer time of the same request",
        "stub": stub,
        "tiny_vla": vla,
        "wall_s": round(time.time() - started, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    ws = stub["websocket_msgpack"]
    print(f"stub (10 ms) over WebSocket, {ws['overhead_ms']['n']} requests:")
    print(f"  server overhead  p50 {ws['overhead_ms']['p50']:.2f} ms  p99 {ws['overhead_ms']['p99']:.2f} ms  "
          f"(targets {TARGET_P50_MS} / {TARGET_P99_MS} ms: p50 {'met' if stub['targets']['p50_met'] else 'MISSED'}, "
          f"p99 {'met' if stub['targets']['p99_met'] else 'MISSED'})")
    print(f"  round trip       p50 {ws['round_trip_ms']['p50']:.2f} ms  p99 {ws['round_trip_ms']['p99']:.2f} ms")
    print(f"  of which inside the server (excl. policy) p50 {ws['server_side_overhead_ms']['p50']:.2f} ms")
    http = stub["http_msgpack"]["overhead_ms"]
    print(f"stub over HTTP msgpack: overhead p50 {http['p50']:.2f} ms  p99 {http['p99']:.2f} ms")
    if "skipped" in vla:
        print(f"tiny VLA: skipped ({vla['skipped']})")
    elif "error" in vla:
        print(f"VLA: failed: {vla['error'][:300]}")
    else:
        e2e = vla["websocket_msgpack"]["round_trip_ms"]
        inner = vla["websocket_msgpack"]["policy_infer_in_server_ms"]
        print(f"VLA end to end: p50 {e2e['p50']:.1f} ms  p99 {e2e['p99']:.1f} ms "
              f"(policy.infer inside the server p50 {inner['p50']:.1f} ms  p99 {inner['p99']:.1f} ms)")
    print(f"machine load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
          f"{report['machine']['realtime_processes']} real-time processes; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
