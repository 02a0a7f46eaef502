"""The HTTPS front end: FastAPI app with a lean ``POST /mutate``, health, metrics, uvicorn over TLS.

One ``Runtime`` per process holds what the handlers read and the loops that keep it current:

- the serving certificate (``tls.ServingTLS``), re-read every ``reload_interval`` seconds;
- the settings (``reload.ConfigWatch``), swapped whole when the mounted file changes;
- with ``--kubeconfig`` or in a cluster, ``kube.Cluster``: namespace defaults, native sidecar
  support, Events, caBundle.

Shutdown (SIGTERM): ``/readyz`` answers 503 at once and responses carry ``Connection: close``;
connections are still accepted for ``drain_seconds`` (while the endpoint removal propagates);
then the listener closes, requests in flight complete (up to ``shutdown_timeout``) and the
process exits 0. With ``--workers N`` the parent forwards SIGTERM and each worker drains alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webhook import __version__
from webhook.admission.decide import (
    OUTCOME_DENIED,
    OUTCOME_ERROR,
    OUTCOME_INJECTED,
    Decision,
    NamespaceAnnotations,
)
from webhook.admission.reuse import DEFAULT_SIZE, AnswerCache
from webhook.cluster.rotation import CertificateOptions
from webhook.engine.inject import ClusterFacts
from webhook.engine.settings import Settings, load_settings
from webhook.serving import logs, metrics, openapi
from webhook.serving.endpoint import MutateEndpoint
from webhook.serving.reload import ConfigWatch
from webhook.serving.tls import CertificateError, ServingTLS

log = logging.getLogger("entourage.server")
admissions = logging.getLogger("entourage.admission")


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``entourage serve`` was told; picklable, so every worker process gets a copy."""

    cert_file: str
    key_file: str
    config_file: str | None = None
    host: str = "0.0.0.0"
    port: int = 8443
    workers: int = 1
    drain_seconds: float = 5.0
    """After SIGTERM: keep accepting while the endpoint removal propagates (the chart's preStop
    sleep covers the same window before SIGTERM)."""
    shutdown_timeout: float = 10.0
    """After the drain: how long requests in flight may take before they are cancelled."""
    reload_interval: float = 2.0
    """Seconds between looks at the certificate and configuration files."""
    request_timeout: float = 10.0
    """Seconds a client may take to send a request body (the apiserver's webhook timeout is 10 s by default)."""
    answer_cache_size: int = DEFAULT_SIZE
    """Answers kept for identical requests (webhook/admission/reuse.py); 0: every request runs the engine."""
    log_level: str = "info"
    kubeconfig: str | None = None
    cluster: bool = False
    """Talk to the API (in-cluster or ``kubeconfig``); False: standalone, no API at all."""
    sync_timeout: float = 10.0
    """How long /readyz waits for the first namespace list before serving without namespace defaults."""
    version_check_seconds: float = 600.0
    watch_seconds: int = 300
    events: bool = True
    certificates: CertificateOptions | None = None
    """Self-managed certificates (a Secret) and the caBundles to keep; needs ``cluster``."""

    def ssl_context(self, config: uvicorn.Config, default: Callable[[], Any]) -> Any:
        """uvicorn's ``ssl_context_factory``: runs first in every (worker) process."""
        return Runtime.for_process(self).tls.context


@dataclass
class ServerState:
    """What the request handlers read; replaced wholesale on every change (never mutated)."""

    settings: Settings
    cluster: ClusterFacts = field(default_factory=ClusterFacts)
    namespace_annotations: NamespaceAnnotations | None = None


