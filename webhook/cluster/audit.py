"""Which pods missed injection: they ask for it by annotation but carry no status annotation.

Such pods were created while the webhook was unreachable under ``failurePolicy: Ignore``; their
owners have to restart them. Pure: pods and namespace annotations in, findings out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.engine.inject import requested_annotations, skip_reason
from webhook.engine.settings import Settings


@dataclass(frozen=True)
class Finding:
    namespace: str
    pod: str
    phase: str
    owners: tuple[str, ...]
    """``Kind/name`` of each owner reference (the controller first)."""
    requested: tuple[str, ...]
    """Our annotation keys the pod (or its namespace) sets."""

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "pod": self.pod, "phase": self.phase, "owners": list(self.owners), "requested": list(self.requested)}


def missed(pods: Iterable[Mapping[str, Any]], settings: Settings, namespace_annotations: Callable[[str], Mapping[str, str] | None]) -> list[Finding]:
    """Pods that would be injected if they were created now but never were. Finished pods are left out."""
    findings: list[Finding] = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        phase = str((pod.get("status") or {}).get("phase") or "")
        if phase in ("Succeeded", "Failed"):
            continue
        namespace = str(metadata.get("namespace") or "")
        requested = requested_annotations(pod, settings, namespace_annotations(namespace))
        if skip_reason(requested) is not None:
            continue
        owners = sorted(metadata.get("ownerReferences") or [], key=lambda owner: not owner.get("controller"))
        findings.append(
            Finding(
                namespace=namespace,
                pod=str(metadata.get("name") or ""),
                phase=phase,
                owners=tuple(f"{owner.get('kind')}/{owner.get('name')}" for owner in owners),
                requested=tuple(sorted(requested)),
            )
        )
    return sorted(findings, key=lambda finding: (finding.namespace, finding.pod))
