"""A local HTTPS server answering the few Kubernetes API endpoints Entourage uses, shaped as the
real apiserver answers them (no cluster runs in tests).

- ``GET /version``                                   version.Info
- ``GET /api/v1/namespaces`` (+ ``?watch=true``)     NamespaceList (items without kind/apiVersion,
  ``metadata.resourceVersion``); the watch is a chunked stream of ``{"type", "object"}`` lines from
  the given resourceVersion, an ERROR event with a 410 Status when it is too old, and it ends after
  ``timeoutSeconds``
- ``GET /api/v1/namespaces/{ns}``, ``GET /api/v1/pods``, ``GET /api/v1/namespaces/{ns}/pods``
- ``GET /api/v1/namespaces/{ns}/pods/{name}``; ``GET /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}``
  of any object stored with ``put_object`` (Deployments, Jobs, ...)
- ``GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector=kubernetes.io/service-name=NAME``
- ``GET /apis/admissionregistration.k8s.io/v1/{mutating,validating}webhookconfigurations`` (the list)
- ``GET /api/v1/nodes``                              NodeList with ``status.nodeInfo.kubeletVersion``
- ``POST /api/v1/namespaces/{ns}/events``            201 with the created Event (name from generateName)
- ``GET``/``PATCH`` (``application/json-patch+json``) of
  ``/apis/admissionregistration.k8s.io/v1/{mutating,validating}webhookconfigurations/{name}``, and
  their watch (``?watch=true&fieldSelector=metadata.name=NAME``)
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
        self.events: list[dict[str, Any]] = []
        self.webhook_configurations: dict[str, dict[str, Any]] = {}
        self.validating_configurations: dict[str, dict[str, Any]] = {}
        self.configuration_history: list[tuple[int, str, str, dict[str, Any]]] = []
        """(resourceVersion, event type, resource plural, object) of webhook configuration changes."""
        self.objects: dict[str, dict[str, Any]] = {}
        """Objects by their API path (``/apis/apps/v1/namespaces/shop/deployments/web``)."""
        self.endpoint_slices: list[dict[str, Any]] = []
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.secret_writes: list[str] = []
        """"POST name" / "PUT name" / "CONFLICT name": every write attempt on a Secret."""
        self.patches: list[list[dict[str, Any]]] = []
        self.requests: list[str] = []
        self.server: http.server.ThreadingHTTPServer | None = None
        self.connections: set[Any] = set()
        self.port = 0

    # -- state changes, as a controller would make them -------------------------------------

    def _bump(self) -> str:
        self.resource_version = next(self.versions)
        return str(self.resource_version)

    def put_namespace(self, name: str, annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> None:
        with self.lock:
            kind = "MODIFIED" if name in self.namespaces else "ADDED"
            namespace = self.namespaces.get(name) or {
                "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": "2025-11-25T10:00:00Z", "labels": {"kubernetes.io/metadata.name": name}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            namespace = copy.deepcopy(namespace)
            namespace["metadata"]["annotations"] = dict(annotations or {})
            if labels is not None:
                namespace["metadata"]["labels"] = {**labels, "kubernetes.io/metadata.name": name}
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

    def set_nodes(self, *kubelet_versions: str) -> None:
        with self.lock:
            self.nodes = {
                f"node-{index}": {
                    "metadata": {"name": f"node-{index}", "uid": str(uuid.uuid4()), "resourceVersion": self._bump(), "labels": {"kubernetes.io/hostname": f"node-{index}"}},
                    "spec": {},
                    "status": {"nodeInfo": {"kubeletVersion": version, "kubeProxyVersion": version, "containerRuntimeVersion": "containerd://1.7.13", "operatingSystem": "linux", "architecture": "amd64"}},
                }
                for index, version in enumerate(kubelet_versions)
            }

    def put_webhook_configuration(self, name: str, *webhooks: str, kind: str = "mutating") -> None:
        with self.lock:
            self.configurations(f"{kind}webhookconfigurations")[name] = {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": f"{kind.capitalize()}WebhookConfiguration",
                "metadata": {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": self._bump(), "generation": 1},
                "webhooks": [
                    {"name": hook, "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Ignore",
                     "clientConfig": {"service": {"name": "entourage", "namespace": "entourage", "path": "/mutate", "port": 443}}}
                    for hook in webhooks
                ],
            }  # fmt: skip
            self.configuration_history.append((self.resource_version, "ADDED", f"{kind}webhookconfigurations", self.configurations(f"{kind}webhookconfigurations")[name]))
            self.lock.notify_all()

    def put_configuration(self, configuration: dict[str, Any]) -> None:
        """Store a whole Mutating/ValidatingWebhookConfiguration as written (selectors, conditions)."""
        with self.lock:
            plural = configuration["kind"].lower() + "s"
            configuration = copy.deepcopy(configuration)
            configuration["metadata"].update(uid=str(uuid.uuid4()), resourceVersion=self._bump(), generation=1)
            self.configurations(plural)[configuration["metadata"]["name"]] = configuration

    def put_object(self, group_version: str, plural: str, item: dict[str, Any]) -> None:
        """Store an object under its API path: ``put_object("apps/v1", "deployments", deployment)``."""
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        metadata = item["metadata"]
        with self.lock:
            stored = copy.deepcopy(item)
            stored["metadata"].setdefault("uid", str(uuid.uuid4()))
            stored["metadata"]["resourceVersion"] = self._bump()
            self.objects[f"{base}/namespaces/{metadata['namespace']}/{plural}/{metadata['name']}"] = stored

    def put_endpoint_slice(self, namespace: str, service: str, *ready: bool | None) -> None:
        """An EndpointSlice of the Service with one endpoint per ``ready`` condition (None: unset)."""
        endpoints = [
            {"addresses": [f"10.0.0.{index + 10}"], "conditions": {} if state is None else {"ready": state, "serving": state, "terminating": False}}
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
            "clusters": [{"name": "fake", "cluster": {"server": f"https://127.0.0.1:{self.port}", "certificate-authority-data": base64.b64encode(self.certificates.ca_pem).decode()}}],
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
        self.api.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.api.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
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

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        api = self.api
        api.requests.append(f"GET {self.path}")
        path = url.path
        if path == "/version":
            major, minor = re.match(r"v(\d+)\.(\d+)", api.git_version).groups()  # type: ignore[union-attr]
            self._send(200, {"major": major, "minor": minor, "gitVersion": api.git_version, "gitCommit": "0" * 40, "gitTreeState": "clean",
                             "buildDate": "2025-06-17T18:00:00Z", "goVersion": "go1.22.4", "compiler": "gc", "platform": "linux/amd64"})  # fmt: skip
        elif path == "/api/v1/namespaces" and query.get("watch") in ("true", "1"):
            self._watch(query)
        elif path == "/api/v1/namespaces":
            with api.lock:
                self._list("NamespaceList", list(api.namespaces.values()))
        elif m := re.fullmatch(r"/api/v1/namespaces/([^/]+)", path):
            with api.lock:
                found = api.namespaces.get(m[1])
            if found is None:
                self._send(404, _status(404, "NotFound", f'namespaces "{m[1]}" not found'))
            else:
                self._send(200, {"kind": "Namespace", "apiVersion": "v1", **found})
        elif path == "/api/v1/nodes":
            with api.lock:
                self._list("NodeList", list(api.nodes.values()))
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
                slices = [s for s in api.endpoint_slices if s["metadata"]["namespace"] == m[1] and s["metadata"]["labels"]["kubernetes.io/service-name"] == service]
            self._list("EndpointSliceList", slices)
        elif path in api.objects:
            with api.lock:
                self._send(200, api.objects[path])
        elif re.fullmatch(r"/apis/[^/]+/[^/]+/namespaces/[^/]+/[^/]+/([^/]+)", path):
            self._send(404, _status(404, "NotFound", f'{path.split("/")[-2]} "{path.split("/")[-1]}" not found'))
        elif (m := re.fullmatch(r"/apis/admissionregistration\.k8s\.io/v1/((?:mutating|validating)webhookconfigurations)", path)) and query.get("watch") not in ("true", "1"):
            with api.lock:
                self._list(m[1].capitalize().replace("webhookconfigurations", "WebhookConfigurationList"), list(api.configurations(m[1]).values()))
        elif m := re.fullmatch(r"/apis/admissionregistration\.k8s\.io/v1/((?:mutating|validating)webhookconfigurations)/([^/]+)", path):
            with api.lock:
                found = api.configurations(m[1]).get(m[2])
            if found is None:
                self._send(404, _status(404, "NotFound", f'{m[1]}.admissionregistration.k8s.io "{m[2]}" not found'))
            else:
                self._send(200, found)
        elif (m := re.fullmatch(r"/apis/admissionregistration\.k8s\.io/v1/((?:mutating|validating)webhookconfigurations)", path)) and query.get("watch") in ("true", "1"):
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
                self._chunk({"type": "ERROR", "object": _status(410, "Expired", f"too old resource version: {since} ({api.oldest_watchable})")})
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
            secret["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), resourceVersion=api._bump(), creationTimestamp="2025-11-25T10:00:00Z")
            api.secrets[(namespace, name)] = secret
        self._send(201, secret)

    def do_PUT(self) -> None:  # noqa: N802
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

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        api = self.api
        api.requests.append(f"POST {self.path}")
        if secrets := re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets", urlsplit(self.path).path):
            self._create_secret(secrets[1])
            return
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/events", urlsplit(self.path).path)
        if m is None:
            self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
            return
        event = self._body()
        metadata = event.setdefault("metadata", {})
        if metadata.get("namespace", m[1]) != m[1]:
            self._send(400, _status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"))
            return
        with api.lock:
            metadata.update(namespace=m[1], name=metadata.get("name") or metadata.pop("generateName", "event.") + uuid.uuid4().hex[:5], uid=str(uuid.uuid4()), resourceVersion=api._bump())
            api.events.append(event)
        self._send(201, event)

    def do_PATCH(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        api = self.api
        api.requests.append(f"PATCH {self.path}")
        m = re.fullmatch(r"/apis/admissionregistration\.k8s\.io/v1/((?:mutating|validating)webhookconfigurations)/([^/]+)", urlsplit(self.path).path)
        if m is None or m[2] not in api.configurations(m[1]):
            self._send(404, _status(404, "NotFound", "not found"))
            return
        if self.headers.get("Content-Type") != "application/json-patch+json":
            self._send(415, _status(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"))
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
