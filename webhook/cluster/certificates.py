"""Self-managed certificates: a Secret holds our CA and serving pair; every replica serves from it.

    CertificateManager   reads or creates the Secret (create if absent, else use what is there:
                         replicas starting together share one CA), writes the pair into a private
                         directory that tls.ServingTLS reloads, and applies rotation.next_state
                         with writes conditional on the Secret's resourceVersion
    SecretStore          the Secret as rotation.Stored, with its metadata
    cabundle.BundleKeeper keeps the webhook configurations' caBundle equal to the trusted CAs

The Secret is owned (ownerReferences) by our MutatingWebhookConfiguration, so uninstalling the
chart deletes it too. Nothing else is written, and the chart renders no key material.
"""

from __future__ import annotations

import base64
import datetime
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from webhook import certs, metrics
from webhook.cluster import cabundle, rotation
from webhook.cluster.kube import Api, ApiError, _Loop

log = logging.getLogger("entourage.certificates")

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)
_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def encode(stored: rotation.Stored) -> tuple[dict[str, str], dict[str, str]]:
    """(data, annotations) of the Secret for ``stored``; ca.crt is the trusted bundle (what the
    caBundle gets, and what a client such as Prometheus verifies with)."""
    files = {
        "tls.crt": stored.cert_pem,
        "tls.key": stored.key_pem,
        "ca.crt": stored.bundle,
        "issuer.crt": stored.issuer.cert_pem,
        "issuer.key": stored.issuer.key_pem,
    }
    if stored.next is not None:
        files |= {"next.crt": stored.next.cert_pem, "next.key": stored.next.key_pem}
    data = {name: base64.b64encode(content).decode("ascii") for name, content in files.items()}
    annotations = {rotation.ISSUED_AT: stored.issued_at.strftime(_STAMP), rotation.TRUSTED_SINCE: stored.trusted_since.strftime(_STAMP)}
    return data, annotations


def decode(secret: dict[str, Any]) -> rotation.Stored:
    """The Secret as rotation.Stored; ValueError when it lacks a key or holds no certificate."""
    data = {name: base64.b64decode(value) for name, value in (secret.get("data") or {}).items()}
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    try:
        issuer = certs.Authority(data["issuer.crt"], data["issuer.key"])
        upcoming = certs.Authority(data["next.crt"], data["next.key"]) if "next.crt" in data else None
        trusted = tuple(_PEM.findall(data["ca.crt"]))
        stored = rotation.Stored(
            issuer=issuer,
            cert_pem=data["tls.crt"],
            key_pem=data["tls.key"],
            trusted=trusted,
            issued_at=datetime.datetime.strptime(annotations[rotation.ISSUED_AT], _STAMP).replace(tzinfo=datetime.UTC),
            trusted_since=datetime.datetime.strptime(annotations[rotation.TRUSTED_SINCE], _STAMP).replace(tzinfo=datetime.UTC),
            next=upcoming,
        )
        certs.validity(stored.cert_pem), certs.validity(issuer.cert_pem)
    except KeyError as error:
        raise ValueError(f"the Secret has no {error.args[0]}") from None
    if not trusted:
        raise ValueError("the Secret's ca.crt holds no certificate")
    return stored


class SecretStore:
    """Our one Secret: read, create (409 when another replica was first), replace (409 when stale)."""

    def __init__(self, api: Api, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.path = f"/api/v1/namespaces/{namespace}/secrets/{name}"

    def read(self) -> dict[str, Any] | None:
        return self.api.get(self.path)

    def create(self, stored: rotation.Stored, owner: dict[str, Any] | None) -> dict[str, Any]:
        data, annotations = encode(stored)
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "annotations": annotations,
                                    "labels": {"app.kubernetes.io/managed-by": "entourage"}}  # fmt: skip
        if owner is not None:
            metadata["ownerReferences"] = [owner]
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata, "data": data}
        return self.api.request("POST", f"/api/v1/namespaces/{self.namespace}/secrets", body=body)

    def replace(self, secret: dict[str, Any], stored: rotation.Stored, owner: dict[str, Any] | None = None) -> dict[str, Any]:
        """PUT with the read resourceVersion: 409 when another replica wrote since."""
        data, annotations = encode(stored)
        metadata = dict(secret["metadata"])
        metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}
        if owner is not None:
            metadata["ownerReferences"] = [owner]
        return self.api.request("PUT", self.path, body={**secret, "metadata": metadata, "data": data})


class _BundleLoop(_Loop):
    """A loop that owns caBundle keepers: they start and stop with it."""

    keepers: list[cabundle.BundleKeeper]

    def start(self) -> None:
        super().start()
        for keeper in self.keepers:
            keeper.start()

    def stop(self) -> None:
        super().stop()
        for keeper in self.keepers:
            keeper.stop()


