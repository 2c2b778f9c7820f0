"""Run the app under uvicorn: load and validate the first checkpoint, bind, report where we listen."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import uvicorn

from policy_server.app import ServerState, create_app
from policy_server.checkpoints import CheckpointManager, load_checkpoint
from policy_server.config import API_TOKEN_ENV, ServerConfig

log = logging.getLogger(__name__)


class _ReportingServer(uvicorn.Server):
    """uvicorn.Server that calls ``on_started(port)`` once the socket accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[int], None]):
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]
            self._on_started(port)


def serve(checkpoint: str | Path, config: ServerConfig, ready_file: str | Path | None = None,
          api_token: str | None = None) -> None:
    """Serve ``checkpoint`` until SIGINT/SIGTERM. ``ready_file`` gets ``{"url", "port", "pid", ...}`` once
    the server accepts connections (how tests and scripts find a ``port=0`` server)."""
    api_token = api_token if api_token is not None else os.environ.get(API_TOKEN_ENV) or None
    initial = load_checkpoint(checkpoint)  # a bad first checkpoint is a startup error, not a 500 later
    root = Path(config.checkpoint_root).expanduser() if config.checkpoint_root else None
    manager = CheckpointManager(initial, root=root, keep_previous=config.keep_previous)
    state = ServerState(config, manager, api_token)
    app = create_app(state)
    if api_token is None:
        log.warning("%s is not set: checkpoint activation and rollback are disabled", API_TOKEN_ENV)

    def on_started(port: int) -> None:
        url = f"http://{config.host}:{port}"
        log.info("serving %s on %s (WebSocket %s)", initial.checkpoint_id, url,
                 url.replace("http", "ws", 1) + "/ws")
        if ready_file is not None:
            path = Path(ready_file)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps({"url": url, "ws_url": url.replace("http", "ws", 1) + "/ws", "port": port,
                                       "pid": os.getpid(), "checkpoint_id": initial.checkpoint_id}))
            tmp.replace(path)

    uv_config = uvicorn.Config(
        app, host=config.host, port=config.port, log_level=config.log_level, access_log=config.access_log,
        # Deflate on camera images costs milliseconds per message and saves little on loopback/LAN.
        ws_per_message_deflate=False,
        ws_max_size=config.max_request_bytes,
        timeout_graceful_shutdown=3,
        lifespan="on",
    )
    _ReportingServer(uv_config, on_started).run()
