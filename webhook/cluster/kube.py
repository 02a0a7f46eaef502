"""Everything that talks to the Kubernetes API: the ONLY module that imports ``kubernetes``.

The admission path never calls the API. Background threads keep what it needs in memory:

    Cluster
    ├── NamespaceCache     list + watch of Namespaces → annotations by name (namespace defaults)
    ├── VersionCheck       /version and every node's kubelet → can pods use native sidecars?
    └── EventRecorder      queued, rate-limited core/v1 Events; a full queue drops, never blocks

(The certificates and the webhook configurations' caBundle: certificates.py and cabundle.py.)

Every loop survives API errors: it logs, counts ``entourage_kube_api_errors_total``, keeps what
it last knew and retries with backoff. Only raw JSON is used (no generated models), so what we
read is exactly what the apiserver sent.
"""

from __future__ import annotations

import datetime
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.watch.watch import iter_resp_lines

from webhook import metrics

log = logging.getLogger("entourage.kube")

NATIVE_SIDECARS_SINCE = (1, 29)
"""Native sidecars (restartPolicy: Always init containers) are on by default from 1.29."""
_VERSION = re.compile(r"^v?(\d+)\.(\d+)")
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds for ordinary calls."""


class ApiError(Exception):
    """A Kubernetes API call failed; ``status`` is the HTTP code (0 when there was no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Api:
    """A thin raw-JSON client over the kubernetes package's configuration, auth and TLS."""

    def __init__(self, kubeconfig: str | None = None) -> None:
        configuration = k8s.Configuration()
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)
        self.client = k8s.ApiClient(configuration)
        self.client.user_agent = "entourage"

    def close(self) -> None:
        self.client.close()

    def _send(
        self, method: str, path: str, *, query: list[tuple[str, Any]] | None = None, body: Any = None,
        content_type: str | None = None, timeout: Any = TIMEOUT,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, body, post = self.client.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            return self.client.call_api(method, url, headers, body, post, _request_timeout=timeout).response
        except Exception as error:  # urllib3 errors, timeouts, refused connections
            raise ApiError(f"{method} {path}: {type(error).__name__}: {error}") from None

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One call; the decoded JSON answer, or ApiError naming the status and message."""
        response = self._send(method, path, **kwargs)
        try:
            data = response.data
        finally:
            response.release_conn()
        if response.status >= 300:
            raise ApiError(f"{method} {path}: HTTP {response.status}: {_message(data)}", response.status)
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ApiError(f"{method} {path}: the answer is not JSON") from None
        if not isinstance(decoded, dict):
            raise ApiError(f"{method} {path}: expected a JSON object")
        return decoded

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None while it does not exist (404)."""
        try:
            return self.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list_all(self, path: str, *, limit: int = 500, label_selector: str = "") -> tuple[list[dict[str, Any]], str]:
        """Every item of a list (following ``continue``) and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query: list[tuple[str, Any]] = [("limit", limit)] + ([("continue", token)] if token else [])
            if label_selector:
                query.append(("labelSelector", label_selector))
            page = self.request("GET", path, query=query)
            items.extend(page.get("items") or [])
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or ""
            if not token:
                return items, str(metadata.get("resourceVersion") or "")

    def watch(self, path: str, resource_version: str, *, seconds: int, field_selector: str | None = None) -> Iterator[dict[str, Any]]:
        """The watch event stream from ``resource_version`` for up to ``seconds``."""
        query = [("watch", "true"), ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"), ("timeoutSeconds", seconds)]
        if field_selector:
            query.append(("fieldSelector", field_selector))
        response = self._send("GET", path, query=query, timeout=(5.0, seconds + 30.0))
        try:
            if response.status >= 300:
                raise ApiError(f"watch {path}: HTTP {response.status}: {_message(response.data)}", response.status)
            try:
                for line in iter_resp_lines(response):
                    yield orjson.loads(line)
            except (ApiError, GeneratorExit):
                raise
            except Exception as error:  # the connection broke mid-stream (urllib3 ProtocolError, timeouts)
                raise ApiError(f"watch {path}: {type(error).__name__}: {error}") from None
        finally:
            response.release_conn()


def _message(data: bytes) -> str:
    try:
        return str(orjson.loads(data).get("message", ""))[:300]
    except (orjson.JSONDecodeError, AttributeError):
        return data[:300].decode("utf-8", "replace")


class _Loop(threading.Thread):
    """A daemon thread that runs ``step`` until stopped, backing off after failures."""

    def __init__(self, name: str, operation: str) -> None:
        super().__init__(name=name, daemon=True)
        self.operation = operation
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def failed(self, error: Exception, attempt: int) -> None:
        metrics.KUBE_ERRORS.labels(self.operation).inc()
        delay = min(30.0, 0.5 * 2**attempt)
        log.warning("Kubernetes API call failed; retrying", extra={"fields": {"operation": self.operation, "error": str(error), "retry_in_s": delay}})
        self.stopping.wait(delay)


class NamespaceCache(_Loop):
    """Annotations of every Namespace, by name, kept current by a watch."""

    def __init__(self, api: Api, *, watch_seconds: int = 300) -> None:
        super().__init__("entourage-namespaces", "watch_namespaces")
        self.api, self.watch_seconds = api, watch_seconds
        self.annotations: dict[str, Mapping[str, str]] = {}
        self.synced = threading.Event()

    def get(self, namespace: str) -> Mapping[str, str] | None:
        """What the admission path calls: a dict lookup, never an API call."""
        return self.annotations.get(namespace)

    @staticmethod
    def _annotations(namespace: Mapping[str, Any]) -> dict[str, str]:
        annotations = (namespace.get("metadata") or {}).get("annotations") or {}
        return {key: str(value) for key, value in annotations.items() if key not in _DROPPED_ANNOTATIONS}

    def run(self) -> None:
        attempt = 0
        while not self.stopping.is_set():
            try:
                items, version = self.api.list_all("/api/v1/namespaces")
                self.annotations = {item["metadata"]["name"]: self._annotations(item) for item in items}
                if not self.synced.is_set():
                    log.info("namespace cache synced", extra={"fields": {"namespaces": len(items)}})
                self.synced.set()
                metrics.NAMESPACE_CACHE_SYNCED.set(1)
                attempt = 0
                while not self.stopping.is_set():
                    version = self._watch(version)
            except _Expired:
                log.info("namespace watch expired; listing again")
            except Exception as error:  # noqa: BLE001 - the loop must outlive any failure
                self.failed(error, attempt)
                attempt = min(attempt + 1, 6)

    def _watch(self, version: str) -> str:
        try:
            for event in self.api.watch("/api/v1/namespaces", version, seconds=self.watch_seconds):
                if self.stopping.is_set():
                    break
                kind, item = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if item.get("code") == 410:
                        raise _Expired()
                    raise ApiError(f"watch namespaces: {item.get('message', 'error event')}", int(item.get("code") or 0))
                metadata = item.get("metadata") or {}
                version = str(metadata.get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED"):
                    self.annotations = {**self.annotations, metadata["name"]: self._annotations(item)}
                elif kind == "DELETED":
                    self.annotations = {k: v for k, v in self.annotations.items() if k != metadata.get("name")}
        except ApiError as error:
            if error.status == 410:
                raise _Expired() from None
            raise
        return version


class _Expired(Exception):
    """The watch's resourceVersion is too old (HTTP 410 Gone): list again."""


def parse_version(text: str) -> tuple[int, int] | None:
    """``v1.29.3-eks-1234`` → (1, 29); None for anything unparseable."""
    match = _VERSION.match(text.strip())
    return (int(match[1]), int(match[2])) if match else None


class VersionCheck(_Loop):
    """Native sidecars only when the apiserver and every node's kubelet are 1.29 or newer."""

    def __init__(self, api: Api, on_change: Callable[[bool | None], None], *, every: float = 600.0) -> None:
        super().__init__("entourage-versions", "check_versions")
        self.api, self.on_change, self.every = api, on_change, every
        self.native: bool | None = None

    def check(self) -> bool:
        server = parse_version(str(self.api.request("GET", "/version").get("gitVersion", "")))
        nodes, _ = self.api.list_all("/api/v1/nodes")
        kubelets = [parse_version(str(((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""))) for node in nodes]
        old = [node["metadata"]["name"] for node, version in zip(nodes, kubelets) if version is None or version < NATIVE_SIDECARS_SINCE]
        native = server is not None and server >= NATIVE_SIDECARS_SINCE and not old
        if native != self.native:
            log.info(
                "native sidecars resolved",
                extra={"fields": {"native_sidecars": native, "apiserver": server and ".".join(map(str, server)), "old_kubelets": old[:20]}},
            )
        return native

    def run(self) -> None:
        attempt = 0
        while not self.stopping.is_set():
            try:
                native = self.check()
            except Exception as error:  # noqa: BLE001 - keep what we last knew
                self.failed(error, attempt)
                attempt = min(attempt + 1, 6)
                continue
            attempt = 0
            if native != self.native:
                self.native = native
                metrics.NATIVE_SIDECARS.set(1 if native else 0)
                self.on_change(native)
            self.stopping.wait(self.every)


RATE_LIMIT_ENTRIES = 4096
"""Objects whose last Event time is remembered (each key: namespace, kind, name, reason, each at
most 253 characters): about 4 MiB at worst, usually far less."""


class EventRecorder(_Loop):
    """Kubernetes Events for admissions; ``record`` never blocks and never raises."""

    def __init__(self, api: Api, *, per_object_seconds: float = 60.0, capacity: int = 256) -> None:
        super().__init__("entourage-events", "create_event")
        self.api = api
        self.per_object_seconds = per_object_seconds
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=capacity)
        self.last: dict[tuple[str, ...], float] = {}
        self.instance = socket.gethostname()

    def record(self, *, namespace: str, involved: Mapping[str, Any], reason: str, message: str, warning: bool) -> bool:
        """Queue one Event; False when rate-limited or the queue is full (dropped)."""
        key = (namespace, str(involved.get("kind")), str(involved.get("name")), reason)
        now = time.monotonic()
        if now - self.last.get(key, -1e9) < self.per_object_seconds:
            metrics.EVENTS.labels("rate_limited").inc()
            return False
        if len(self.last) >= RATE_LIMIT_ENTRIES:
            # Forget what is past its window, then the oldest: bounded by entries, and by bytes
            # since every name in a key is a checked Kubernetes name (serving/observe.py).
            self.last = {k: t for k, t in self.last.items() if now - t < self.per_object_seconds}
            while len(self.last) >= RATE_LIMIT_ENTRIES:
                del self.last[next(iter(self.last))]
        self.last.pop(key, None)  # re-inserted last: the dict stays in time order
        self.last[key] = now
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{involved.get('name') or namespace}.", "namespace": namespace},
            "involvedObject": dict(involved),
            "reason": reason,
            "message": message[:1024],  # fixed words and checked names (serving/observe.py)
            "type": "Warning" if warning else "Normal",
            "source": {"component": "entourage"},
            "reportingComponent": "entourage",
            "reportingInstance": self.instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            metrics.EVENTS.labels("dropped").inc()
            return False
        return True

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                event = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.api.request("POST", f"/api/v1/namespaces/{event['metadata']['namespace']}/events", body=event)
                metrics.EVENTS.labels("sent").inc()
            except Exception as error:  # noqa: BLE001 - an Event is never worth a dead thread
                metrics.EVENTS.labels("failed").inc()
                metrics.KUBE_ERRORS.labels(self.operation).inc()
                log.warning("could not create an Event", extra={"fields": {"error": str(error), "reason": event["reason"]}})


class Cluster:
    """The background loops of one process, started and stopped together."""

    def __init__(
        self,
        api: Api,
        *,
        on_native: Callable[[bool | None], None],
        version_every: float = 600.0,
        watch_seconds: int = 300,
        events: bool = True,
    ) -> None:
        self.api = api
        self.namespaces = NamespaceCache(api, watch_seconds=watch_seconds)
        self.versions = VersionCheck(api, on_native, every=version_every)
        self.events = EventRecorder(api) if events else None
        self.loops: list[_Loop] = [loop for loop in (self.namespaces, self.versions, self.events) if loop is not None]

    def start(self) -> None:
        for loop in self.loops:
            loop.start()

    def stop(self) -> None:
        for loop in self.loops:
            loop.stop()


def list_pods_and_namespaces(api: Api, namespace: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Mapping[str, str]]]:
    """For ``entourage audit``: the pods (of one namespace or all) and every namespace's annotations."""
    pods, _ = api.list_all(f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods")
    if namespace:
        found = api.request("GET", f"/api/v1/namespaces/{namespace}")
        return pods, {namespace: NamespaceCache._annotations(found)}
    namespaces, _ = api.list_all("/api/v1/namespaces")
    return pods, {item["metadata"]["name"]: NamespaceCache._annotations(item) for item in namespaces}
