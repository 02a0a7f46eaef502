"""Restarting the workloads whose pods need it, the way ``kubectl rollout restart`` does.

A pod's controller is resolved to the workload a person manages (a ReplicaSet to its
Deployment, a Job to its CronJob). Deployments, StatefulSets and DaemonSets are restarted by
setting ``kubectl.kubernetes.io/restartedAt`` on their pod template, one workload at a time with
a pause between them; bare pods, Jobs, CronJobs and ReplicaSets without a Deployment cannot be
restarted that way and are listed for a person to handle.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from webhook.cluster.kube import Api, ApiError

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"

RESTARTABLE = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}
"""Kinds restarted through their pod template (apps/v1), with their resource names."""

_PATHS = {"ReplicaSet": "/apis/apps/v1/namespaces/{}/replicasets/{}", "Job": "/apis/batch/v1/namespaces/{}/jobs/{}"}
"""Controllers that may themselves be controlled (by a Deployment, by a CronJob)."""


@dataclass
class Workload:
    namespace: str
    kind: str
    """``Pod`` for a pod without a controller."""
    name: str
    pods: list[str] = field(default_factory=list)

    @property
    def restartable(self) -> bool:
        return self.kind in RESTARTABLE

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def workloads(api: Api, pods: Iterable[tuple[str, str, tuple[str, str] | None]]) -> list[Workload]:
    """Group (namespace, pod, controller) by the workload that owns them, resolving each
    ReplicaSet and Job once; an owner the API no longer shows is kept as it is."""
    resolved: dict[tuple[str, str, str], tuple[str, str]] = {}
    grouped: dict[tuple[str, str, str], Workload] = {}
    for namespace, pod, controller in pods:
        kind, name = controller or ("Pod", pod)
        if kind in _PATHS:
            key = (namespace, kind, name)
            if key not in resolved:
                resolved[key] = _owner(api, namespace, kind, name)
            kind, name = resolved[key]
        workload = grouped.setdefault((namespace, kind, name), Workload(namespace, kind, name))
        workload.pods.append(pod)
    return sorted(grouped.values(), key=lambda w: (w.namespace, w.kind, w.name))


def _owner(api: Api, namespace: str, kind: str, name: str) -> tuple[str, str]:
    found = api.get(_PATHS[kind].format(namespace, name))
    for owner in ((found or {}).get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("controller") is True:
            return str(owner.get("kind")), str(owner.get("name"))
    return kind, name


def restart(
    api: Api,
    targets: list[Workload],
    *,
    apply: bool,
    pause: float,
    say: Callable[[str], None],
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Restart each restartable workload (or say it would, unless ``apply``); returns how many
    restarts failed. The others are listed as skipped, with why."""
    failures = 0
    restarted = 0
    for workload in targets:
        if not workload.restartable:
            why = (
                "a bare pod: delete it and create it again"
                if workload.kind == "Pod"
                else f"a {workload.kind} is not restarted through a template: its next pods get the new companions"
            )
            say(f"skipped {workload.namespace}/{workload} ({len(workload.pods)} pods): {why}")
            continue
        if not apply:
            say(f"would restart {workload.namespace}/{workload} ({len(workload.pods)} pods)")
            continue
        if restarted:
            sleep(pause)
        path = f"/apis/apps/v1/namespaces/{workload.namespace}/{RESTARTABLE[workload.kind]}/{workload.name}"
        stamp = clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        try:
            api.request("PATCH", path, body=body, content_type="application/strategic-merge-patch+json")
        except ApiError as error:
            failures += 1
            say(f"failed to restart {workload.namespace}/{workload}: {error}")
            continue
        restarted += 1
        say(f"restarted {workload.namespace}/{workload} ({len(workload.pods)} pods)")
    return failures
