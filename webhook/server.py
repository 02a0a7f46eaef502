"""The HTTPS front end: FastAPI app with a lean ``POST /mutate``, health endpoints, uvicorn over TLS."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
import uvicorn
from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook import __version__
from webhook.admission import Decision, NamespaceAnnotations
from webhook.config import Settings
from webhook.fastpath import MutateEndpoint
from webhook.inject import ClusterFacts

log = logging.getLogger("entourage.server")


@dataclass
class ServerState:
    """What the request handlers read; replaced wholesale on configuration reload."""

    settings: Settings
    cluster: ClusterFacts = field(default_factory=ClusterFacts)
    namespace_annotations: NamespaceAnnotations | None = None
    ready: bool = True


def create_app(state: ServerState) -> ASGIApp:
    """The ASGI app: ``/mutate`` goes to the lean MutateEndpoint, the rest to FastAPI.

    ``app.state.entourage`` may be swapped by the caller (configuration reload).
    """
    app = FastAPI(title="Entourage", version=__version__, docs_url=None, redoc_url=None)
    app.state.entourage = state
    mutate = MutateEndpoint(lambda: app.state.entourage, _log_decision)

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/mutate":
            await mutate(scope, receive, send)
        else:
            await app(scope, receive, send)

    dispatch.state = app.state  # type: ignore[attr-defined]

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """The process is alive and its event loop answers."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Certificates and configuration are loaded and the server is not shutting down."""
        current: ServerState = app.state.entourage
        return JSONResponse({"status": "ready" if current.ready else "unready"}, status_code=200 if current.ready else 503)

    return dispatch


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
