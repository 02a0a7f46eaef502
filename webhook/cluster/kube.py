"""Everything that talks to the Kubernetes API: the ONLY module that imports ``kubernetes``.

The admission path never calls the API. Background threads keep what it needs in memory:

    Cluster
    ├── NamespaceCache     list + watch of Namespaces → annotations by name (namespace defaults)
    ├── VersionCheck       /version and every node's kubelet → can pods use native sidecars?
    └── EventRecorder      queued, rate-limited core/v1 Events, only on objects the API shows exist

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
from webhook.engine.caches import BoundedCache
from webhook.engine.policy import Namespace

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
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Any = TIMEOUT,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, body, post = self.client.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            return self.client.call_api(method, url, headers, body, post, _request_timeout=timeout).response
        except Exception as error:  # noqa: BLE001 - the kubernetes client raises urllib3 errors, timeouts, refused connections
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
            except Exception as error:  # noqa: BLE001 - the connection broke mid-stream (urllib3 ProtocolError, timeouts)
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
        log.warning(
            "Kubernetes API call failed; retrying",
            extra={"fields": {"operation": self.operation, "error": str(error), "retry_in_s": delay}},
        )
        self.stopping.wait(delay)


class NamespaceCache(_Loop):
    """Annotations (and labels) of every Namespace, by name, kept current by a watch."""

    def __init__(self, api: Api, *, watch_seconds: int = 300) -> None:
        super().__init__("entourage-namespaces", "watch_namespaces")
        self.api, self.watch_seconds = api, watch_seconds
        self.annotations: dict[str, Mapping[str, str]] = {}
        self.synced = threading.Event()

    def get(self, namespace: str) -> Mapping[str, str] | None:
        """What the admission path calls: a dict lookup, never an API call."""
        return self.annotations.get(namespace)

    @staticmethod
    def _annotations(namespace: Mapping[str, Any]) -> Namespace:
        """Its annotations, carrying its labels for the configuration's policies."""
        metadata = namespace.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        labels = metadata.get("labels") or {}
        return Namespace(
            {key: str(value) for key, value in annotations.items() if key not in _DROPPED_ANNOTATIONS},
            {str(k): str(v) for k, v in labels.items()},
        )

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
        old = [
            node["metadata"]["name"]
            for node, version in zip(nodes, kubelets, strict=True)
            if version is None or version < NATIVE_SIDECARS_SINCE
        ]
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


_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
"""A DNS-1123 subdomain of at most 253 characters: what Kubernetes accepts as an object name."""
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_UID = re.compile(r"[0-9a-fA-F-]{1,64}")

OWNERS: dict[tuple[str, str], tuple[str, str]] = {
    ("apps", "ReplicaSet"): ("apps/v1", "replicasets"),
    ("apps", "StatefulSet"): ("apps/v1", "statefulsets"),
    ("apps", "DaemonSet"): ("apps/v1", "daemonsets"),
    ("apps", "Deployment"): ("apps/v1", "deployments"),
    ("batch", "Job"): ("batch/v1", "jobs"),
    ("batch", "CronJob"): ("batch/v1", "cronjobs"),
    ("", "ReplicationController"): ("v1", "replicationcontrollers"),
}
"""The pod controllers an Event may be written on, by (API group, kind): (apiVersion, resource).
The chart grants ``get`` on exactly these; a pod owned by any other kind gets its Event on its
Namespace."""

RATE_LIMIT_ENTRIES, RATE_LIMIT_BYTES = 4096, 2 * 1024 * 1024
"""The rate limiter remembers at most this many (namespace, kind, name, uid, reason) keys and this
many estimated bytes (a key of checked names is at most about 850 bytes), each for ``per_object_seconds``."""
OWNER_ENTRIES, OWNER_BYTES = 4096, 2 * 1024 * 1024
"""Owner lookups remembered (found, with the uid, or not found), each for ``owner_seconds``."""
ENTRY_OVERHEAD = 400
"""Bytes a remembered key costs beyond its strings' lengths: a tuple, four str headers, two dict
slots and the time it was stored (tracemalloc counts about 350)."""


