"""A local HTTPS server answering the few Kubernetes API endpoints Entourage uses, shaped as the
real apiserver answers them (no cluster runs in tests).

- ``GET /version``                                   version.Info
- ``GET /api``, ``/apis``, ``/api/v1``, ``/openapi/v3``, ``/openapi/v3/api/v1``: the discovery
  ``kubectl create`` reads (the core group only; an OpenAPI v3 document that says the Pod
  endpoints take ``fieldValidation``, so kubectl leaves validation to the server as it does
  against a real apiserver, instead of downloading /openapi/v2 to validate on the client)
- ``GET /api/v1/namespaces`` (+ ``?watch=true``)     NamespaceList (items without kind/apiVersion,
  ``metadata.resourceVersion``); the watch is a chunked stream of ``{"type", "object"}`` lines from
  the given resourceVersion, an ERROR event with a 410 Status when it is too old, and it ends after
  ``timeoutSeconds``
- ``GET /api/v1/namespaces/{ns}``, ``GET /api/v1/pods``, ``GET /api/v1/namespaces/{ns}/pods``
- ``GET /api/v1/namespaces/{ns}/pods/{name}``
- ``GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector=kubernetes.io/service-name=NAME``
- ``GET /apis/admissionregistration.k8s.io/v1/{mutating,validating}webhookconfigurations`` (the list)
- ``GET /api/v1/nodes``                              NodeList with ``status.nodeInfo.kubeletVersion``
- ``GET`` of one workload object: ``/apis/apps/v1/namespaces/{ns}/{replicasets,deployments,
  statefulsets,daemonsets}/{name}``, ``/apis/batch/v1/namespaces/{ns}/{jobs,cronjobs}/{name}``,
  ``/api/v1/namespaces/{ns}/replicationcontrollers/{name}`` (404 NotFound unless ``put_object``)
- ``POST /api/v1/namespaces/{ns}/events``            201 with the created Event (name from generateName);
  ``GET`` lists them, ``fieldSelector`` on top-level fields (``reason=...``)
- ``GET``/``PATCH`` (``application/json-patch+json``) of
  ``/apis/admissionregistration.k8s.io/v1/{mutating,validating}webhookconfigurations/{name}``, and
  their watch (``?watch=true&fieldSelector=metadata.name=NAME``)
- ``PATCH`` (``application/strategic-merge-patch+json``, applied as a JSON merge patch, which
  is the same for the maps ``rollout restart`` writes) of Deployments, StatefulSets and DaemonSets
- ``POST /api/v1/namespaces/{ns}/pods?dryRun=All``: admission as the apiserver runs it for the
  mutating webhooks configured with ``clientConfig.url`` (``namespaceSelector``,
  ``objectSelector``, the ``caBundle`` verified, ``failurePolicy``, the patch applied, a 400 for a
  webhook whose ``sideEffects`` is neither None nor NoneOnDryRun); nothing
  is stored. A ``service`` client config is unreachable (the fake runs no Services).
- ``labelSelector`` on the Namespace list (``a=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``)
- ``GET``/``PUT`` ``/api/v1/namespaces/{ns}/secrets/{name}``, ``POST /api/v1/namespaces/{ns}/secrets``:
  409 AlreadyExists on a second create, 409 Conflict on a PUT with a stale resourceVersion

Every request needs ``Authorization: Bearer <token>``; errors are ``metav1.Status`` objects.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import http.server
import itertools
import json
import re
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonpatch
import yaml

from webhook import certs

TOKEN = "fake-token"
RESOURCES = {
    "ReplicaSet": ("apps/v1", "replicasets"),
    "Deployment": ("apps/v1", "deployments"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "DaemonSet": ("apps/v1", "daemonsets"),
    "Job": ("batch/v1", "jobs"),
    "CronJob": ("batch/v1", "cronjobs"),
    "ReplicationController": ("v1", "replicationcontrollers"),
}
"""kind → (apiVersion, resource) of the workload objects the fake serves one by one."""


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}


class FakeApiServer:
    def __init__(self, *, git_version: str = "v1.30.2") -> None:
        self.certificates = certs.generate("kubernetes", "default")
        self.git_version = git_version
        self.lock = threading.Condition()
        self.versions = itertools.count(1000)
        self.resource_version = next(self.versions)
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        self.oldest_watchable = 0
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        """(apiVersion, resource, namespace, name) → a workload object (ReplicaSet, Job, …)."""
        self.events: list[dict[str, Any]] = []
        self.webhook_configurations: dict[str, dict[str, Any]] = {}
        self.validating_configurations: dict[str, dict[str, Any]] = {}
        self.configuration_history: list[tuple[int, str, str, dict[str, Any]]] = []
        """(resourceVersion, event type, resource plural, object) of webhook configuration changes."""
        self.endpoint_slices: list[dict[str, Any]] = []
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.secret_writes: list[str] = []
        """"POST name" / "PUT name" / "CONFLICT name": every write attempt on a Secret."""
        self.patches: list[list[dict[str, Any]]] = []
        self.dry_run_pods: list[dict[str, Any]] = []
        """Every pod a dry-run create admitted, as admission left it."""
        self.workload_patches: list[tuple[str, str, str, dict[str, Any]]] = []
        """(plural, namespace, name, body) of every PATCH of a workload."""
        self.requests: list[str] = []
        self.server: http.server.ThreadingHTTPServer | None = None
        self.connections: set[Any] = set()
        self.port = 0

    # -- state changes, as a controller would make them -------------------------------------

    def _bump(self) -> str:
        self.resource_version = next(self.versions)
        return str(self.resource_version)

    def put_namespace(self, name: str, annotations: dict[str, str] | None = None, *, labels: dict[str, str] | None = None) -> None:
        with self.lock:
            kind = "MODIFIED" if name in self.namespaces else "ADDED"
            namespace = self.namespaces.get(name) or {
                "metadata": {
                    "name": name,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": "2025-11-25T10:00:00Z",
                    "labels": {"kubernetes.io/metadata.name": name},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            namespace = copy.deepcopy(namespace)
            namespace["metadata"]["annotations"] = dict(annotations or {})
            if labels is not None:
                namespace["metadata"]["labels"] = {"kubernetes.io/metadata.name": name, **labels}
            namespace["metadata"]["resourceVersion"] = self._bump()
            self.namespaces[name] = namespace
            self.history.append((self.resource_version, kind, namespace))
            self.lock.notify_all()

    def delete_namespace(self, name: str) -> None:
        with self.lock:
            namespace = copy.deepcopy(self.namespaces.pop(name))
            namespace["metadata"]["resourceVersion"] = self._bump()
            self.history.append((self.resource_version, "DELETED", namespace))
            self.lock.notify_all()

    def compact(self) -> None:
        """Forget the watch history (etcd compaction at a revision newer than any Namespace's, as
        writes to other resources advance etcd's one revision counter): open watches end, and a
        watch from any resourceVersion seen so far gets 410 Gone."""
        with self.lock:
            self.oldest_watchable = int(self._bump())
            self.history.clear()

    def put_object(self, kind: str, namespace: str, name: str, uid: str | None = None) -> str:
        """Create a workload object (as its controller would); its uid."""
        api_version, resource = RESOURCES[kind]
        uid = uid or str(uuid.uuid4())
        with self.lock:
            metadata = {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "resourceVersion": self._bump(),
                "generation": 1,
                "creationTimestamp": "2025-11-25T10:00:00Z",
            }
            self.objects[(api_version, resource, namespace, name)] = {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": metadata,
                "spec": {},
                "status": {},
            }
        return uid

    def set_nodes(self, *kubelet_versions: str) -> None:
        with self.lock:
            self.nodes = {
                f"node-{index}": {
                    "metadata": {
                        "name": f"node-{index}",
                        "uid": str(uuid.uuid4()),
                        "resourceVersion": self._bump(),
                        "labels": {"kubernetes.io/hostname": f"node-{index}"},
                    },
                    "spec": {},
                    "status": {
                        "nodeInfo": {
                            "kubeletVersion": version,
                            "kubeProxyVersion": version,
                            "containerRuntimeVersion": "containerd://1.7.13",
                            "operatingSystem": "linux",
                            "architecture": "amd64",
                        }
                    },
                }
                for index, version in enumerate(kubelet_versions)
            }

    def put_webhook_configuration(
        self, name: str, *webhooks: str, kind: str = "mutating", client_config: dict[str, Any] | None = None,
        namespace_selector: dict[str, Any] | None = None, failure_policy: str = "Ignore",
    ) -> None:  # fmt: skip
        """``client_config`` defaults to the chart's Service; a ``url`` one is called by dry-run creates."""
        client_config = client_config or {"service": {"name": "entourage", "namespace": "entourage", "path": "/mutate", "port": 443}}
        with self.lock:
            self.configurations(f"{kind}webhookconfigurations")[name] = {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": f"{kind.capitalize()}WebhookConfiguration",
                "metadata": {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": self._bump(), "generation": 1},
                "webhooks": [
                    {"name": hook, "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": failure_policy,
                     "clientConfig": copy.deepcopy(client_config), **({"namespaceSelector": namespace_selector} if namespace_selector else {})}
                    for hook in webhooks
                ],
            }  # fmt: skip
            self.configuration_history.append(
                (self.resource_version, "ADDED", f"{kind}webhookconfigurations", self.configurations(f"{kind}webhookconfigurations")[name])
            )
            self.lock.notify_all()

    def put_configuration(self, configuration: dict[str, Any]) -> None:
        """Store a whole Mutating/ValidatingWebhookConfiguration as written (selectors, conditions)."""
        with self.lock:
            plural = configuration["kind"].lower() + "s"
            configuration = copy.deepcopy(configuration)
            configuration["metadata"].update(uid=str(uuid.uuid4()), resourceVersion=self._bump(), generation=1)
            self.configurations(plural)[configuration["metadata"]["name"]] = configuration

    def put_manifest(self, item: dict[str, Any]) -> None:
        """Store a whole workload as written (its pod template and all), served like ``put_object``'s."""
        api_version, resource = RESOURCES[item["kind"]]
        metadata = item["metadata"]
        with self.lock:
            stored = copy.deepcopy(item)
            stored["metadata"].setdefault("uid", str(uuid.uuid4()))
            stored["metadata"]["resourceVersion"] = self._bump()
            self.objects[(api_version, resource, metadata["namespace"], metadata["name"])] = stored

    def put_endpoint_slice(self, namespace: str, service: str, *ready: bool | None) -> None:
        """An EndpointSlice of the Service with one endpoint per ``ready`` condition (None: unset)."""
        endpoints = [
            {
                "addresses": [f"10.0.0.{index + 10}"],
                "conditions": {} if state is None else {"ready": state, "serving": state, "terminating": False},
            }
            for index, state in enumerate(ready)
        ]
        with self.lock:
            self.endpoint_slices.append({
                "metadata": {"name": f"{service}-{uuid.uuid4().hex[:5]}", "namespace": namespace, "resourceVersion": self._bump(),
                             "labels": {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
                "addressType": "IPv4", "endpoints": endpoints, "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}],
            })  # fmt: skip

    def configurations(self, plural: str) -> dict[str, dict[str, Any]]:
        """The stored Mutating or Validating webhook configurations, by name."""
        return self.webhook_configurations if plural == "mutatingwebhookconfigurations" else self.validating_configurations

    def set_ca_bundle(self, plural: str, name: str, bundle: str) -> None:
        """Someone (a GitOps sync, a human) writes every caBundle of a configuration."""
        with self.lock:
            configuration = copy.deepcopy(self.configurations(plural)[name])
            for hook in configuration["webhooks"]:
                hook["clientConfig"]["caBundle"] = bundle
            self._store_configuration(plural, name, configuration)

    def _store_configuration(self, plural: str, name: str, configuration: dict[str, Any]) -> None:
        configuration["metadata"]["resourceVersion"] = self._bump()
        self.configurations(plural)[name] = configuration
        self.configuration_history.append((self.resource_version, "MODIFIED", plural, configuration))
        self.lock.notify_all()

    def put_workload(self, kind: str, namespace: str, name: str, owner: tuple[str, str] | None = None) -> dict[str, Any]:
        """A workload (``owner``: its controller's kind and name), as a controller would create it."""
        api_version, resource = RESOURCES[kind]
        metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())}
        if owner is not None:
            metadata["ownerReferences"] = [
                {"apiVersion": RESOURCES[owner[0]][0], "kind": owner[0], "name": owner[1], "uid": str(uuid.uuid4()), "controller": True}
            ]
        with self.lock:
            metadata["resourceVersion"] = self._bump()
            workload = {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": metadata,
                "spec": {"template": {"metadata": {}, "spec": {"containers": []}}},
            }
            self.objects[(api_version, resource, namespace, name)] = workload
        return workload

    def delete_secret(self, namespace: str, name: str) -> None:
        with self.lock:
            del self.secrets[(namespace, name)]

    # -- serving -----------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeApiServer:
        directory = Path(__import__("tempfile").mkdtemp(prefix="fake-apiserver-"))
        certs.write(self.certificates, directory, force=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
        fake = self

        class Handler(_Handler):
            api = fake

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port or self.port), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """The API becomes unreachable: the listener closes and open watches are cut."""
        if self.server is not None:
            server, self.server = self.server, None
            server.shutdown()
            server.server_close()
        for connection in list(self.connections):  # keep-alive connections too, or the API would still answer
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.connections.clear()
        with self.lock:
            self.lock.notify_all()

    def kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "fake",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.port}",
                        "certificate-authority-data": base64.b64encode(self.certificates.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": "entourage", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "entourage"}}],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path


class _Handler(http.server.BaseHTTPRequestHandler):
    api: FakeApiServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm holds the body
        # until the client's delayed ACK of the headers, 40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.api.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.api.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorized():
            return
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        api = self.api
        api.requests.append(f"GET {self.path}")
        path = url.path
        if (document := _discovery(path, api.port)) is not None:
            self._send(200, document)
        elif path == "/version":
            major, minor = re.match(r"v(\d+)\.(\d+)", api.git_version).groups()  # type: ignore[union-attr]
            self._send(200, {"major": major, "minor": minor, "gitVersion": api.git_version, "gitCommit": "0" * 40, "gitTreeState": "clean",
                             "buildDate": "2025-06-17T18:00:00Z", "goVersion": "go1.22.4", "compiler": "gc", "platform": "linux/amd64"})  # fmt: skip
        elif path == "/api/v1/namespaces" and query.get("watch") in ("true", "1"):
            self._watch(query)
        elif path == "/api/v1/namespaces":
            with api.lock:
                found = [n for n in api.namespaces.values() if selects(query.get("labelSelector", ""), n["metadata"].get("labels") or {})]
                self._list("NamespaceList", found)
        elif m := re.fullmatch(r"/api/v1/namespaces/([^/]+)", path):
            with api.lock:
                found = api.namespaces.get(m[1])
            if found is None:
                self._send(404, _status(404, "NotFound", f'namespaces "{m[1]}" not found'))
            else:
                self._send(200, {"kind": "Namespace", "apiVersion": "v1", **found})
        elif m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/events", path):
            wanted = dict(term.split("=", 1) for term in query.get("fieldSelector", "").split(",") if "=" in term)
            with api.lock:
                found = [
                    event
                    for event in api.events
                    if event["metadata"]["namespace"] == m[1] and all(str(event.get(key)) == value for key, value in wanted.items())
                ]
            self._list("EventList", found)
        elif path == "/api/v1/nodes":
            with api.lock:
                self._list("NodeList", list(api.nodes.values()))
        elif (m := re.fullmatch(r"/(?:api/(v1)|apis/((?:apps|batch)/v1))/namespaces/([^/]+)/([a-z]+)/([^/]+)", path)) and (
            m[1] or m[2],
            m[4],
        ) in RESOURCES.values():
            api_version, namespace, resource, name = m[1] or m[2], m[3], m[4], m[5]
            with api.lock:
                found = api.objects.get((api_version, resource, namespace, name))
            if found is None:
                group = api_version.rpartition("/")[0]
                self._send(404, _status(404, "NotFound", f'{resource}{"." + group if group else ""} "{name}" not found'))
            else:
                self._send(200, found)
        elif path == "/api/v1/pods" or (m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", path)):
            namespace = None if path == "/api/v1/pods" else m[1]  # type: ignore[index]
            self._list("PodList", [pod for pod in api.pods if namespace in (None, pod["metadata"]["namespace"])])
        elif m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)", path):
            found = next((pod for pod in api.pods if (pod["metadata"]["namespace"], pod["metadata"]["name"]) == (m[1], m[2])), None)
            if found is None:
                self._send(404, _status(404, "NotFound", f'pods "{m[2]}" not found'))
            else:
                self._send(200, {"kind": "Pod", "apiVersion": "v1", **found})
        elif m := re.fullmatch(r"/apis/discovery\.k8s\.io/v1/namespaces/([^/]+)/endpointslices", path):
            service = (query.get("labelSelector") or "").removeprefix("kubernetes.io/service-name=")
            with api.lock:
                slices = [
                    s
                    for s in api.endpoint_slices
                    if s["metadata"]["namespace"] == m[1] and s["metadata"]["labels"]["kubernetes.io/service-name"] == service
                ]
            self._list("EndpointSliceList", slices)
        elif (
            m := re.fullmatch(r"/apis/admissionregistration\.k8s\.io/v1/((?:mutating|validating)webhookconfigurations)", path)
        ) and query.get("watch") not in ("true", "1"):
            with api.lock:
                self._list(
                    m[1].capitalize().replace("webhookconfigurations", "WebhookConfigurationList"), list(api.configurations(m[1]).values())
                )
        elif m := re.fullmatch(r"/apis/admissionregistration\.k8s\.io/v1/((?:mutating|validating)webhookconfigurations)/([^/]+)", path):
            with api.lock:
                found = api.configurations(m[1]).get(m[2])
            if found is None:
                self._send(404, _status(404, "NotFound", f'{m[1]}.admissionregistration.k8s.io "{m[2]}" not found'))
            else:
                self._send(200, found)
        elif (
            m := re.fullmatch(r"/apis/admissionregistration\.k8s\.io/v1/((?:mutating|validating)webhookconfigurations)", path)
        ) and query.get("watch") in ("true", "1"):
            self._watch_configurations(m[1], query)
        elif m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets/([^/]+)", path):
            with api.lock:
                secret = api.secrets.get((m[1], m[2]))
            if secret is None:
                self._send(404, _status(404, "NotFound", f'secrets "{m[2]}" not found'))
            else:
                self._send(200, secret)
        else:
            self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))

    def _list(self, kind: str, items: list[dict[str, Any]]) -> None:
        self._send(200, {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(self.api.resource_version)}, "items": items})

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, query: dict[str, str]) -> None:
        api = self.api
        since = int(query.get("resourceVersion") or 0)
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if since < api.oldest_watchable:
                self._chunk(
                    {"type": "ERROR", "object": _status(410, "Expired", f"too old resource version: {since} ({api.oldest_watchable})")}
                )
            else:
                while time.monotonic() < deadline and api.server is not None:
                    if since < api.oldest_watchable:
                        break  # compacted under an open watch: the apiserver ends it; the client's next one gets 410
                    with api.lock:
                        pending = [entry for entry in api.history if entry[0] > since]
                        if not pending:
                            api.lock.wait(min(0.2, max(0.0, deadline - time.monotonic())))
                            continue
                    for version, kind, item in pending:
                        self._chunk({"type": kind, "object": {"kind": "Namespace", "apiVersion": "v1", **item}})
                        since = version
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        self.close_connection = True

    def _watch_configurations(self, plural: str, query: dict[str, str]) -> None:
        """A watch of one webhook configuration (``fieldSelector=metadata.name=NAME``, as RBAC by
        resourceNames requires), from the given resourceVersion, until ``timeoutSeconds``."""
        api = self.api
        since = int(query.get("resourceVersion") or 0)
        name = (query.get("fieldSelector") or "").removeprefix("metadata.name=")
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            while time.monotonic() < deadline and api.server is not None:
                with api.lock:
                    pending = [e for e in api.configuration_history if e[0] > since and e[2] == plural and e[3]["metadata"]["name"] == name]
                    if not pending:
                        api.lock.wait(min(0.2, max(0.0, deadline - time.monotonic())))
                        continue
                for version, kind, _, item in pending:
                    self._chunk({"type": kind, "object": item})
                    since = version
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        self.close_connection = True

    def _create_secret(self, namespace: str) -> None:
        api = self.api
        secret = self._body()
        name = secret["metadata"]["name"]
        with api.lock:
            api.secret_writes.append(f"POST {name}")
            if (namespace, name) in api.secrets:
                self._send(409, _status(409, "AlreadyExists", f'secrets "{name}" already exists'))
                return
            secret["metadata"].update(
                namespace=namespace, uid=str(uuid.uuid4()), resourceVersion=api._bump(), creationTimestamp="2025-11-25T10:00:00Z"
            )
            api.secrets[(namespace, name)] = secret
        self._send(201, secret)

    def do_PUT(self) -> None:
        if not self._authorized():
            return
        api = self.api
        api.requests.append(f"PUT {self.path}")
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets/([^/]+)", urlsplit(self.path).path)
        if m is None:
            self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
            return
        secret = self._body()
        with api.lock:
            current = api.secrets.get((m[1], m[2]))
            if current is None:
                self._send(404, _status(404, "NotFound", f'secrets "{m[2]}" not found'))
                return
            if secret["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                api.secret_writes.append(f"CONFLICT {m[2]}")
                message = f'Operation cannot be fulfilled on secrets "{m[2]}": the object has been modified; please apply your changes to the latest version and try again'
                self._send(409, _status(409, "Conflict", message))
                return
            api.secret_writes.append(f"PUT {m[2]}")
            secret["metadata"].update(uid=current["metadata"]["uid"], resourceVersion=api._bump())
            api.secrets[(m[1], m[2])] = secret
        self._send(200, secret)

    def _body(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")

    def do_POST(self) -> None:
        if not self._authorized():
            return
        api = self.api
        api.requests.append(f"POST {self.path}")
        if secrets := re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets", urlsplit(self.path).path):
            self._create_secret(secrets[1])
            return
        if pods := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", urlsplit(self.path).path):
            self._create_pod(pods[1], parse_qs(urlsplit(self.path).query).get("dryRun") == ["All"])
            return
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/events", urlsplit(self.path).path)
        if m is None:
            self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
            return
        event = self._body()
        metadata = event.setdefault("metadata", {})
        if metadata.get("namespace", m[1]) != m[1]:
            self._send(
                400, _status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            )
            return
        with api.lock:
            metadata.update(
                namespace=m[1],
                name=metadata.get("name") or metadata.pop("generateName", "event.") + uuid.uuid4().hex[:5],
                uid=str(uuid.uuid4()),
                resourceVersion=api._bump(),
            )
            api.events.append(event)
        self._send(201, event)

    def do_PATCH(self) -> None:
        if not self._authorized():
            return
        api = self.api
        api.requests.append(f"PATCH {self.path}")
        if workload := re.fullmatch(
            r"/apis/apps/v1/namespaces/([^/]+)/(deployments|statefulsets|daemonsets)/([^/]+)", urlsplit(self.path).path
        ):
            self._patch_workload(workload[2], workload[1], workload[3])
            return
        m = re.fullmatch(
            r"/apis/admissionregistration\.k8s\.io/v1/((?:mutating|validating)webhookconfigurations)/([^/]+)", urlsplit(self.path).path
        )
        if m is None or m[2] not in api.configurations(m[1]):
            self._send(404, _status(404, "NotFound", "not found"))
            return
        if self.headers.get("Content-Type") != "application/json-patch+json":
            self._send(
                415,
                _status(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ),
            )
            return
        operations = self._body()
        with api.lock:
            try:
                patched = jsonpatch.apply_patch(api.configurations(m[1])[m[2]], operations)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
                self._send(422, _status(422, "Invalid", str(error)))
                return
            api._store_configuration(m[1], m[2], patched)
            api.patches.append(operations)
        self._send(200, patched)

    def _patch_workload(self, plural: str, namespace: str, name: str) -> None:
        api = self.api
        if self.headers.get("Content-Type") not in ("application/strategic-merge-patch+json", "application/merge-patch+json"):
            self._send(415, _status(415, "UnsupportedMediaType", "the body of the request was in an unknown format"))
            return
        body = self._body()
        with api.lock:
            workload = api.objects.get(("apps/v1", plural, namespace, name))
            if workload is None:
                self._send(404, _status(404, "NotFound", f'{plural} "{name}" not found'))
                return
            _merge(workload, body)
            workload["metadata"]["resourceVersion"] = api._bump()
            api.workload_patches.append((plural, namespace, name, body))
        self._send(200, workload)

    def _create_pod(self, namespace: str, dry_run: bool) -> None:
        api = self.api
        if not dry_run:
            self._send(403, _status(403, "Forbidden", "the fake API server creates pods only as a dry run"))
            return
        pod = self._body()
        pod.setdefault("metadata", {}).update(
            namespace=namespace, name=pod["metadata"].get("name") or pod["metadata"].get("generateName", "pod-") + uuid.uuid4().hex[:5]
        )
        with api.lock:
            found = api.namespaces.get(namespace)
            configurations = copy.deepcopy(list(api.webhook_configurations.values()))
        if found is None:
            self._send(404, _status(404, "NotFound", f'namespaces "{namespace}" not found'))
            return
        labels = found["metadata"].get("labels") or {}
        for configuration in configurations:
            for hook in configuration.get("webhooks") or []:
                if not matches(hook.get("namespaceSelector"), labels) or not matches(
                    hook.get("objectSelector"), pod["metadata"].get("labels") or {}
                ):
                    continue
                if hook.get("sideEffects") not in ("None", "NoneOnDryRun"):  # as the apiserver, for a dry run
                    self._send(400, _status(400, "BadRequest", f'admission webhook "{hook["name"]}" does not support dry run'))
                    return
                try:
                    pod = _call_webhook(hook, namespace, pod)
                except _Denied as denial:
                    self._send(400, _status(400, "BadRequest", f'admission webhook "{hook["name"]}" denied the request: {denial}'))
                    return
                except Exception as error:  # noqa: BLE001 - as the apiserver: any failure to call
                    if hook.get("failurePolicy", "Fail") == "Fail":
                        message = f'Internal error occurred: failed calling webhook "{hook["name"]}": failed to call webhook: {error}'
                        self._send(500, _status(500, "InternalError", message))
                        return
        api.dry_run_pods.append(pod)
        self._send(201, pod)


def _discovery(path: str, port: int) -> dict[str, Any] | None:
    """The discovery documents kubectl reads before a create, or None for any other path."""
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{port}"}],
        }
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
    if path == "/api/v1":
        resources = [
            {"name": plural, "singularName": plural[:-1], "namespaced": namespaced, "kind": kind, "verbs": ["create", "get", "list"]}
            for plural, kind, namespaced in [("pods", "Pod", True), ("namespaces", "Namespace", False), ("events", "Event", True),
                                             ("secrets", "Secret", True), ("nodes", "Node", False)]
        ]  # fmt: skip
        return {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources}
    if path == "/openapi/v3":
        return {"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=0"}}}
    if path == "/openapi/v3/api/v1":
        # kubectl looks for a PATCH of the kind with a `fieldValidation` query parameter
        # (k8s.io/cli-runtime resource.supportsQueryParamV3): found, it sends fieldValidation=Strict.
        operation = {
            "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"},
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
        }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "unversioned"},
            "paths": {"/api/v1/namespaces/{namespace}/pods/{name}": {"patch": operation}},
        }
    return None


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class _Denied(Exception):
    pass


