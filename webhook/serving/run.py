"""Running the server: what ``entourage serve`` was told, and uvicorn over TLS with it.

Each uvicorn worker is a spawned process that gets a pickled copy of ``ServeOptions``; its first
call into our code is the ``ssl_context_factory``, so that is where a worker builds its
``Runtime`` (``Runtime.for_process``), and the app factory then serves that same runtime.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import uvicorn

from webhook import metrics
from webhook.admission.reuse import DEFAULT_SIZE
from webhook.cluster.rotation import CertificateOptions
from webhook.serving import logs
from webhook.serving.listener import ListenerConfig

DUAL_STACK = "::"
"""The listen address that means "every address, IPv6 and IPv4"."""


def dual_stack_socket(port: int) -> socket.socket:
    """A listening socket on every IPv6 and IPv4 address, for ``--host ::``.

    asyncio's ``create_server`` (and so uvicorn) turns IPV6_V6ONLY on for an IPv6 socket, so a
    plain ``::`` refuses IPv4 clients, and ``0.0.0.0`` refuses IPv6 ones: neither works in every
    cluster (IPv4, IPv6 or dual-stack Services). One IPv6 socket with IPV6_V6ONLY off takes both
    (IPv4 clients appear as ``::ffff:a.b.c.d``). A kernel without IPv6 gets ``0.0.0.0`` instead.
    """
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError as error:
        logging.getLogger("entourage").warning("no IPv6 (%s): listening on 0.0.0.0 only", error)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address: tuple[str, int] = ("0.0.0.0", port)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address = (DUAL_STACK, port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own bind_socket
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)  # the worker processes serve on it too
    return sock


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``entourage serve`` was told; picklable, so every worker process gets a copy."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    """PEM CA bundle for client certificates; when set, only clients with a certificate it
    signed (the apiserver, configured through its AdmissionConfiguration) complete a handshake."""
    config_file: str | None = None
    last_good_config: str | None = None
    """Where to keep a copy of each valid configuration loaded, served at start when ``config_file``
    is invalid (webhook/serving/reload.py); None: an invalid file at start leaves the process unready."""
    host: str = DUAL_STACK
    """Listen address; ``::`` (the default) is one socket for IPv6 and IPv4 (``dual_stack_socket``)."""
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
    max_header_bytes: int = 64 * 1024
    """Bytes a request head (request line and headers) may have; past it: 431 and close."""
    head_timeout: float = 10.0
    """Seconds from a connection's (or a keep-alive request's) first byte to the end of its head."""
    max_connections: int = 512
    """Connections per process, established or in their TLS handshake; past it the listener stops
    accepting and new ones wait in the kernel's backlog (the established ones keep working).
    511 connections holding unfinished 60 KB heads took 115 MiB, within the chart's 256 MiB."""
    handshake_timeout: float = 5.0
    """Seconds for a TLS handshake, opening or closing (uvloop's own default is 60 s)."""
    keep_alive_timeout: float = 100.0
    """Seconds an idle keep-alive connection stays open: longer than the apiserver's own idle
    timeout for webhook connections (90 s, Go's http.Transport), so the apiserver always closes an
    idle connection first and never sends a request on one we are closing (Go does not retry a
    POST that failed that way). An idle connection holds a slot of ``max_connections``."""
    metrics_port: int | None = None
    """A second port for ``/metrics`` (served only there), ``/healthz`` and ``/readyz``, asking for
    no client certificate: the kubelet's probes and Prometheus work with ``client_ca_file``, and a
    NetworkPolicy admits scrapers to it apart from the webhook port. None: all on ``port``."""
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
    event_owner_seconds: float = 60.0
    """How long the answer to "does this Event's owner exist?" is remembered, found or not."""
    event_lookups_per_second: float = 10.0
    """Owner lookups (GETs) the Events worker may make a second; Events that would need more are
    dropped, so forged requests naming unknown owners cost the API server at most this."""
    certificates: CertificateOptions | None = None
    """Self-managed certificates (a Secret) and the caBundles to keep; needs ``cluster``."""
    self_test_seconds: float = 60.0
    """Seconds between two self-test rounds (webhook/cluster/selftest.py); 0: off. Needs ``cluster``."""
    self_test_configuration: str = "entourage"
    """The MutatingWebhookConfiguration whose namespaceSelector chooses the probed namespaces."""
    self_test_namespaces: tuple[str, ...] = ()
    """Probe these namespaces instead of the selected ones."""
    self_test_image: str = "registry.k8s.io/pause:3.10"
    """The probe pod's image: a dry run pulls nothing, but policies may check the registry."""

    def ssl_context(self, config: uvicorn.Config, default: Callable[[], Any]) -> Any:
        """uvicorn's ``ssl_context_factory``: the first call into our code in every (worker)
        process, so it builds that process's Runtime."""
        from webhook.serving.runtime import Runtime

        return Runtime.for_process(self).tls.context

    def open_ssl_context(self) -> Any:
        """The metrics port's TLS context: the same certificate, no client certificate asked for."""
        from webhook.serving.runtime import Runtime

        return Runtime.for_process(self).tls.open_context


def serve(options: ServeOptions) -> None:
    """Run uvicorn over TLS until SIGTERM (drained) or SIGINT."""
    logs.configure(options.log_level)
    from webhook.serving.runtime import Runtime

    options, certificates = _manage_certificates(options)
    Runtime.for_process(options)  # fail fast on bad certificates or configuration, before forking
    created = None
    if options.workers > 1 and not os.environ.get(metrics.MULTIPROCESS_ENV):
        created = os.environ[metrics.MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="entourage-metrics-")
    config = ListenerConfig(
        "webhook.serving.app:app_factory",
        max_connections=options.max_connections,
        handshake_timeout=options.handshake_timeout,
        metrics_port=options.metrics_port,
        open_ssl_context_factory=options.open_ssl_context,
        factory=True,
        host=options.host,
        port=options.port,
        workers=options.workers,
        ssl_context_factory=options.ssl_context,
        access_log=False,  # one JSON line per admission instead; the access log costs most of the throughput
        log_config=None,
        log_level=options.log_level,
        server_header=False,
        timeout_keep_alive=max(1, round(options.keep_alive_timeout)),
        timeout_graceful_shutdown=max(1, int(options.shutdown_timeout)),
        lifespan="on",
    )
    # Our own sockets, always: the listener (BoundedLoop) accepts from sockets handed to it.
    dual = options.host == DUAL_STACK
    sockets = [dual_stack_socket(options.port) if dual else config.bind_socket()]
    if options.metrics_port is not None:
        sockets.append(dual_stack_socket(options.metrics_port) if dual else _bind(options.host, options.metrics_port))
    try:
        if options.workers > 1:
            from uvicorn.supervisors import Multiprocess

            try:
                Multiprocess(config, sockets=sockets).run()
            finally:
                if created:
                    shutil.rmtree(created, ignore_errors=True)
        else:
            uvicorn.Server(config).run(sockets=sockets)
    finally:
        if certificates is not None:
            certificates.stop()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket like uvicorn's own (``Config.bind_socket``), for the metrics port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


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
