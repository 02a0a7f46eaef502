"""The HTTPS front end: FastAPI app with a lean ``POST /mutate``, health endpoints, uvicorn over TLS."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
import uvicorn
from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from webhook import __version__
from webhook.admission import Decision, admit, bad_request, decode
from webhook.admission import NamespaceAnnotations
from webhook.config import Settings
from webhook.errors import ReviewError
from webhook.inject import ClusterFacts

MAX_BODY = 3 * 1024 * 1024 + 64 * 1024
"""The apiserver's own request limit is 3 MiB; the review wrapper adds a little."""

log = logging.getLogger("entourage.server")


@dataclass
class ServerState:
    """What the request handlers read; replaced wholesale on configuration reload."""

    settings: Settings
    cluster: ClusterFacts = field(default_factory=ClusterFacts)
    namespace_annotations: NamespaceAnnotations | None = None
    ready: bool = True


def _json(status: int, body: object) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def _read_body(request: Request) -> bytes | Response:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        return _json(413, bad_request(f"the body is larger than {MAX_BODY} bytes"))
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return _json(413, bad_request(f"the body is larger than {MAX_BODY} bytes"))
            chunks.append(chunk)
    except ClientDisconnect:
        return _json(400, bad_request("the client disconnected before sending the whole body"))
    return b"".join(chunks)


def create_app(state: ServerState) -> FastAPI:
    """The ASGI app; ``state`` may be swapped by the caller (configuration reload)."""
    app = FastAPI(title="Entourage", version=__version__, docs_url=None, redoc_url=None)
    app.state.entourage = state

    async def mutate(request: Request) -> Response:
        # A plain Starlette endpoint: no pydantic model of the review or the pod on the hot path.
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return _json(415, bad_request(f"expected Content-Type application/json, got {content_type[:64]!r}"))
        body = await _read_body(request)
        if isinstance(body, Response):
            return body
        current: ServerState = app.state.entourage
        try:
            decision = admit(
                decode(body),
                current.settings,
                namespace_annotations=current.namespace_annotations,
                cluster=current.cluster,
            )
        except ReviewError as error:
            return _json(400, bad_request(str(error)))
        _log_decision(decision)
        return _json(200, decision.review)

    app.router.add_route("/mutate", mutate, methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """The process is alive and its event loop answers."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Certificates and configuration are loaded and the server is not shutting down."""
        current: ServerState = app.state.entourage
        return JSONResponse({"status": "ready" if current.ready else "unready"}, status_code=200 if current.ready else 503)

    return app


def _log_decision(decision: Decision) -> None:
    """One structured line per admission: never the pod spec or env values."""
    if log.isEnabledFor(logging.INFO):
        log.info(
            orjson.dumps(
                {
                    "msg": "admission",
                    "uid": decision.uid,
                    "namespace": decision.namespace,
                    "pod": decision.pod_name,
                    "decision": decision.outcome,
                    "reason": decision.reason,
                    "components": decision.components,
                    "duration_ms": round(decision.duration * 1000, 3),
                }
            ).decode()
        )


def serve(
    state: ServerState, *, cert_file: str, key_file: str, host: str = "0.0.0.0", port: int = 8443, log_level: str = "info"
) -> None:
    """Run uvicorn over TLS until interrupted."""
    logging.basicConfig(level=log_level.upper(), format="%(message)s")
    config = uvicorn.Config(
        create_app(state),
        host=host,
        port=port,
        ssl_certfile=cert_file,
        ssl_keyfile=key_file,
        access_log=False,
        log_level=log_level,
        server_header=False,
        timeout_keep_alive=75,
    )
    uvicorn.Server(config).run()
