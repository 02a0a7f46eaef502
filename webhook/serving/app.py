"""The ASGI app: ``POST /mutate`` and ``POST /validate`` to lean endpoints, health, readiness and metrics to FastAPI.

With a metrics port (``--metrics-port``) the routes split by the port a request arrived on: that
port serves ``/metrics``, ``/healthz`` and ``/readyz`` alone, and ``/metrics`` is served nowhere
else (the webhook port is open to anyone who can reach the Service; the metrics port only to the
NetworkPolicy's ``metricsFrom``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webhook import __version__, metrics
from webhook.admission.reuse import AnswerCache
from webhook.serving import openapi
from webhook.serving.endpoint import MutateEndpoint
from webhook.serving.runtime import Runtime
from webhook.serving.validation import ValidateEndpoint


def create_app(runtime: Runtime) -> ASGIApp:
    """The ASGI app: ``/mutate`` and ``/validate`` go to their lean endpoints, the rest to FastAPI."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.startup()
        try:
            yield
        finally:
            await runtime.shutdown()

    app = FastAPI(title="Entourage", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.runtime = runtime
    openapi.install(app)
    mutate = MutateEndpoint(
        lambda: runtime.state,
        runtime.observe,
        body_timeout=runtime.options.request_timeout,
        answers=AnswerCache(runtime.options.answer_cache_size),
    )

    validate = ValidateEndpoint(lambda: runtime.state, runtime.observe_validation, body_timeout=runtime.options.request_timeout)
    lean: dict[str, ASGIApp] = {"/mutate": mutate, "/validate": validate}
    metrics_port = runtime.options.metrics_port
    not_found = PlainTextResponse("Not Found", status_code=404)

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            metrics_port is not None
            and scope["type"] == "http"
            and not _served(scope["path"], on_metrics_port=_port(scope) == metrics_port)
        ):
            await not_found(scope, receive, send)
            return
        endpoint = lean.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await app(scope, receive, send)
            return
        if runtime.draining:
            send = _closing(send)
        await endpoint(scope, receive, send)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """The process is alive and its event loop answers."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", responses={503: {"description": "Not ready (starting, no valid configuration, or shutting down)"}})
    async def readyz() -> JSONResponse:
        """Certificates and a valid configuration loaded, the namespace cache synced (or given up on), not shutting down."""
        ready, reason = runtime.readiness()
        return JSONResponse({"status": "ready" if ready else "unready", "reason": reason}, status_code=200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return dispatch


def _port(scope: Scope) -> int | None:
    server = scope.get("server")
    return int(server[1]) if server else None


def _served(path: str, *, on_metrics_port: bool) -> bool:
    """With a metrics port: it serves /metrics and health alone, and /metrics is served nowhere else."""
    return path in ("/metrics", "/healthz", "/readyz") if on_metrics_port else path != "/metrics"


def _closing(send: Send) -> Send:
    """While draining: ask keep-alive clients to reconnect (to a replica that is not going away)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return wrapped


def app_factory() -> ASGIApp:
    """uvicorn's app factory (``webhook.serving.app:app_factory``): the runtime of this process."""
    runtime = Runtime._process
    if runtime is None:  # pragma: no cover - the ssl_context_factory always runs first
        raise RuntimeError("entourage: no serving runtime in this process")
    return create_app(runtime)
