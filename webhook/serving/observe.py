"""What each answered admission leaves behind: metrics, the admission log line, an Event.

Events reach other people's objects, so their text is fixed and the only names in them are
Kubernetes object names that pass ``grammar.is_object_name``: never a raw annotation value or a
name from a request that does not look like one (a forged review must not write free text).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from prometheus_client import Counter

from webhook import metrics
from webhook.admission.decide import OUTCOME_DENIED, OUTCOME_ERROR, OUTCOME_INJECTED, Decision
from webhook.admission.validate import Verdict
from webhook.engine import grammar
from webhook.serving.logs import AdmissionLog

if TYPE_CHECKING:
    from webhook.cluster.kube import EventRecorder

admissions = logging.getLogger("entourage.admission")

_admissions: dict[tuple[str, str], Counter] = {}
_components: dict[tuple[str, str, str], Counter] = {}


def count(decision: Decision) -> None:
    """Count one decision (``metrics.ADMISSION_TALLY`` adds the counts to the instruments). The
    labelled children are kept (``labels()`` takes a lock and builds a key on every call); the label
    sets are small: outcomes and reasons are fixed, profiles come from the configuration."""
    tally = metrics.ADMISSION_TALLY
    key = (decision.outcome, decision.reason)
    counter = _admissions.get(key)
    if counter is None:
        counter = _admissions[key] = metrics.ADMISSIONS.labels(*key)
    tally.count(counter)
    tally.observe(decision.duration)
    if decision.reused:
        tally.count(metrics.ANSWERS_REUSED)
    for made in decision.made:
        labels = (made.kind, made.profile, made.profile_version)
        components = _components.get(labels)
        if components is None:
            components = _components[labels] = metrics.INJECTED_COMPONENTS.labels(*labels)
        tally.count(components)


def admission(decision: Decision, log: AdmissionLog, events: EventRecorder | None) -> None:
    """Metrics, the log line and (with a cluster, not for dry runs) an Event for one decision."""
    count(decision)
    fields = {
        "uid": decision.uid,
        "namespace": decision.namespace,
        "pod": decision.pod_name,
        "decision": decision.outcome,
        "reason": decision.reason,
        "components": decision.components,
        "duration_ms": round(decision.duration * 1000, 3),
    }
    if decision.outcome == OUTCOME_ERROR:
        admissions.error("admission", extra={"fields": fields})
    elif admissions.isEnabledFor(logging.INFO):
        log.write(fields)
    # sideEffects: NoneOnDryRun promises nothing is written for a dry run.
    if events is not None and not decision.dry_run and decision.outcome in (OUTCOME_INJECTED, OUTCOME_DENIED, OUTCOME_ERROR):
        event(decision, events)
        if decision.namespace_keys:
            namespace_event(decision, events)


_KEY = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
"""An annotation key as the apiserver accepts it (a DNS-subdomain prefix, a name of at most 63)."""


def namespace_event(decision: Decision, events: EventRecorder) -> None:
    """One Event on the Namespace whose annotations deny its pods: whoever owns the Namespace
    learns it from ``kubectl describe namespace``, with the command that fixes it. Rate-limited
    per Namespace like every Event, so a Deployment's 500 denied pods write one."""
    namespace = decision.namespace
    keys = [key for key in decision.namespace_keys if len(key) <= 126 and _KEY.fullmatch(key)][:8]
    if not grammar.is_object_name(namespace) or not keys:
        return
    message = (
        f"pods in namespace {namespace} are denied: its annotation{'s' if len(keys) > 1 else ''} {', '.join(keys)} "
        f"{'are' if len(keys) > 1 else 'is'} invalid (the pod's admission error says why); remove with: "
        f"kubectl annotate namespace {namespace} {' '.join(key + '-' for key in keys)}"
    )
    involved = {"apiVersion": "v1", "kind": "Namespace", "name": namespace}
    events.record(namespace=namespace, involved=involved, reason="InvalidNamespaceAnnotations", message=message, warning=True)


def event(decision: Decision, events: EventRecorder) -> None:
    """One Event on the pod's controller (or its Namespace), in fixed words and checked names."""
    namespace = decision.namespace
    if not grammar.is_object_name(namespace):
        return
    owner = decision.owner
    if (
        owner is not None
        and grammar.is_object_name(owner.get("name"))
        and all(isinstance(owner.get(k), str) and len(owner[k]) <= 253 for k in ("apiVersion", "kind"))
    ):
        involved = {**owner, "namespace": namespace}
    else:
        involved = {"apiVersion": "v1", "kind": "Namespace", "name": namespace}
    pod = decision.pod_name if grammar.is_object_name(decision.pod_name, prefix=True) else "(unnamed)"
    if decision.outcome == OUTCOME_INJECTED:
        reason, warning = "Injected", False
        message = f"pod {pod}: injected {', '.join(decision.components)}"
    elif decision.outcome == OUTCOME_DENIED:
        reason, warning = "InjectionDenied", True
        message = f"pod {pod}: injection denied: its Entourage annotations are invalid; the pod's admission error lists each problem"
    else:
        reason, warning = "InjectionFailed", True
        message = f"pod {pod}: injection failed with an internal error; see the webhook's logs"
    events.record(namespace=namespace, involved=involved, reason=reason, message=message, warning=warning)


def validation(verdict: Verdict, log: AdmissionLog) -> None:
    """The metric and the log line for one ``POST /validate`` answer (no Event: the person who
    applied the object reads the answer itself, at once)."""
    metrics.VALIDATIONS.labels(verdict.kind, verdict.outcome, verdict.reason).inc()
    fields = {
        "uid": verdict.uid,
        "namespace": verdict.namespace,
        "kind": verdict.kind,
        "decision": verdict.outcome,
        "reason": verdict.reason,
        "duration_ms": round(verdict.duration * 1000, 3),
    }
    if verdict.outcome == "error":
        admissions.error("validation", extra={"fields": fields})
    elif admissions.isEnabledFor(logging.INFO):
        log.write(fields, msg="validation")
