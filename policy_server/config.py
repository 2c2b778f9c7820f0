"""Settings of ``wovr serve``. The API token is not one of them: it comes from ``WOVR_API_TOKEN`` only,
so it never lands in a saved config or a process listing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from wovr_core.config import ConfigError

API_TOKEN_ENV = "WOVR_API_TOKEN"


@dataclass
class ServerConfig:
    PRESETS: ClassVar[dict] = {"tiny": {}}

    host: str = "127.0.0.1"
    port: int = 8000  # 0 = any free port (reported in the log and the ready file)
    max_queue: int = 8  # requests waiting for the model beyond this are refused with 503
    request_timeout_s: float = 2.0  # queue wait + inference; later -> 503, never a hang
    max_request_bytes: int = 16 * 1024 * 1024  # two 224x224 images are ~0.3 MB
    keep_previous: int = 1  # checkpoints kept loaded for instant rollback
    checkpoint_root: str = ""  # when set, activations must name a checkpoint inside it
    access_log: bool = False  # one log line per request costs latency at 20 Hz x N robots
    log_level: str = "info"

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in [0, 65535], got {self.port}")
        if self.max_queue < 1:
            raise ConfigError(f"max_queue must be >= 1, got {self.max_queue}")
        if self.request_timeout_s <= 0:
            raise ConfigError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        if self.max_request_bytes < 1024:
            raise ConfigError(f"max_request_bytes must be >= 1024, got {self.max_request_bytes}")
        if self.keep_previous < 0:
            raise ConfigError(f"keep_previous must be >= 0, got {self.keep_previous}")