def _call_webhook(hook: dict[str, Any], namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    """POST an AdmissionReview to the hook's URL, verifying it with the caBundle; the patched pod."""
    url = (hook.get("clientConfig") or {}).get("url")
    if url is None:
        service = hook["clientConfig"].get("service") or {}
        raise ConnectionError(f'service "{service.get("namespace")}/{service.get("name")}" has no endpoints available')
    bundle = hook["clientConfig"].get("caBundle")
    context = ssl.create_default_context(cadata=base64.b64decode(bundle).decode() if bundle else None)
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"}, "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace, "operation": "CREATE", "userInfo": {"username": "system:serviceaccount:entourage:entourage"},
        "object": pod, "oldObject": None, "dryRun": True, "options": {"apiVersion": "meta/v1", "kind": "CreateOptions", "dryRun": ["All"]}}}  # fmt: skip
    import httpx

    response = httpx.post(url, json=review, verify=context, timeout=hook.get("timeoutSeconds", 10))
    if response.status_code != 200:
        raise ConnectionError(f"the server responded with HTTP {response.status_code}")
    answer = response.json()["response"]
    if not answer.get("allowed"):
        raise _Denied((answer.get("status") or {}).get("message", ""))
    if answer.get("patch"):
        pod = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(answer["patch"])))
    return pod


def matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector object against labels (an absent or empty selector selects everything)."""
    for key, value in ((selector or {}).get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in (selector or {}).get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if (operator == "In" and labels.get(key) not in values) or (operator == "NotIn" and labels.get(key) in values):
            return False
        if (operator == "Exists" and key not in labels) or (operator == "DoesNotExist" and key in labels):
            return False
    return True


def selects(query: str, labels: dict[str, str]) -> bool:
    """A ``labelSelector`` query parameter against labels."""
    for term in re.split(r",(?![^(]*\))", query) if query else []:
        term = term.strip()
        if m := re.fullmatch(r"(\S+) (in|notin) \((.*)\)", term):
            inside = labels.get(m[1]) in m[3].split(",")
            if inside != (m[2] == "in"):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif "!=" in term:
            key, _, value = term.partition("!=")
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True
