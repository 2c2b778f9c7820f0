"""Run ``wovr serve`` as a child process and wait until it accepts connections (tests, benchmarks, demos)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from policy_server.config import API_TOKEN_ENV


class ServerProcess:
    """A ``wovr serve`` child process; a context manager that always stops it.

    ``port=0`` lets the server pick a free port; the real one is read back from its ready file.
    """

    def __init__(self, checkpoint: str | Path, *, host: str = "127.0.0.1", port: int = 0, args: tuple[str, ...] = (),
                 api_token: str | None = None, log_path: str | Path | None = None, startup_timeout_s: float = 60.0):
        self._workdir = tempfile.TemporaryDirectory(prefix="wovr-serve-")
        self.ready_file = Path(self._workdir.name) / "ready.json"
        self.log_path = Path(log_path) if log_path else Path(self._workdir.name) / "server.log"
        env = {k: v for k, v in os.environ.items() if k != API_TOKEN_ENV}
        if api_token is not None:
            env[API_TOKEN_ENV] = api_token
        exe = Path(sys.executable).parent / "wovr"
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "wovr_core.cli"]
        command += ["serve", "--checkpoint", str(checkpoint), "--host", host, "--port", str(port),
                    "--ready-file", str(self.ready_file), "--log-level", "warning", *args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            self.info = self._wait_ready(startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.url: str = self.info["url"]
        self.ws_url: str = self.info["ws_url"]
        self.port: int = self.info["port"]

    def _wait_ready(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"wovr serve exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"wovr serve not ready after {timeout_s} s:\n{self.log()}")
            time.sleep(0.05)
        return json.loads(self.ready_file.read_text())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
