"""Where the pod lives in each workload kind, so `entourage inject` can work on manifests on disk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.engine.inject import Injection, inject_pod
from webhook.engine.settings import Settings

TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def inject_document(document: Any, settings: Settings) -> tuple[Any, Injection | None]:
    """Inject the pod (template) of one manifest; other documents come back untouched with None."""
    if not isinstance(document, Mapping) or document.get("kind") not in TEMPLATE_PATHS:
        return document, None
    path = TEMPLATE_PATHS[document["kind"]]
    template: Any = document
    for key in path:
        template = template.get(key) if isinstance(template, Mapping) else None
    if not isinstance(template, Mapping):
        return document, None
    injection = inject_pod(template, settings)
    if not path:
        return injection.pod, injection
    return _replace(document, path, injection.pod), injection


def _replace(document: Mapping[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    head, *rest = path
    return {**document, head: _replace(document[head], tuple(rest), value) if rest else value}