class EventRecorder(_Loop):
    """Kubernetes Events for admissions; ``record`` never blocks and never raises.

    An AdmissionReview proves nothing: anyone who reaches the Service can post one, naming any
    namespace and owner. So an Event is written only on an object the API shows in the request's
    namespace, with the uid the pod's ownerReference names (or on the Namespace itself), found by
    a GET the worker thread makes at most ``lookups_per_second`` times a second and whose answer
    it remembers, found or not, for ``owner_seconds``. Its text is fixed words and checked names
    (serving/observe.py builds it; the names are checked again here). Everything kept is bounded:
    the queue by ``capacity``, the rate limiter and the lookups by entries, bytes and age.
    """

    def __init__(
        self,
        api: Api,
        *,
        per_object_seconds: float = 60.0,
        capacity: int = 256,
        owner_seconds: float = 60.0,
        lookups_per_second: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("entourage-events", "create_event")
        self.api = api
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=capacity)
        self.recent: BoundedCache[bool] = BoundedCache(
            "event rate limiter", max_entries=RATE_LIMIT_ENTRIES, max_bytes=RATE_LIMIT_BYTES, max_age=per_object_seconds, clock=clock
        )
        """(namespace, kind, name, uid, reason) → True; read and written by ``record`` only (the event loop)."""
        self.owners: BoundedCache[str] = BoundedCache(
            "event owner lookups", max_entries=OWNER_ENTRIES, max_bytes=OWNER_BYTES, max_age=owner_seconds, clock=clock
        )
        """(namespace, kind, name) → the uid the API has, "" when it has none; the worker thread's only."""
        self.lookups = TokenBucket(lookups_per_second, clock=clock)
        self.instance = socket.gethostname()

    def record(self, *, namespace: str, involved: Mapping[str, Any], reason: str, message: str, warning: bool) -> bool:
        """Queue one Event on ``involved`` (an owner reference, or the Namespace); False when a
        name is not one Kubernetes accepts, rate-limited or the queue is full (dropped). An owner
        of a kind we cannot look up gets its Event on the Namespace."""
        about = _involved(namespace, involved)
        if about is None:
            metrics.EVENTS.labels("invalid").inc()
            return False
        # The uid too: a forged request naming a real owner with another uid does not silence it.
        key = (namespace, about["kind"], about["name"], about.get("uid", ""), reason[:64])
        if self.recent.get(key) is not None:
            metrics.EVENTS.labels("rate_limited").inc()
            return False
        self.recent.put(key, True, ENTRY_OVERHEAD + sum(map(len, key)))
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{about['name']}.", "namespace": namespace},
            "involvedObject": about,
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
                verdict = self.verify(event["involvedObject"])
                if verdict:
                    metrics.EVENTS.labels(verdict).inc()
                    continue
                self.api.request("POST", f"/api/v1/namespaces/{event['metadata']['namespace']}/events", body=event)
                metrics.EVENTS.labels("sent").inc()
            except Exception as error:  # noqa: BLE001 - an Event is never worth a dead thread
                metrics.EVENTS.labels("failed").inc()
                metrics.KUBE_ERRORS.labels(self.operation).inc()
                log.warning("could not create an Event", extra={"fields": {"error": str(error), "reason": event["reason"]}})

    def verify(self, involved: dict[str, str]) -> str:
        """ "" when the object exists as named (a Namespace gets its uid filled in), else why not:
        ``unverified`` (not found, or another uid) or ``lookup_limited`` (no lookup left this
        second). Raises ApiError when the API cannot say."""
        key = (involved.get("namespace", involved["name"]), involved["kind"], involved["name"])
        uid = self.owners.get(key)
        if uid is None:
            if not self.lookups.take():
                return "lookup_limited"
            uid = self._lookup(involved)
            self.owners.put(key, uid, ENTRY_OVERHEAD + sum(map(len, key)) + len(uid))
        if not uid or involved.setdefault("uid", uid) != uid:
            return "unverified"
        return ""

    def _lookup(self, involved: Mapping[str, str]) -> str:
        """The object's uid as the API has it, "" when it does not exist."""
        if involved["kind"] == "Namespace":
            path = f"/api/v1/namespaces/{involved['name']}"
        else:
            api_version, resource = OWNERS[(_group(involved["apiVersion"]), involved["kind"])]
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            path = f"{base}/namespaces/{involved['namespace']}/{resource}/{involved['name']}"
        found = self.api.get(path)
        uid = ((found or {}).get("metadata") or {}).get("uid")
        return uid if isinstance(uid, str) and _UID.fullmatch(uid) else ""


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _involved(namespace: str, owner: Mapping[str, Any]) -> dict[str, str] | None:
    """What an Event is about: the pod's controller when it is a kind we can look up, else the
    Namespace; None when a name is not one Kubernetes would accept."""
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        return None
    api_version, kind, name, uid = (owner.get(field) for field in ("apiVersion", "kind", "name", "uid"))
    if kind == "Namespace":
        return {"apiVersion": "v1", "kind": "Namespace", "name": namespace}
    if not (isinstance(name, str) and _OBJECT_NAME.fullmatch(name) and isinstance(uid, str) and _UID.fullmatch(uid)):
        return None
    known = OWNERS.get((_group(api_version), kind)) if isinstance(api_version, str) and isinstance(kind, str) else None
    if known is None:
        return {"apiVersion": "v1", "kind": "Namespace", "name": namespace}
    return {"apiVersion": known[0], "kind": str(kind), "name": name, "uid": uid, "namespace": namespace}


class TokenBucket:
    """At most ``rate`` takes a second on average, and ``rate`` (at least one) at once."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.clock = rate, clock
        self.capacity = max(1.0, rate)
        self.tokens, self.stamp = self.capacity, clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


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
        owner_seconds: float = 60.0,
        lookups_per_second: float = 10.0,
    ) -> None:
        self.api = api
        self.namespaces = NamespaceCache(api, watch_seconds=watch_seconds)
        self.versions = VersionCheck(api, on_native, every=version_every)
        self.events = EventRecorder(api, owner_seconds=owner_seconds, lookups_per_second=lookups_per_second) if events else None
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