class Runtime:
    """The per-process state and its background loops."""

    _process: Runtime | None = None

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.tls = self._load_tls()
        self.state = ServerState(settings=load_settings(options.config_file))
        self._lock = threading.Lock()
        self.config_watch = ConfigWatch(options.config_file, lambda settings: self.update(settings=settings)) if options.config_file else None
        self.draining = False
        self.started = time.monotonic()
        self.cluster: Any = None  # kube.Cluster, imported only when the API is used
        self._tasks: list[asyncio.Task[None]] = []
        self.admission_log = logs.AdmissionLog()
        self._warned_unsynced = False
        metrics.CERTIFICATE_EXPIRY.set(self.tls.current.not_after.timestamp())
        metrics.NATIVE_SIDECARS.set(-1)

    def _load_tls(self) -> ServingTLS:
        for _ in range(20):  # the files may be moving under us (kubelet's ..data swap)
            try:
                return ServingTLS(self.options.cert_file, self.options.key_file)
            except Exception as error:  # noqa: BLE001
                last = error
                if isinstance(error, CertificateError):
                    raise
                time.sleep(0.05)
        raise CertificateError(str(last))

    @classmethod
    def for_process(cls, options: ServeOptions) -> Runtime:
        if cls._process is None or cls._process.options != options:
            logs.configure(options.log_level)  # a spawned worker starts with no logging set up
            cls._process = cls(options)
        return cls._process

    def update(self, **changes: Any) -> None:
        """Swap in a new ServerState (from the event loop or a kube thread)."""
        with self._lock:
            self.state = replace(self.state, **changes)

    # -- readiness --------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        if self.draining:
            return False, "shutting down"
        if self.cluster is not None and not self.cluster.namespaces.synced.is_set():
            if time.monotonic() - self.started < self.options.sync_timeout:
                return False, "waiting for the first list of namespaces"
            if not self._warned_unsynced:
                self._warned_unsynced = True
                log.warning(
                    "the namespace cache is not synced; serving without namespace defaults until it is",
                    extra={"fields": {"sync_timeout_s": self.options.sync_timeout}},
                )
        return True, "ready"

    # -- file reloads -----------------------------------------------------------------------

    def check_files(self) -> None:
        try:
            if self.tls.reload():
                metrics.CERTIFICATE_RELOADS.inc()
                metrics.CERTIFICATE_EXPIRY.set(self.tls.current.not_after.timestamp())
        except CertificateError as error:
            metrics.CERTIFICATE_RELOAD_FAILURES.inc()
            log.error("the new certificate cannot be used; still serving the previous one", extra={"fields": {"error": str(error)}})
        if self.config_watch is not None:
            self.config_watch.check()

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(self.options.reload_interval)
            try:
                self.check_files()
            except Exception:  # noqa: BLE001 - a reload bug must not end reloading
                log.exception("reloading files failed")

    # -- cluster ----------------------------------------------------------------------------

    def _start_cluster(self) -> None:
        from webhook.cluster import kube

        options = self.options
        api = kube.Api(options.kubeconfig)
        self.cluster = kube.Cluster(
            api,
            on_native=lambda native: self.update(cluster=ClusterFacts(native_sidecars=native)),
            version_every=options.version_check_seconds,
            watch_seconds=options.watch_seconds,
            events=options.events,
        )
        metrics.NAMESPACE_CACHE_SYNCED.set(0)
        self.update(namespace_annotations=self.cluster.namespaces.get)
        self.cluster.start()

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        self._install_sigterm()
        if self.options.cluster:
            self._start_cluster()
        self._tasks.append(asyncio.create_task(self._watch_files()))
        # Everything allocated so far (modules, settings, the app) lives as long as the process:
        # moving it out of the collector's reach keeps full collections from walking it, which
        # took the 1-connection p99 of large pods from ~20 ms to ~5 ms in `make bench`.
        gc.collect()
        gc.freeze()
        log.info(
            "serving",
            extra={"fields": {"version": __version__, "port": self.options.port, "cluster": self.options.cluster, "serial": f"{self.tls.current.serial:x}"}},
        )

    async def shutdown(self) -> None:
        self.admission_log.flush()
        for task in self._tasks:
            task.cancel()
        if self.cluster is not None:
            self.cluster.stop()
        metrics.process_exited(os.getpid())

    def _install_sigterm(self) -> None:
        """Replace uvicorn's SIGTERM handler (it stops listening at once) by drain-then-stop."""
        if threading.current_thread() is not threading.main_thread():
            return
        original = signal.getsignal(signal.SIGTERM)
        if not callable(original):
            return
        loop = asyncio.get_running_loop()

        def stop() -> None:
            log.info("drain period over; closing the listener and finishing requests in flight")
            server = getattr(original, "__self__", None)
            if isinstance(server, uvicorn.Server):
                server.should_exit = True  # a graceful exit with status 0, not a re-raised signal
            else:
                original(signal.SIGTERM, None)

        def on_sigterm(signum: int, frame: Any) -> None:
            if self.draining:
                return
            self.draining = True
            log.info("SIGTERM: unready; draining", extra={"fields": {"drain_seconds": self.options.drain_seconds}})
            loop.call_soon_threadsafe(loop.call_later, self.options.drain_seconds, stop)

        signal.signal(signal.SIGTERM, on_sigterm)

    # -- per admission ----------------------------------------------------------------------

    def observe(self, decision: Decision) -> None:
        """Called by the fast path after each answer: metrics, the log line, an Event."""
        metrics.observe(decision)
        fields = {
            "uid": decision.uid,
            "namespace": decision.namespace,
            "pod": decision.pod_name,
            "decision": decision.outcome,
            "reason": decision.reason,
            "components": decision.components,
            "duration_ms": round(decision.duration * 1000, 3),
        }
        if decision.outcome == OUTCOME_ERROR:
            admissions.error("admission", extra={"fields": fields})
        elif admissions.isEnabledFor(logging.INFO):
            self.admission_log.write(fields)
        if (
            self.cluster is not None
            and self.cluster.events is not None
            and not decision.dry_run  # sideEffects: None promises nothing is written for a dry run
            and decision.outcome in (OUTCOME_INJECTED, OUTCOME_DENIED, OUTCOME_ERROR)
        ):
            self._event(decision)

    def _event(self, decision: Decision) -> None:
        involved: dict[str, str]
        if decision.owner is not None:
            involved = {**decision.owner, "namespace": decision.namespace}
        else:
            involved = {"apiVersion": "v1", "kind": "Namespace", "name": decision.namespace}
        pod_name = decision.pod_name or "(unnamed)"
        if decision.outcome == OUTCOME_INJECTED:
            reason, warning = "Injected", False
            message = f"pod {pod_name}: injected {', '.join(decision.components)}"
        else:
            status = decision.review.get("response", {}).get("status", {})
            reason, warning = ("InjectionDenied" if decision.outcome == OUTCOME_DENIED else "InjectionFailed"), True
            message = f"pod {pod_name}: {status.get('message') or decision.reason}"
        self.cluster.events.record(namespace=decision.namespace, involved=involved, reason=reason, message=message, warning=warning)


