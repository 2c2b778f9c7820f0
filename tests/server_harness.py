"""Start a real ``wovr serve`` process on 127.0.0.1 for tests, and always stop it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from policy_server.client import HttpPolicyClient, PolicyClient
from policy_server.process import ServerProcess

TOKEN = "test-token-123"


class RunningServer:
    def __init__(self, process: ServerProcess, token: str | None):
        self.process = process
        self.proc = process.proc
        self.url, self.ws_url, self.port = process.url, process.ws_url, process.port
        self.token = token

    def http(self, token: str | None = "default") -> HttpPolicyClient:
        return HttpPolicyClient(self.url, api_token=self.token if token == "default" else token)

    def client(self, **kwargs) -> PolicyClient:
        return PolicyClient(self.ws_url, **kwargs)

    def log(self) -> str:
        return self.process.log()


@contextlib.contextmanager
def running_server(checkpoint: Path, workdir: Path, *, token: str | None = TOKEN, port: int = 0,
                   args: tuple[str, ...] = ()) -> Iterator[RunningServer]:
    """``wovr serve --checkpoint ... --port 0`` as a subprocess (log kept in ``workdir``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"server-{uuid.uuid4().hex[:8]}.log"
    with ServerProcess(checkpoint, port=port, args=args, api_token=token, log_path=log_path) as process:
        yield RunningServer(process, token)