class CertificateManager(_BundleLoop):
    """The self-managed mode of one process: bootstrap, then a reconcile every ``every`` seconds."""

    def __init__(
        self, api: Api, options: rotation.CertificateOptions, *, directory: Path | None = None, every: float = 2.0,
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:  # fmt: skip
        super().__init__("entourage-certificates", "manage_certificates")
        if options.secret is None:
            raise ValueError("the self-managed mode needs a Secret name")
        self.api, self.options, self.every, self.clock = api, options, every, clock
        self.store = SecretStore(api, options.namespace, options.secret)
        self.directory = directory or Path(tempfile.mkdtemp(prefix="entourage-tls-"))
        self.serving: bytes | None = None
        self.keepers = cabundle.keepers(api, options.mutating, options.validating, self.wanted_bundle, every=every)

    @property
    def cert_file(self) -> str:
        return str(self.directory / "tls.crt")

    @property
    def key_file(self) -> str:
        return str(self.directory / "tls.key")

    def wanted_bundle(self) -> str | None:
        """The trusted CAs as caBundle, read fresh from the Secret (for the keepers)."""
        secret = self.store.read()
        return None if secret is None else (secret.get("data") or {}).get("ca.crt")

    def bootstrap(self) -> None:
        """Read or create the Secret and write the pair to serve, retrying until it works."""
        attempt = 0
        while True:
            try:
                self.reconcile()
                return
            except Exception as error:  # the API may come up after us
                if self.stopping.is_set():
                    raise
                self.failed(error, attempt)
                attempt = min(attempt + 1, 6)

    def _owner(self) -> dict[str, Any] | None:
        """Our first MutatingWebhookConfiguration as owner, so the garbage collector deletes the
        Secret with the release (a namespaced object may have a cluster-scoped owner)."""
        for keeper in self.keepers:
            configuration = keeper.read() if keeper.plural == "mutatingwebhookconfigurations" else None
            if configuration is not None:
                metadata = configuration["metadata"]
                return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                        "name": metadata["name"], "uid": metadata["uid"]}  # fmt: skip
        return None

    def reconcile(self) -> None:
        """One round: read (or create) the Secret, serve what it holds, make the step that is due."""
        secret = self.store.read()
        if secret is None:
            secret = self._create()
        try:
            stored = decode(secret)
        except ValueError as error:
            log.warning(
                "the certificate Secret is unusable; replacing it", extra={"fields": {"secret": self.options.secret, "error": str(error)}}
            )
            self._write(secret, rotation.initial(self.options, self.clock()))
            return
        self._serve(stored)
        trust_all = stored.next is None or all(keeper.trusts(base64.b64encode(stored.bundle).decode("ascii")) for keeper in self.keepers)
        due = rotation.next_state(stored, self.options, self.clock(), configurations_trust_all=trust_all)
        owner = self._owner() if not secret["metadata"].get("ownerReferences") else None
        if due is not None or owner is not None:
            self._write(secret, due or stored, owner)

    def _create(self) -> dict[str, Any]:
        stored = rotation.initial(self.options, self.clock())
        try:
            secret = self.store.create(stored, self._owner())
            log.info("created the certificate Secret with a new CA", extra={"fields": {"secret": self.options.secret}})
            return secret
        except ApiError as error:
            if error.status != 409:
                raise
        found = self.store.read()  # another replica was first: use its CA
        if found is None:
            raise ApiError(f"secret {self.options.secret}: created by another replica, then gone", 404)
        return found

    def _write(self, secret: dict[str, Any], stored: rotation.Stored, owner: dict[str, Any] | None = None) -> None:
        try:
            self.store.replace(secret, stored, owner)
        except ApiError as error:
            if error.status == 409:
                return  # another replica made this step first; the next round reads it
            raise
        metrics.CERTIFICATE_ROTATIONS.inc()
        log.info(
            "updated the certificate Secret",
            extra={"fields": {"secret": self.options.secret, "trusted_cas": len(stored.trusted), "next_ca": stored.next is not None}},
        )
        self._serve(stored)
        for keeper in self.keepers:
            keeper.reconcile()

    def _serve(self, stored: rotation.Stored) -> None:
        """Hand the pair to tls.ServingTLS (it reloads the directory every reload interval)."""
        pair = stored.cert_pem + stored.key_pem
        if pair != self.serving:
            certs.publish(self.directory, {"tls.crt": stored.cert_pem, "tls.key": stored.key_pem, "ca.crt": stored.bundle})
            self.serving = pair
            metrics.CA_EXPIRY.set(certs.validity(stored.issuer.cert_pem)[1].timestamp())

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.directory, ignore_errors=True)  # the private key leaves with us

    def run(self) -> None:
        attempt = 0
        while not self.stopping.wait(self.every):
            try:
                self.reconcile()
                attempt = 0
            except Exception as error:  # noqa: BLE001 - keep serving what we have
                self.failed(error, attempt)
                attempt = min(attempt + 1, 6)


class CAFileBundle(_BundleLoop):
    """The caBundle from a file (a mounted Secret's ca.crt, ``secret`` mode): keepers reconcile
    whenever it changes."""

    def __init__(self, api: Api, options: rotation.CertificateOptions, *, every: float = 2.0) -> None:
        super().__init__("entourage-ca-file", "keep_ca_bundle")
        if options.ca_file is None:
            raise ValueError("a CA file is needed")
        self.ca_file, self.every = options.ca_file, every
        self.keepers = cabundle.keepers(api, options.mutating, options.validating, self.wanted_bundle, every=every)
        self.seen: str | None = None

    def wanted_bundle(self) -> str | None:
        try:
            return base64.b64encode(Path(self.ca_file).read_bytes()).decode("ascii")
        except OSError:
            return None

    def run(self) -> None:
        attempt = 0
        while not self.stopping.wait(self.every):
            bundle = self.wanted_bundle()
            if bundle == self.seen:
                continue
            try:
                for keeper in self.keepers:
                    keeper.reconcile()
                self.seen, attempt = bundle, 0
            except Exception as error:  # noqa: BLE001 - keep the caBundle we last set
                self.failed(error, attempt)
                attempt = min(attempt + 1, 6)
