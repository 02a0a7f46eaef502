"""The per-process runtime: what the handlers read, and the loops that keep it current.

One ``Runtime`` per process holds:

- the serving certificate (``tls.ServingTLS``), re-read every ``reload_interval`` seconds;
- the settings (``reload.ConfigWatch``), swapped whole when the mounted file changes; none while
  the file is invalid and no last valid copy exists (unready, ``/mutate`` answers 503);
- with ``--kubeconfig`` or in a cluster, ``cluster.kube.Cluster``: namespace defaults, native
  sidecar support, Events, caBundle.

Shutdown (SIGTERM): ``/readyz`` answers 503 at once and responses carry ``Connection: close``;
connections are still accepted for ``drain_seconds`` (while the endpoint removal propagates);
then the listener closes, requests in flight complete (up to ``shutdown_timeout``) and the
process exits 0. With ``--workers N`` the parent forwards SIGTERM and each worker drains alike.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import uvicorn

from webhook import __version__, compiled, metrics
from webhook.admission import partial
from webhook.admission.decide import Decision, NamespaceAnnotations
from webhook.admission.validate import Verdict
from webhook.engine.inject import ClusterFacts
from webhook.engine.settings import Settings, build_settings, load_settings
from webhook.serving import listener, logs, observe
from webhook.serving.reload import ConfigWatch
from webhook.serving.run import ServeOptions
from webhook.serving.tls import CertificateError, ServingTLS

if TYPE_CHECKING:
    from webhook.cluster.kube import Cluster

log = logging.getLogger("entourage.server")


@dataclass
class ServerState:
    """What the request handlers read; replaced wholesale on every change (never mutated)."""

    settings: Settings | None
    """None: no valid configuration yet (``config_problem`` says why); the endpoints answer 503."""
    cluster: ClusterFacts = field(default_factory=ClusterFacts)
    namespace_annotations: NamespaceAnnotations | None = None
    config_problem: str | None = None
    """What is wrong with the configuration file; None once a valid one is served."""


class Runtime:
    """The per-process state and its background loops."""

    _process: Runtime | None = None

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.tls = self._load_tls()
        self._lock = threading.Lock()
        self.config_watch = None
        if options.config_file:
            self.config_watch = ConfigWatch(options.config_file, self._configured, last_good=options.last_good_config)
            settings, problem = self.config_watch.start()
            self.state = ServerState(settings=settings, config_problem=problem)
        else:
            self.state = ServerState(settings=load_settings(None))  # built-ins, or $ENTOURAGE_CONFIG (must be valid)
        self.draining = False
        self.started = time.monotonic()
        self.cluster: Cluster | None = None  # imported only when the API is used
        self._tasks: list[asyncio.Task[None]] = []
        self.admission_log = logs.AdmissionLog()
        self._warned_unsynced = False
        metrics.CERTIFICATE_EXPIRY.set(self.tls.current.not_after.timestamp())
        metrics.NATIVE_SIDECARS.set(-1)

    def _load_tls(self) -> ServingTLS:
        for _ in range(20):  # the files may be moving under us (kubelet's ..data swap)
            try:
                return ServingTLS(self.options.cert_file, self.options.key_file, self.options.client_ca_file)
            except Exception as error:
                last = error
                if isinstance(error, CertificateError):
                    raise
                time.sleep(0.05)
        raise CertificateError(str(last))

    @classmethod
    def for_process(cls, options: ServeOptions) -> Runtime:
        if cls._process is None or cls._process.options != options:
            logs.configure(options.log_level)  # a spawned worker starts with no logging set up
            listener.configure(max_head_bytes=options.max_header_bytes, head_timeout=options.head_timeout)
            cls._process = cls(options)
        return cls._process

    def _configured(self, settings: Settings) -> None:
        """A valid configuration file was loaded: serve it (and be ready, if that was missing)."""
        if self.state.settings is None:
            log.info("the configuration file is valid now; ready", extra={"fields": {"path": self.options.config_file}})
        partial.prepare(settings.limits)
        self.update(settings=settings, config_problem=None)

    def update(self, **changes: Any) -> None:
        """Swap in a new ServerState (from the event loop or a kube thread)."""
        with self._lock:
            self.state = replace(self.state, **changes)

    # -- readiness --------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        if self.draining:
            return False, "shutting down"
        state = self.state
        if state.settings is None:
            return False, f"no valid configuration: {state.config_problem}"
        if self.cluster is not None and not self.cluster.namespaces.synced.is_set():
            if time.monotonic() - self.started < self.options.sync_timeout:
                return False, "waiting for the first list of namespaces"
            if not self._warned_unsynced:
                self._warned_unsynced = True
                log.warning(
                    "the namespace cache is not synced; serving without namespace defaults until it is",
                    extra={"fields": {"sync_timeout_s": self.options.sync_timeout}},
                )
        return True, "ready" if state.config_problem is None else f"ready, {state.config_problem}"

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
            except Exception:
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
            owner_seconds=options.event_owner_seconds,
            lookups_per_second=options.event_lookups_per_second,
        )
        if options.self_test_seconds > 0:
            from webhook.cluster.selftest import SelfTest

            self.cluster.loops.append(
                SelfTest(
                    api,
                    configuration=options.self_test_configuration,
                    # Without a valid configuration yet: the built-in prefix (the probe pod is only a check).
                    prefix=(self.state.settings or build_settings({})).annotation_prefix,
                    image=options.self_test_image,
                    namespaces=options.self_test_namespaces,
                    every=options.self_test_seconds,
                )
            )
        metrics.NAMESPACE_CACHE_SYNCED.set(0)
        self.update(namespace_annotations=self.cluster.namespaces.get)
        self.cluster.start()

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        if self.state.settings is not None:  # before anything that may call us back (the self-test)
            partial.prepare(self.state.settings.limits)
        self._install_sigterm()
        if self.options.cluster:
            self._start_cluster()
        self._tasks.append(asyncio.create_task(self._watch_files()))
        self._tasks.append(asyncio.create_task(flush_metrics()))
        # Everything allocated so far (modules, settings, the app) lives as long as the process:
        # moving it out of the collector's reach keeps full collections from walking it, which
        # took the 1-connection p99 of large pods from ~20 ms to ~5 ms in `make bench`.
        gc.collect()
        gc.freeze()
        log.info(
            "serving",
            extra={
                "fields": {
                    "version": __version__,
                    "code": compiled.STATUS,
                    "port": self.options.port,
                    "cluster": self.options.cluster,
                    "serial": f"{self.tls.current.serial:x}",
                }
            },
        )

    async def shutdown(self) -> None:
        self.admission_log.flush()
        metrics.ADMISSION_TALLY.flush()
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
        """Called by the endpoint after each answer: metrics, the log line, an Event."""
        observe.admission(decision, self.admission_log, self.cluster.events if self.cluster is not None else None)

    def observe_validation(self, verdict: Verdict) -> None:
        """Called by ``/validate`` after each answer: the metric and the log line."""
        observe.validation(verdict, self.admission_log)


async def flush_metrics() -> None:
    """The admission counts (``metrics.Tally``) reach the instruments, and so other workers'
    scrapes, within ``metrics.FLUSH_SECONDS``."""
    while True:
        await asyncio.sleep(metrics.FLUSH_SECONDS)
        metrics.ADMISSION_TALLY.flush()
