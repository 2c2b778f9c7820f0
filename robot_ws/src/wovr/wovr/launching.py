"""Start wovr nodes as separate processes and talk to them, without ``ros2 launch`` (tests, benchmarks,
machines with only the PyPI ROS wheels).

::

    with reserved_domain() as domain_id:
        env = ros_env(domain_id)
        with NodeProcess("recorder_node", {"record_dir": "/tmp/ds", "cameras": ["cam0"]}, env, log_dir), \\
                RosProbe(domain_id) as probe:
            probe.call(topics.SRV_START_EPISODE, Trigger, retry_while="not ready")

Every process gets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and the given ``ROS_DOMAIN_ID``: DDS traffic
never leaves the machine and parallel runs do not see each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # robot_ws/src/wovr
REPO_ROOT = Path(__file__).resolve().parents[4]


@contextlib.contextmanager
def reserved_domain(first: int = 60, last: int = 101) -> Iterator[int]:
    """A ROS_DOMAIN_ID no other wovr run on this machine holds while the block runs (an flock'ed file per id
    in the temp dir, released even when the process dies), so parallel test sessions and benchmarks never
    cross-talk."""
    lock_dir = Path(tempfile.gettempdir()) / "wovr-ros-domains"
    lock_dir.mkdir(exist_ok=True)
    ids = list(range(first, last + 1))
    start = os.getpid() % len(ids)  # spread concurrent sessions over the range
    for domain_id in ids[start:] + ids[:start]:
        handle = open(lock_dir / f"{domain_id}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield domain_id
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    raise RuntimeError(f"every ROS_DOMAIN_ID in {first}..{last} is held by another wovr run on this machine")


def ros_env(domain_id: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a node process: loopback-only DDS on ``domain_id``, this package importable."""
    if not 0 <= domain_id <= 101:
        raise ValueError(f"ROS_DOMAIN_ID must be in 0..101 on Linux, got {domain_id}")
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)  # the PyPI wheels keep their share/ in the venv
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("PYOPENGL_PLATFORM", "egl")
    paths = [str(PACKAGE_DIR), str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def param_value(value: Any) -> str:
    """A ``--ros-args -p name:=value`` value (YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(param_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "''" if value == "" else value
    return repr(value)


class NodeProcess:
    """``python -m wovr.<node> --ros-args -p ...`` with its output in ``<log_dir>/<name>.log``."""

    def __init__(self, node: str, params: Mapping[str, Any], env: Mapping[str, str], log_dir: str | Path,
                 name: str | None = None):
        self.node = node
        self.name = name or node
        self.log_path = Path(log_dir) / f"{self.name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", f"wovr.{node}", "--ros-args"]
        for key, value in params.items():
            args += ["-p", f"{key}:={param_value(value)}"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if not self.alive():
                return text in self.log()
            time.sleep(0.1)
        return False

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGINT (clean shutdown: the recorder commits its open episode), SIGKILL after ``timeout_s``."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: what a crash or a power cut does."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class RosProbe:
    """An rclpy node in the calling process, on its own context and domain: service calls, subscriptions."""

    def __init__(self, domain_id: int, name: str = "wovr_probe"):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._clients: dict[str, Any] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, name: str, srv_type, request=None, timeout_s: float = 60.0, resend_s: float | None = None,
             retry_while: str = ""):
        """Blocking service call; raises TimeoutError naming the service.

        ``retry_while``: a refusal whose message contains it (``"not ready"``) is retried until the
        timeout. ``resend_s``: for calls that are safe to repeat, an unanswered request is sent again this
        often (``wait_for_service`` is also satisfied by a server that was just killed and that DDS still
        knows about)."""
        deadline = time.monotonic() + timeout_s
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError(f"service {name} not available within {timeout_s} s")
        request = request if request is not None else srv_type.Request()
        while time.monotonic() < deadline:
            done = threading.Event()
            future = client.call_async(request)
            future.add_done_callback(lambda _, event=done: event.set())
            wait_s = max(deadline - time.monotonic(), 0.0)
            if not done.wait(min(resend_s, wait_s) if resend_s else wait_s):
                client.remove_pending_request(future)
                continue
            reply = future.result()
            if retry_while and not reply.success and retry_while in reply.message:
                time.sleep(0.2)
                continue
            return reply
        raise TimeoutError(f"service {name} did not answer (or kept refusing) within {timeout_s} s")

    def collect(self, topic: str, msg_type, qos=10) -> list:
        """Subscribe; the returned list fills with messages as they arrive."""
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def publisher(self, topic: str, msg_type, qos=10):
        return self.node.create_publisher(msg_type, topic, qos)

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not met within {timeout_s} s")
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()

    def __enter__(self) -> RosProbe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
