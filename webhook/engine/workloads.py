"""Where the pod lives in each workload kind, so `entourage inject` can work on manifests on disk."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.engine.inject import Injection, inject_pod, requested_annotations, skip_reason
from webhook.engine.settings import Settings
from webhook.errors import PodDenied

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

GENERIC_PATH = ("spec", "template")
"""Other kinds (Argo Rollouts, OpenKruise CloneSets, ...) are read as workloads when they carry a
pod template here: a map whose ``spec.containers`` is a list."""


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


# -- whole manifests: Lists, any kind with a pod template -----------------------------------------


@dataclass(frozen=True)
class Site:
    """One pod or pod template in a manifest: the object holding it and where it sits."""

    kind: str
    name: str
    path: tuple[str, ...]
    """Keys from the object to the pod (empty for a Pod)."""
    template: Mapping[str, Any]
    item: int | None = None
    """The index in a ``kind: List`` document's ``items``; None for a top-level object."""
    namespace: str = ""
    """The object's ``metadata.namespace``, when it says."""

    @property
    def where(self) -> str:
        """``Deployment web`` or ``List item 2 (Deployment web)``, then the template's path."""
        owner = f"{self.kind} {self.name}" if self.item is None else f"item {self.item} ({self.kind} {self.name})"
        return owner + (f" {'.'.join(self.path)}" if self.path else "")


def _at(document: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = document
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _is_pod_template(value: Any) -> bool:
    spec = value.get("spec") if isinstance(value, Mapping) else None
    return isinstance(spec, Mapping) and isinstance(spec.get("containers"), list)


def _object_site(document: Any, item: int | None) -> Site | None:
    if not isinstance(document, Mapping):
        return None
    kind = str(document.get("kind") or "?")
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    path = TEMPLATE_PATHS.get(kind, GENERIC_PATH)
    template = _at(document, path)
    if not (isinstance(template, Mapping) if kind in TEMPLATE_PATHS else _is_pod_template(template)):
        return None
    return Site(kind, name if isinstance(name, str) else "?", path, template, item, namespace if isinstance(namespace, str) else "")


def pod_sites(document: Any) -> list[Site]:
    """Every pod or pod template of one document: the object's own, or each item's of a List."""
    if isinstance(document, Mapping) and document.get("kind") == "List" and isinstance(document.get("items"), list):
        sites = (_object_site(item, index) for index, item in enumerate(document["items"]))
        return [site for site in sites if site is not None]
    site = _object_site(document, None)
    return [site] if site is not None else []


@dataclass(frozen=True)
class ManifestResult:
    """One document after injection: ``document`` is the input itself when nothing changed."""

    document: Any
    original: Any
    injections: tuple[tuple[Site, Injection], ...] = ()
    denials: tuple[tuple[Site, PodDenied], ...] = ()

    @property
    def changed(self) -> bool:
        return self.document is not self.original


def inject_manifest(document: Any, settings: Settings) -> ManifestResult:
    """Inject every pod (template) of a document that asks for it, collecting every denial.

    Known workload kinds go through ``inject_pod`` as the webhook would see their pods; other kinds
    with a ``spec.template`` only when the template asks (``skip_reason``), so a custom resource
    whose template merely looks like a pod is never touched."""
    injections: list[tuple[Site, Injection]] = []
    denials: list[tuple[Site, PodDenied]] = []
    result = document
    for site in pod_sites(document):
        if site.kind not in TEMPLATE_PATHS and skip_reason(requested_annotations(site.template, settings, None)) is not None:
            continue
        try:
            injection = inject_pod(site.template, settings)
        except PodDenied as denial:
            denials.append((site, denial))
            continue
        injections.append((site, injection))
        if injection.pod is not site.template:
            result = _put(result, site, injection.pod)
    return ManifestResult(result, document, tuple(injections), tuple(denials))


def _put(document: Mapping[str, Any], site: Site, pod: Mapping[str, Any]) -> Any:
    if site.item is None:
        return _replace(document, site.path, pod) if site.path else pod
    items = list(document["items"])
    items[site.item] = _replace(items[site.item], site.path, pod) if site.path else pod
    return {**document, "items": items}
