"""The self-test: the apiserver's own view of the webhook, from inside.

Most injector outages are "the apiserver cannot reach the webhook" (no endpoints, a
NetworkPolicy, a broken Service) or "the caBundle is stale", and the webhook sees neither: no
request arrives. So every ``every`` seconds this loop asks the apiserver to create a small probe
pod that asks for an injection, as a server-side dry run (``dryRun=All``: admission runs in full,
nothing is stored), in each namespace the webhook configuration selects (or the ones named), and
checks that the pod came back injected. The result per namespace is a metric
(``entourage_selftest_success``), a log line and a Warning Event on the Namespace when it fails,
and ``explain`` can show it.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook import metrics
from webhook.cluster.kube import Api, ApiError, _Loop

log = logging.getLogger("entourage.selftest")

SELF_TEST_FAILED = "EntourageSelfTestFailed"
"""The reason of the Event a failing round writes on the Namespace (``explain`` reads it back)."""

PROBE_LABEL = "entourage.dev/self-test"
"""On the probe pod, so that a cluster's own policies can recognise (and exempt) it."""


@dataclass(frozen=True)
class Result:
    namespace: str
    ok: bool
    detail: str
    """Why it failed, in the apiserver's words where it gave some; "injected" when it passed."""
    at: float
    """Unix time of the check."""


def probe_pod(prefix: str, image: str) -> dict[str, Any]:
    """The smallest pod that asks for an injection (a wait-for container, which needs no port)
    and passes Pod Security ``restricted`` and a ResourceQuota that requires resources."""
    resources = {"requests": {"cpu": "1m", "memory": "4Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "entourage-self-test-",
            "labels": {PROBE_LABEL: "true"},
            "annotations": {f"{prefix}/wait-for": "dns://kubernetes.default.svc"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "resources": resources,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                }
            ],
        },
    }


def label_selector(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector object as the ``labelSelector`` query parameter, so the apiserver does the
    matching; ``matchExpressions`` operators are In, NotIn, Exists and DoesNotExist."""
    if not selector:
        return ""
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            terms.append(str(key))
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)


class SelfTest(_Loop):
    """Probes each selected namespace every ``every`` seconds; ``results`` holds the last of each."""

    def __init__(
        self,
        api: Api,
        *,
        configuration: str,
        prefix: str = "entourage.dev",
        image: str = "registry.k8s.io/pause:3.10",
        namespaces: Sequence[str] = (),
        max_namespaces: int = 10,
        every: float = 60.0,
    ) -> None:
        super().__init__("entourage-self-test", "self_test")
        self.api, self.configuration, self.prefix, self.image = api, configuration, prefix, image
        self.named, self.max_namespaces, self.every = tuple(namespaces), max_namespaces, every
        self.results: dict[str, Result] = {}
        self.lock = threading.Lock()
        self.offset = 0
        """Where the next round starts in the sorted selected namespaces (a rotating window)."""

    def namespaces(self) -> list[str]:
        """The named namespaces, else a window of at most ``max_namespaces`` of those the mutating
        configuration's namespaceSelector selects, moving on by one window each round."""
        if self.named:
            return list(self.named)
        configuration = self.api.get(f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{self.configuration}")
        if configuration is None:
            return []
        selectors = {label_selector(webhook.get("namespaceSelector")) for webhook in configuration.get("webhooks") or []}
        names: set[str] = set()
        for selector in selectors:
            items, _ = self.api.list_all("/api/v1/namespaces", label_selector=selector)
            names |= {item["metadata"]["name"] for item in items if (item.get("status") or {}).get("phase") != "Terminating"}
        ordered = sorted(names)
        if len(ordered) <= self.max_namespaces:
            return ordered
        start = self.offset % len(ordered)
        self.offset = start + self.max_namespaces
        return [ordered[(start + index) % len(ordered)] for index in range(self.max_namespaces)]

    def check(self, namespace: str) -> Result:
        path = f"/api/v1/namespaces/{namespace}/pods?dryRun=All"
        try:
            pod = self.api.request("POST", path, body=probe_pod(self.prefix, self.image))
        except ApiError as error:
            return Result(namespace, False, str(error), time.time())
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        if f"{self.prefix}/status" in annotations:
            return Result(namespace, True, "injected", time.time())
        return Result(
            namespace,
            False,
            "the probe pod was admitted without injection: the webhook was not called (selectors, "
            "matchConditions) or failed open (failurePolicy: Ignore) - see `entourage explain`",
            time.time(),
        )

    def round(self) -> list[Result]:
        """One probe per selected namespace; metrics, logs and Events for the results."""
        results = [self.check(namespace) for namespace in self.namespaces()]
        with self.lock:
            previous = self.results
            self.results = {
                **{n: r for n, r in previous.items() if n in {x.namespace for x in results}},
                **{r.namespace: r for r in results},
            }
        for gone in set(previous) - set(self.results):
            metrics.SELFTEST_SUCCESS.remove(gone)
        for result in results:
            metrics.SELFTEST_SUCCESS.labels(result.namespace).set(1 if result.ok else 0)
            if not result.ok:
                log.warning("self-test failed", extra={"fields": {"namespace": result.namespace, "detail": result.detail}})
                was = previous.get(result.namespace)
                if was is None or was.ok:
                    self._event(result)
        metrics.SELFTEST_LAST_RUN.set(time.time())
        return results

    def _event(self, result: Result) -> None:
        """One Warning on the Namespace when its self-test starts failing (not every round)."""
        stamp = datetime.datetime.fromtimestamp(result.at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{result.namespace}.", "namespace": result.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Namespace", "name": result.namespace},
            "reason": SELF_TEST_FAILED,
            "message": f"a dry-run probe pod was not injected: {result.detail}"[:1024],
            "type": "Warning",
            "source": {"component": "entourage"},
            "reportingComponent": "entourage",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.api.request("POST", f"/api/v1/namespaces/{result.namespace}/events", body=event)
        except ApiError as error:
            log.warning("self-test event failed", extra={"fields": {"namespace": result.namespace, "error": str(error)}})

    def run(self) -> None:
        attempt = 0
        while not self.stopping.wait(self.every if attempt == 0 else min(self.every, 2**attempt)):
            try:
                self.round()
                attempt = 0
            except ApiError as error:
                self.failed(error, attempt)
                attempt = min(attempt + 1, 6)
