"""The caBundle keeper: our webhook configurations' caBundle stays equal to the CAs we trust.

One ``BundleKeeper`` per Mutating or Validating webhook configuration, by name (the RBAC grants
get/patch/watch on those names only). It reconciles at start, then watches the configuration
(``fieldSelector=metadata.name=NAME``) and corrects every change that leaves a webhook without
our bundle at once: a GitOps sync that applies the chart's manifest without ``caBundle``, a human
edit. The bundle it wants is read fresh (``wanted()``) before each patch, so two replicas of
different ages never patch each other's bundle back and forth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from webhook.cluster.kube import Api, _Loop

log = logging.getLogger("entourage.cabundle")

GROUP = "/apis/admissionregistration.k8s.io/v1"


class BundleKeeper(_Loop):
    """Keeps ``clientConfig.caBundle`` of every webhook of one configuration equal to ``wanted()``."""

    def __init__(
        self, api: Api, plural: str, name: str, wanted: Callable[[], str | None], *, every: float = 2.0, watch_seconds: int = 300
    ) -> None:
        super().__init__(f"entourage-cabundle-{name}", "keep_ca_bundle")
        self.api, self.plural, self.name, self.wanted = api, plural, name, wanted
        self.every, self.watch_seconds = every, watch_seconds
        self.path = f"{GROUP}/{plural}/{name}"

    def read(self) -> dict[str, Any] | None:
        """The configuration, or None while it does not exist (not installed yet, or uninstalled)."""
        return self.api.get(self.path)

    def trusts(self, bundle: str) -> bool:
        """Every webhook of the configuration carries exactly ``bundle`` (True when it does not exist)."""
        configuration = self.read()
        return configuration is None or not _drifted(configuration, bundle)

    def reconcile(self, configuration: dict[str, Any] | None = None) -> bool:
        """Patch the webhooks whose caBundle differs; True when a PATCH was sent."""
        configuration = configuration if configuration is not None else self.read()
        if configuration is None:
            return False
        bundle = self.wanted()
        if bundle is None or not _drifted(configuration, bundle):
            return False
        operations: list[dict[str, Any]] = []
        for index, webhook in enumerate(configuration.get("webhooks") or []):
            if (webhook.get("clientConfig") or {}).get("caBundle") != bundle:
                # `test` first: if the list changed under us, the PATCH fails instead of hitting another webhook.
                operations.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.get("name")})
                operations.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": bundle})
        self.api.request("PATCH", self.path, body=operations, content_type="application/json-patch+json")
        log.info("corrected caBundle", extra={"fields": {"configuration": f"{self.plural}/{self.name}", "webhooks": len(operations) // 2}})
        return True

    def run(self) -> None:
        attempt = 0
        while not self.stopping.is_set():
            try:
                configuration = self.read()
                if configuration is None:
                    self.stopping.wait(self.every)
                    continue
                self.reconcile(configuration)
                attempt = 0
                self._watch(str(configuration["metadata"].get("resourceVersion") or ""))
            except Exception as error:  # noqa: BLE001 - the loop must outlive any failure
                self.failed(error, attempt)
                attempt = min(attempt + 1, 6)

    def _watch(self, version: str) -> None:
        query_path = f"{GROUP}/{self.plural}"
        for event in self.api.watch(query_path, version, seconds=self.watch_seconds, field_selector=f"metadata.name={self.name}"):
            if self.stopping.is_set():
                return
            kind, item = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                return  # e.g. 410 Gone: read again
            if kind in ("ADDED", "MODIFIED"):
                self.reconcile(item)


def _drifted(configuration: dict[str, Any], bundle: str) -> bool:
    return any((webhook.get("clientConfig") or {}).get("caBundle") != bundle for webhook in configuration.get("webhooks") or [])


def keepers(
    api: Api, mutating: tuple[str, ...], validating: tuple[str, ...], wanted: Callable[[], str | None], *, every: float
) -> list[BundleKeeper]:
    """One keeper per named configuration."""
    return [BundleKeeper(api, "mutatingwebhookconfigurations", name, wanted, every=every) for name in mutating] + [
        BundleKeeper(api, "validatingwebhookconfigurations", name, wanted, every=every) for name in validating
    ]
