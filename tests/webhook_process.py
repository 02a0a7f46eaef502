"""The real ``entourage serve`` process for tests: kubelet-style mounted directories, TLS clients.

Certificates and configuration live in directories laid out as kubelet mounts a Secret or a
ConfigMap (``..data`` → a timestamped directory, files as symlinks through ``..data``), and
``swap`` replaces them the way kubelet does: one atomic rename of the ``..data`` symlink.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from webhook import certs

ENTOURAGE = str(Path(sys.executable).parent / "entourage")
_serial = itertools.count()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MountedDir:
    """A directory as kubelet projects a Secret/ConfigMap volume."""

    def __init__(self, root: Path, files: Mapping[str, bytes]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.swap(files)
        for name in files:
            (root / name).symlink_to(f"..data/{name}")

    def swap(self, files: Mapping[str, bytes]) -> None:
        version = self.root / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{next(_serial)}"
        version.mkdir()
        for name, content in files.items():
            (version / name).write_bytes(content)
        temporary = self.root / "..data_tmp"
        temporary.symlink_to(version.name)
        os.rename(temporary, self.root / "..data")

    def path(self, name: str) -> str:
        return str(self.root / name)


def tls_files(certificates: certs.CertificateSet) -> dict[str, bytes]:
    return {"tls.crt": certificates.cert_pem, "tls.key": certificates.key_pem, "ca.crt": certificates.ca_pem}


def client_context(*cas: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata="".join(ca.decode() for ca in cas))


@dataclass
class Webhook:
    process: subprocess.Popen[bytes]
    port: int
    tls: MountedDir
    config: MountedDir
    certificates: certs.CertificateSet
    log_path: Path
    trusted: list[bytes] = field(default_factory=list)
    client_certificate: tuple[str, str] | None = None
    """(certificate file, key file) the test clients present, for a server with --client-ca-file."""

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def context(self) -> ssl.SSLContext:
        context = client_context(*self.trusted)
        if self.client_certificate:
            context.load_cert_chain(*self.client_certificate)
        return context

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.context(), timeout=kwargs.pop("timeout", 10), **kwargs)

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(line))
        return lines

    def metrics(self) -> dict[str, float]:
        with self.client() as client:
            text = client.get("/metrics").text
        return parse_metrics(text)

    def serial(self) -> int:
        """The serial number of the certificate a new handshake gets."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
            with self.context().wrap_socket(raw, server_hostname="localhost") as conn:
                return int(conn.getpeercert()["serialNumber"], 16)  # type: ignore[index]

    def wait_for(self, predicate: Any, timeout: float = 10, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; logs:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def start(
    tmp_path: Path,
    *args: str,
    config: str = "{}\n",
    env: Mapping[str, str] | None = None,
    ready: bool = True,
    certificates: certs.CertificateSet | None = None,
    client_certificate: tuple[str, str] | None = None,
    port: int | None = None,
) -> Webhook:
    """Start ``entourage serve`` on ``port`` or a free one; wait until it answers /healthz (and /readyz)."""
    certificates = certificates or certs.generate("entourage", "entourage")
    tls = MountedDir(tmp_path / "tls", tls_files(certificates))
    config_dir = MountedDir(tmp_path / "config", {"config.yaml": config.encode()})
    port = port or free_port()
    log_path = tmp_path / f"serve-{port}.log"
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("KUBERNETES_", "PROMETHEUS_"))}
    environment.update(env or {})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                ENTOURAGE, "serve",
                "--tls-cert-file", tls.path("tls.crt"), "--tls-private-key-file", tls.path("tls.key"),
                "--host", "127.0.0.1", "--port", str(port), "--config", config_dir.path("config.yaml"),
                "--reload-interval", "0.2", *args,
            ],
            stdout=log, stderr=subprocess.STDOUT, env=environment,
        )  # fmt: skip
    webhook = Webhook(process, port, tls, config_dir, certificates, log_path, [certificates.ca_pem], client_certificate)
    try:
        webhook.wait_for(lambda: _answers(webhook, "/readyz" if ready else "/healthz"), timeout=20, what="the server to start")
    except BaseException:
        webhook.stop()
        raise
    return webhook


def _answers(webhook: Webhook, path: str) -> bool:
    if webhook.process.poll() is not None:
        raise AssertionError(f"entourage serve exited with {webhook.process.returncode}:\n{webhook.log_path.read_text()[-4000:]}")
    try:
        with webhook.client(timeout=2) as client:
            return client.get(path).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running(tmp_path: Path, *args: str, **kwargs: Any) -> Iterator[Webhook]:
    webhook = start(tmp_path, *args, **kwargs)
    try:
        yield webhook
    finally:
        webhook.stop()


def review(
    annotations: Mapping[str, str] | None = None, *, uid: str = "6c9a2f0e-1b7d-4e3a-9f58-2d4c8b1a7e35", namespace: str | None = None
) -> dict[str, Any]:
    from tests.conftest import reference_review

    document = reference_review(dict(annotations or {}))
    document["request"]["uid"] = uid
    if namespace:
        document["request"]["namespace"] = namespace
        document["request"]["object"]["metadata"]["namespace"] = namespace
    return document


def containers(response: Mapping[str, Any]) -> list[str]:
    """Names of the containers a response's JSONPatch adds (init and regular)."""
    import base64

    patch = json.loads(base64.b64decode(response["response"].get("patch", "") or "W10="))
    names: list[str] = []
    for operation in patch:
        if re.match(r"^/spec/(initContainers|containers)(/(\d+|-))?$", operation["path"]):
            value = operation["value"]
            for item in value if isinstance(value, list) else [value]:
                names.append(item["name"])
    return names


def native_sidecar(response: Mapping[str, Any]) -> bool:
    """Did the patch add an init container with restartPolicy: Always (a native sidecar)?"""
    import base64

    patch = json.loads(base64.b64decode(response["response"]["patch"]))
    for operation in patch:
        if operation["path"].startswith("/spec/initContainers"):
            value = operation["value"]
            for item in value if isinstance(value, list) else [value]:
                if item.get("restartPolicy") == "Always":
                    return True
    return False
