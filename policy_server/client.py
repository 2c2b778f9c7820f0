"""Robot-side clients of the policy server. Torch-free: numpy, msgpack and websockets (+ the standard library).

:class:`PolicyClient` is a blocking WebSocket client, safe to call from a ROS 2 callback thread; it reconnects
with exponential backoff and resends the request once (inference is idempotent). :class:`HttpPolicyClient`
speaks plain HTTP for scripts and for checkpoint management::

    with PolicyClient("ws://127.0.0.1:8000/ws") as client:
        reply = client.infer(obs)        # reply["actions"]: (chunk_length, 7) float32
        reply["checkpoint_id"], reply["server_timing"]
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from policy_server import protocol

log = logging.getLogger(__name__)
MESSAGE_TOO_BIG = 1009  # WebSocket close code: the server's max message size was exceeded

# websockets >= 15 routes connections through system proxies by default and >= 17 warns unless a direct
# connection is asked for explicitly; a robot talks to its policy server directly on every version.
_CONNECT_PARAMS = inspect.signature(connect).parameters
_DIRECT_CONNECT = {k: v for k, v in (("proxy", None), ("legacy", True)) if k in _CONNECT_PARAMS}


class ServerError(RuntimeError):
    """The server refused or failed a request; ``status`` follows HTTP (422 bad input, 503 overloaded...)."""

    def __init__(self, status: int, detail: str, field: str | None = None):
        super().__init__(f"[{status}] {detail}")
        self.status, self.detail, self.field = status, detail, field


class ServerBusy(ServerError):
    """503: the server is overloaded or past the request deadline; retrying later may succeed."""


class ConnectionLost(ConnectionError):
    """The server could not be reached within the reconnect budget."""


def _plain(obs: Any) -> Any:
    # msgpack packs dicts, not arbitrary Mappings; anything else goes as is and the server names the problem.
    return dict(obs) if isinstance(obs, Mapping) and not isinstance(obs, dict) else obs


def _server_error(status: int, detail: str, field: str | None = None) -> ServerError:
    return (ServerBusy if status == 503 else ServerError)(status, detail, field)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, so a fleet of robots does not reconnect in lockstep."""

    initial_s: float = 0.05
    max_s: float = 2.0
    factor: float = 2.0
    jitter: float = 0.2

    def delays(self) -> Iterator[float]:
        delay = self.initial_s
        while True:
            yield delay * (1.0 + random.uniform(-self.jitter, self.jitter))
            delay = min(delay * self.factor, self.max_s)


