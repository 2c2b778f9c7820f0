"""The FastAPI application: WebSocket and HTTP inference, health, metadata, metrics, checkpoint hot swap.

Request path: decode + validate on the event loop (microseconds for msgpack; JSON is parsed on a thread),
then the inference worker thread, then the reply. Every reply carries ``server_timing`` and the id of the
checkpoint that produced it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from policy_server import protocol
from policy_server.checkpoints import CheckpointError, CheckpointManager
from policy_server.config import API_TOKEN_ENV, ServerConfig
from policy_server.metrics import ServerMetrics
from policy_server.protocol import MalformedMessage, PayloadTooLarge, ProtocolError
from policy_server.worker import InferenceWorker, Overloaded, PolicyFailure

log = logging.getLogger(__name__)
JSON_CONTENT_TYPES = ("application/json",)
MSGPACK_CONTENT_TYPES = (protocol.MSGPACK_CONTENT_TYPE, "application/x-msgpack")
# Module level: FastAPI resolves the (string) annotations of dependencies in the module's namespace.
_BEARER = HTTPBearer(auto_error=False, description=f"the server's {API_TOKEN_ENV}")


class AuthError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class ServerState:
    """Everything the routes share: settings, checkpoints, the worker, metrics, the API token."""

    def __init__(self, config: ServerConfig, manager: CheckpointManager, api_token: str | None):
        self.config = config
        self.manager = manager
        self.api_token = api_token or None
        self.worker = InferenceWorker(lambda: manager.active, config.max_queue)
        self.metrics = ServerMetrics(queue_depth=lambda: self.worker.depth)
        self.metrics.set_active(manager.active.checkpoint_id)
        manager.on_change = self.on_checkpoint_change
        self.started = time.time()

    def on_checkpoint_change(self, checkpoint: Any, event: str) -> None:
        self.metrics.swaps.inc(result=event)
        self.metrics.set_active(self.manager.active.checkpoint_id)

    def metadata(self) -> dict:
        active = self.manager.active
        return {
            **active.metadata,
            "checkpoint_id": active.checkpoint_id,
            "protocol_version": protocol.PROTOCOL_VERSION,
            "server": {"max_request_bytes": self.config.max_request_bytes,
                       "request_timeout_s": self.config.request_timeout_s, "max_queue": self.config.max_queue},
        }

    async def infer(self, raw_obs: Any, received: float, transport: str) -> dict:
        """Validate, queue, wait, and build the reply (raises ProtocolError / Overloaded / PolicyFailure)."""
        try:
            obs = protocol.validate_observation(raw_obs, self.manager.active.contract.to_dict())
            validated = time.perf_counter()
            future = self.worker.submit(obs, self.config.request_timeout_s)
            try:
                result = await asyncio.wait_for(asyncio.wrap_future(future), self.config.request_timeout_s)
            except asyncio.TimeoutError:
                future.cancel()
                raise Overloaded(f"no reply within the {self.config.request_timeout_s} s request timeout") from None
        except ProtocolError:
            self.metrics.requests.inc(transport=transport, outcome="invalid")
            raise
        except Overloaded:
            self.metrics.requests.inc(transport=transport, outcome="overloaded")
            raise
        except PolicyFailure:
            self.metrics.requests.inc(transport=transport, outcome="error")
            raise
        reply = dict(result.reply)
        policy_timing = reply.pop("policy_timing", None) or {}
        policy_ms = result.policy_s * 1e3
        timing = {
            "decode_ms": (validated - received) * 1e3,
            "queue_ms": result.queue_s * 1e3,
            "preprocess_ms": float(policy_timing.get("preprocess_ms", 0.0)),
            "infer_ms": float(policy_timing.get("infer_ms", policy_ms)),
            "postprocess_ms": float(policy_timing.get("postprocess_ms", 0.0)),
            "policy_ms": policy_ms,
            "total_ms": (time.perf_counter() - received) * 1e3,
        }
        self.metrics.requests.inc(transport=transport, outcome="ok")
        for stage in ("decode", "queue", "infer", "total"):
            self.metrics.latency.observe(timing[f"{stage}_ms"] / 1e3, stage=stage)
        reply.update(checkpoint_id=result.checkpoint_id, server_timing=timing)
        return reply


class ActivateRequest(BaseModel):
    checkpoint: str = Field(..., min_length=1, max_length=4096,
                            description="Checkpoint directory: absolute path, or a name under --checkpoint-root")
    wait: bool = Field(True, description="Answer after validation (200/422) instead of at once (202)")


def _error(status: int, detail: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field}, status_code=status, headers=headers)


_ERROR_SCHEMA = {"type": "object", "properties": {"detail": {"type": "string"},
                                                  "field": {"type": ["string", "null"]}}}
_OBS_SCHEMA = {
    "type": "object",
    "required": ["obs"],
    "properties": {"obs": {
        "type": "object",
        "description": "observation.images.* as (H, W, 3) uint8 arrays, observation.state as a float list, task",
        "required": ["observation.images.agentview", "observation.state", "task"],
        "properties": {
            "observation.images.agentview": {"type": "array", "items": {"type": "array", "items": {
                "type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}}}},
            "observation.images.wrist": {"type": "array", "items": {"type": "array", "items": {
                "type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}}}},
            "observation.state": {"type": "array", "items": {"type": "number"}},
            "task": {"type": "string"},
        },
    }},
}
_INFER_OPENAPI = {
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": _OBS_SCHEMA},
        protocol.MSGPACK_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
    }},
    "responses": {
        "200": {"description": "actions (chunk_length, 7), checkpoint_id, server_timing",
                "content": {"application/json": {"schema": {"type": "object"}}}},
        **{str(code): {"description": text, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
           for code, text in ((400, "malformed body"), (413, "payload too large"), (415, "unsupported media type"),
                              (422, "invalid observation"), (503, "overloaded"))},
    },
}


def create_app(state: ServerState) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Everything alive now (libraries, the model) lives as long as the server: keep it out of the
        # garbage collector's full passes, which would otherwise stall requests for milliseconds.
        gc.collect()
        gc.freeze()
        state.worker.start()
        try:
            yield
        finally:
            state.worker.stop()
            state.manager.close()

    app = FastAPI(title="WoVR policy server", version="0.1.0", lifespan=lifespan,
                  description="Real-time VLA inference over WebSocket (msgpack-numpy) and HTTP.")
    app.state.wovr = state

    def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if state.api_token is None:
            raise AuthError(403, f"checkpoint management is disabled: start the server with {API_TOKEN_ENV} set")
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise AuthError(401, "missing 'Authorization: Bearer <token>' header")
        if not hmac.compare_digest(credentials.credentials.encode(), state.api_token.encode()):
            raise AuthError(401, "invalid API token")

    @app.exception_handler(AuthError)
    async def _auth_error(_request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.detail, "Authorization", headers)

    @app.exception_handler(ProtocolError)
    async def _protocol_error(_request: Request, exc: ProtocolError) -> JSONResponse:
        return _error(exc.status, exc.detail, exc.field)

    @app.exception_handler(Overloaded)
    async def _overloaded(_request: Request, exc: Overloaded) -> JSONResponse:
        return _error(503, str(exc), None, {"Retry-After": "1"})

    @app.exception_handler(PolicyFailure)
    async def _policy_failure(_request: Request, exc: PolicyFailure) -> JSONResponse:
        return _error(500, str(exc))

    @app.exception_handler(CheckpointError)
    async def _checkpoint_error(_request: Request, exc: CheckpointError) -> JSONResponse:
        return _error(exc.status, str(exc), "checkpoint")

    # ------------------------------------------------------------------------------------------ inference
    @app.websocket("/ws")
    async def websocket_infer(websocket: WebSocket) -> None:
        await websocket.accept()
        state.metrics.connections.add(1)
        try:
            await websocket.send_bytes(protocol.encode({"type": "metadata", "metadata": state.metadata()}))
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await websocket.send_bytes(await _answer(message))
        except WebSocketDisconnect:
            pass
        except Exception as e:  # a client vanishing mid-send must not spill a traceback per robot
            log.info("websocket connection ended: %s: %s", type(e).__name__, e)
        finally:
            state.metrics.connections.add(-1)

    async def _answer(message: dict) -> bytes:
        received = time.perf_counter()
        request_id = None
        try:
            data = message.get("bytes")
            if data is None:
                raise MalformedMessage("send binary msgpack frames, not text", "message")
            request = protocol.decode(data, state.config.max_request_bytes)
            if not isinstance(request, dict):
                raise MalformedMessage(f"expected a map, got {type(request).__name__}", "message")
            request_id = request.get("id") if isinstance(request.get("id"), (int, str)) else None
            kind = request.get("type", "infer")
            if kind == "metadata":
                return protocol.encode({"type": "metadata", "id": request_id, "metadata": state.metadata()})
            if kind != "infer":
                raise MalformedMessage(f"type: unknown message type {kind!r}; use 'infer' or 'metadata'", "type")
            if "obs" not in request:
                raise protocol.InvalidObservation("obs: missing (send {'type': 'infer', 'obs': {...}})", "obs")
            reply = await state.infer(request["obs"], received, "ws")
            return protocol.encode({"type": "result", "id": request_id, **reply})
        except ProtocolError as e:
            error = e.to_dict()
        except (Overloaded, PolicyFailure) as e:
            error = {"status": e.status, "detail": str(e), "field": None}
        except Exception as e:  # a bug here must cost one request a 500, not the robot its connection
            log.exception("websocket request failed")
            error = {"status": 500, "detail": f"internal error: {type(e).__name__}: {e}", "field": None}
        return protocol.encode({"type": "error", "id": request_id, **error})

    @app.post("/infer", openapi_extra=_INFER_OPENAPI, summary="One inference (msgpack or JSON)")
    async def http_infer(request: Request) -> Response:
        received = time.perf_counter()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in JSON_CONTENT_TYPES + MSGPACK_CONTENT_TYPES:
            return _error(415, f"content-type must be application/json or {protocol.MSGPACK_CONTENT_TYPE}, "
                               f"got {content_type or 'none'!r}", "content-type")
        body = await _read_body(request, state.config.max_request_bytes)
        contract = state.manager.active.contract.to_dict()
        if content_type in MSGPACK_CONTENT_TYPES:
            payload = protocol.decode(body)
            obs = payload.get("obs") if isinstance(payload, dict) else None
        else:
            # Parsing ~150k JSON numbers takes tens of ms: keep it off the event loop.
            obs = await asyncio.to_thread(_json_observation, body, contract)
        if obs is None:
            raise protocol.InvalidObservation("obs: missing (send {\"obs\": {...}})", "obs")
        reply = await state.infer(obs, received, "http")
        if content_type in MSGPACK_CONTENT_TYPES:
            return Response(protocol.encode(reply), media_type=protocol.MSGPACK_CONTENT_TYPE)
        return JSONResponse(protocol.to_jsonable(reply))

    # ------------------------------------------------------------------------------------- observability
    @app.get("/healthz", summary="Liveness and the active checkpoint")
    async def healthz() -> JSONResponse:
        alive = state.worker.alive
        body = {"status": "ok" if alive else "inference worker stopped",
                "checkpoint_id": state.manager.active.checkpoint_id, "queue_depth": state.worker.depth,
                "uptime_s": round(time.time() - state.started, 3)}
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/metadata", summary="Checkpoint id, action contract, image sizes, chunk length")
    async def metadata() -> JSONResponse:
        return JSONResponse(protocol.to_jsonable(state.metadata()))

    @app.get("/metrics", summary="Prometheus text format", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    # ---------------------------------------------------------------------------------------- checkpoints
    @app.get("/checkpoints", summary="Active, previous and available checkpoints; last activation")
    async def checkpoints() -> JSONResponse:
        return JSONResponse(protocol.to_jsonable(state.manager.status()))

    @app.post("/checkpoints/activate", dependencies=[Depends(require_token)],
              summary="Load, validate and hot-swap a checkpoint (auth)",
              responses={202: {"description": "loading in the background"},
                         400: {"description": "malformed JSON body"}, 401: {"description": "missing or wrong token"}, 403: {"description": "forbidden"},
                         404: {"description": "no such checkpoint"}, 409: {"description": "busy"},
                         422: {"description": "rejected by validation; the old model keeps serving"}})
    async def activate(body: ActivateRequest) -> JSONResponse:
        path = await asyncio.to_thread(state.manager.resolve, body.checkpoint)
        future = state.manager.start_activation(path)
        if not body.wait:
            return JSONResponse({"status": "loading", "checkpoint": str(path)}, status_code=202)
        result = await asyncio.wrap_future(future)
        return JSONResponse({"status": "active", **result})

    @app.post("/checkpoints/rollback", dependencies=[Depends(require_token)],
              summary="Return to the previous checkpoint (auth)",
              responses={401: {"description": "missing or wrong token"}, 403: {"description": "forbidden"},
                         409: {"description": "no previous checkpoint"}})
    async def rollback() -> JSONResponse:
        return JSONResponse({"status": "active", **state.manager.rollback()})

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedMessage(f"invalid content-length {declared!r}", "content-length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes", "body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes", "body")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_observation(body: bytes, contract: dict) -> Any:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise MalformedMessage(f"body is not valid JSON: {e}", "body") from None
    if not isinstance(payload, dict) or "obs" not in payload:
        return None
    return protocol.observation_from_json(payload["obs"], contract)