# ---------------------------------------------------------------------------------------------
# The ASGI app


def create_app(runtime: Runtime) -> ASGIApp:
    """The ASGI app: ``/mutate`` goes to the lean MutateEndpoint, the rest to FastAPI."""

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

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/mutate":
            await app(scope, receive, send)
            return
        if runtime.draining:
            send = _closing(send)
        await mutate(scope, receive, send)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """The process is alive and its event loop answers."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", responses={503: {"description": "Not ready (starting, or shutting down)"}})
    async def readyz() -> JSONResponse:
        """Certificates and configuration loaded, the namespace cache synced (or given up on), not shutting down."""
        ready, reason = runtime.readiness()
        return JSONResponse({"status": "ready" if ready else "unready", "reason": reason}, status_code=200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return dispatch


def _closing(send: Send) -> Send:
    """While draining: ask keep-alive clients to reconnect (to a replica that is not going away)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return wrapped


def app_factory() -> ASGIApp:
    """uvicorn's app factory (``webhook.serving.server:app_factory``): the runtime of this process."""
    runtime = Runtime._process
    if runtime is None:  # pragma: no cover - the ssl_context_factory always runs first
        raise RuntimeError("entourage: no serving runtime in this process")
    return create_app(runtime)


def serve(options: ServeOptions) -> None:
    """Run uvicorn over TLS until SIGTERM (drained) or SIGINT."""
    logs.configure(options.log_level)
    options, certificates = _manage_certificates(options)
    Runtime.for_process(options)  # fail fast on bad certificates or configuration, before forking
    created = None
    if options.workers > 1 and not os.environ.get(metrics.MULTIPROCESS_ENV):
        created = os.environ[metrics.MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="entourage-metrics-")
    config = uvicorn.Config(
        "webhook.serving.server:app_factory",
        factory=True,
        host=options.host,
        port=options.port,
        workers=options.workers,
        ssl_context_factory=options.ssl_context,
        # Explicit: "auto" would silently fall back to asyncio and h11 (about a quarter of the
        # throughput) if uvloop or httptools went missing; this way start-up fails instead.
        loop="uvloop",
        http="httptools",
        access_log=False,  # one JSON line per admission instead; the access log costs most of the throughput
        log_config=None,
        log_level=options.log_level,
        server_header=False,
        timeout_keep_alive=75,  # longer than the apiserver's idle connection timeout
        timeout_graceful_shutdown=max(1, int(options.shutdown_timeout)),
        lifespan="on",
    )
    try:
        if options.workers > 1:
            from uvicorn.supervisors import Multiprocess

            sock = config.bind_socket()
            try:
                Multiprocess(config, sockets=[sock]).run()
            finally:
                if created:
                    shutil.rmtree(created, ignore_errors=True)
        else:
            uvicorn.Server(config).run()
    finally:
        if certificates is not None:
            certificates.stop()


def _manage_certificates(options: ServeOptions) -> tuple[ServeOptions, Any]:
    """Before serving: in the self-managed mode read or create the certificate Secret and serve
    from it; keep the webhook configurations' caBundle. The loop runs in this (parent) process
    only; with ``--workers N`` the workers reload the pair from the directory it writes."""
    wanted = options.certificates
    if wanted is None or not options.cluster:
        return options, None
    from webhook.cluster import certificates, kube

    api = kube.Api(options.kubeconfig)
    manager: Any
    if wanted.secret is not None:
        manager = certificates.CertificateManager(api, wanted, every=options.reload_interval)
        manager.bootstrap()
        options = replace(options, cert_file=manager.cert_file, key_file=manager.key_file)
    else:
        manager = certificates.CAFileBundle(api, wanted, every=options.reload_interval)
    manager.start()
    return options, manager