class PolicyClient:
    """Blocking WebSocket client (one connection, requests serialized by a lock)."""

    def __init__(self, url: str = "ws://127.0.0.1:8000/ws", *, timeout_s: float = 5.0,
                 reconnect_timeout_s: float = 10.0, backoff: Backoff = Backoff(), validate: bool = False,
                 max_reply_bytes: int = 64 * 2**20, connect_now: bool = True):
        self.url = url
        self.timeout_s = timeout_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self.backoff = backoff
        self.validate = validate
        self.max_reply_bytes = max_reply_bytes
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._metadata: dict | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        if connect_now:
            with self._lock:
                self._ensure_connected()

    # -------------------------------------------------------------------------------------------- public
    @property
    def metadata(self) -> dict:
        """Server metadata from the last (re)connect: checkpoint_id, action_contract, server limits."""
        with self._lock:
            self._ensure_connected()
            return dict(self._metadata or {})

    def infer(self, obs: Mapping[str, Any]) -> dict:
        """One inference; raises ServerError (4xx/5xx), TimeoutError, or ConnectionLost."""
        if self.validate:
            obs = protocol.validate_observation(obs, self.metadata["action_contract"])
        return self._request({"type": "infer", "obs": _plain(obs)})

    def refresh_metadata(self) -> dict:
        """Ask for the current metadata (e.g. after the server swapped checkpoints)."""
        reply = self._request({"type": "metadata"})
        with self._lock:
            self._metadata = reply["metadata"]
        return dict(reply["metadata"])

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ internals
    def _connect_once(self) -> None:
        # No permessage-deflate: compressing camera images costs more time than it saves on a LAN.
        ws = connect(self.url, open_timeout=self.timeout_s, close_timeout=1.0, compression=None,
                     max_size=self.max_reply_bytes, **_DIRECT_CONNECT)
        try:
            hello = protocol.decode(ws.recv(timeout=self.timeout_s))
        except BaseException:
            ws.close()
            raise
        if not isinstance(hello, dict) or hello.get("type") != "metadata":
            ws.close()
            raise ConnectionLost(f"{self.url}: the first message was not server metadata")
        self._ws, self._metadata = ws, hello["metadata"]

    def _ensure_connected(self) -> None:
        if self._ws is not None:
            return
        deadline = time.monotonic() + self.reconnect_timeout_s
        last_error: Exception | None = None
        for delay in self.backoff.delays():
            try:
                self._connect_once()
                return
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError, protocol.ProtocolError) as e:
                last_error = e
            except InvalidURI as e:
                raise ConnectionLost(f"invalid server URL {self.url!r}: {e}") from None
            if time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
        raise ConnectionLost(f"cannot reach the policy server at {self.url} within {self.reconnect_timeout_s} s: "
                             f"{type(last_error).__name__}: {last_error}")

    def _drop_connection(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:  # already broken: nothing to release
                pass
            self._ws = None

    def _request(self, message: dict) -> dict:
        with self._lock:
            for attempt in (1, 2):
                self._ensure_connected()
                assert self._ws is not None
                request_id = next(self._ids)
                payload = protocol.encode({**message, "id": request_id})
                limit = (self._metadata or {}).get("server", {}).get("max_request_bytes")
                if limit is not None and len(payload) > limit:
                    # Refused here: sending it would only make the server drop the connection mid-frame.
                    raise ServerError(413, f"message of {len(payload)} bytes is over the server limit "
                                           f"({limit} bytes)")
                try:
                    self._ws.send(payload)
                    reply = self._receive(request_id)
                except ConnectionClosed as e:
                    self._drop_connection()
                    if e.rcvd is not None and e.rcvd.code == MESSAGE_TOO_BIG:
                        raise ServerError(413, f"message too big for the server (limit {limit} bytes)") from None
                    if attempt == 2:
                        raise ConnectionLost(f"connection to {self.url} lost twice: {e}") from None
                    self.reconnects += 1
                    log.warning("policy server connection lost (%s); reconnecting", e)
                    continue
                except TimeoutError:
                    raise  # the connection is fine; a late reply to this id is skipped by the next request
                except OSError as e:
                    self._drop_connection()
                    if attempt == 2:
                        raise ConnectionLost(f"connection to {self.url} failed: {e}") from None
                    self.reconnects += 1
                    continue
                if reply.get("type") == "error":
                    raise _server_error(int(reply.get("status", 500)), str(reply.get("detail")), reply.get("field"))
                return reply
        raise AssertionError("unreachable")

    def _receive(self, request_id: int) -> dict:
        """The reply to ``request_id``; replies to earlier requests that timed out are skipped."""
        assert self._ws is not None
        deadline = time.monotonic() + self.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply from {self.url} within {self.timeout_s} s")
            reply = protocol.decode(self._ws.recv(timeout=remaining))
            if isinstance(reply, dict) and reply.get("id") == request_id:
                return reply
            if isinstance(reply, dict) and reply.get("type") == "error" and reply.get("id") is None:
                raise _server_error(int(reply.get("status", 500)), str(reply.get("detail")), reply.get("field"))


class HttpPolicyClient:
    """HTTP client for scripts and operators: inference (msgpack), metadata, health, hot swap, rollback."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, timeout_s: float = 30.0,
                 api_token: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.api_token = api_token

    def infer(self, obs: Mapping[str, Any]) -> dict:
        body = protocol.encode({"obs": _plain(obs)})
        return self._call("POST", "/infer", body, protocol.MSGPACK_CONTENT_TYPE)

    def metadata(self) -> dict:
        return self._call("GET", "/metadata")

    def health(self) -> dict:
        return self._call("GET", "/healthz")

    def checkpoints(self) -> dict:
        return self._call("GET", "/checkpoints")

    def activate(self, checkpoint: str, wait: bool = True) -> dict:
        body = json.dumps({"checkpoint": str(checkpoint), "wait": wait}).encode()
        return self._call("POST", "/checkpoints/activate", body, "application/json", auth=True)

    def rollback(self) -> dict:
        return self._call("POST", "/checkpoints/rollback", b"", "application/json", auth=True)

    def _call(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
              auth: bool = False) -> dict:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if auth and self.api_token:
            headers["Authorization"] = f"Bearer {self.api_token}"
        request = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                data, kind = response.read(), response.headers.get_content_type()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                error = json.loads(raw)
            except ValueError:
                error = {"detail": raw.decode(errors="replace")}
            detail = error.get("detail") if isinstance(error, dict) else error
            field = error.get("field") if isinstance(error, dict) else None
            raise _server_error(e.code, str(detail), field) from None
        except urllib.error.URLError as e:
            raise ConnectionLost(f"cannot reach {self.base_url}: {e.reason}") from None
        return protocol.decode(data) if kind == protocol.MSGPACK_CONTENT_TYPE else json.loads(data)
