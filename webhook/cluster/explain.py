"""`entourage explain` against a cluster: what the apiserver decides before the webhook is called.

Reads the object, its Namespace, the installed Mutating/ValidatingWebhookConfigurations and the
webhook Service's EndpointSlices, then evaluates each webhook's rules, namespaceSelector,
objectSelector and matchConditions (``engine/matching.py``) as the apiserver would for the pod
(or, for a workload, the pods its template makes), and hands the engine's explanation
(``engine/explain.py``) these checks. Read-only: GETs and LISTs, nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.cluster.kube import Api, ApiError, NamespaceCache, VersionCheck
from webhook.cluster.selftest import SELF_TEST_FAILED
from webhook.engine import matching
from webhook.engine.annotations import STATUS
from webhook.engine.explain import Check, Explanation, Target, explain_pod, status_note
from webhook.engine.inject import ClusterFacts, requested_annotations, skip_reason
from webhook.engine.settings import Settings
from webhook.engine.workloads import pod_sites

ADMISSION = "/apis/admissionregistration.k8s.io/v1"


@dataclass(frozen=True)
class Reference:
    """``KIND/NAME`` as given, resolved to the kind's API collection."""

    kind: str
    name: str
    group: str
    version: str
    resource: str

    def path(self, namespace: str) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        return f"{base}/namespaces/{namespace}/{self.resource}/{self.name}"


_KINDS: dict[str, tuple[str, str, str, str]] = {
    # what kubectl accepts → (kind, group, version, resource)
    **dict.fromkeys(("pod", "pods", "po"), ("Pod", "", "v1", "pods")),
    **dict.fromkeys(("deployment", "deployments", "deploy"), ("Deployment", "apps", "v1", "deployments")),
    **dict.fromkeys(("statefulset", "statefulsets", "sts"), ("StatefulSet", "apps", "v1", "statefulsets")),
    **dict.fromkeys(("daemonset", "daemonsets", "ds"), ("DaemonSet", "apps", "v1", "daemonsets")),
    **dict.fromkeys(("replicaset", "replicasets", "rs"), ("ReplicaSet", "apps", "v1", "replicasets")),
    **dict.fromkeys(("job", "jobs"), ("Job", "batch", "v1", "jobs")),
    **dict.fromkeys(("cronjob", "cronjobs", "cj"), ("CronJob", "batch", "v1", "cronjobs")),
}


_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
"""A DNS subdomain (RFC 1123): what Kubernetes accepts as the name of these kinds and of a namespace."""


def parse_reference(text: str) -> Reference:
    """``pod/web``, ``deployment/web``, ... or ValueError saying what is accepted."""
    kind, _, name = text.partition("/")
    found = _KINDS.get(kind.lower())
    if found is None:
        raise ValueError(f"{text!r}: expected KIND/NAME with KIND one of pod, deployment, statefulset, daemonset, replicaset, job, cronjob")
    check_name(name, "NAME")
    return Reference(found[0], name, *found[1:])


def check_name(name: str, what: str) -> None:
    """Names go into API paths: only what Kubernetes itself allows."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r}: expected a Kubernetes name (lower-case letters, digits, '-' and '.')")


def explain_object(
    api: Api, reference: Reference, *, namespace: str, settings: Settings, configurations: Sequence[str] = ()
) -> list[Explanation]:
    """Every pod (template) of the object, explained with the apiserver's checks."""
    obj = api.request("GET", reference.path(namespace))
    found = api.request("GET", f"/api/v1/namespaces/{namespace}")
    labels = {**((found.get("metadata") or {}).get("labels") or {}), "kubernetes.io/metadata.name": namespace}
    annotations = NamespaceCache._annotations(found)
    mutating = _webhooks(api, "mutatingwebhookconfigurations", configurations)
    validating = _webhooks(api, "validatingwebhookconfigurations", configurations)
    facts = ClusterFacts(native_sidecars=_native_sidecars(api))
    explanations = []
    for site in pod_sites({**obj, "kind": reference.kind}):
        target = Target.of(site, namespace=namespace)
        explanation = explain_pod(site.template, settings, target, namespace_annotations=annotations, cluster=facts)
        pod = {**site.template, "metadata": {**(site.template.get("metadata") or {}), "namespace": namespace}}
        checks = _mutating_checks(api, mutating, pod, labels, target, settings)
        checks += _validating_checks(api, validating, obj, reference, labels)
        notes, existing = [_self_test_note(api, namespace)], None
        if reference.kind == "Pod":
            asks = skip_reason(requested_annotations(obj, settings, annotations)) is None
            notes.append(status_note(obj, settings, asks))
            existing = f"{settings.annotation_prefix}/{STATUS}" in ((obj.get("metadata") or {}).get("annotations") or {})
        explanations.append(explanation.with_cluster(checks, notes, existing))
    return explanations


def _self_test_note(api: Api, namespace: str) -> str:
    """The self-test's last failure in the namespace, from its Events (webhook/cluster/selftest.py)."""
    try:
        found = api.request("GET", f"/api/v1/namespaces/{namespace}/events", query=[("fieldSelector", f"reason={SELF_TEST_FAILED}")])
    except ApiError as error:
        return f"self-test: its Events cannot be read ({error})"
    events = sorted(found.get("items") or [], key=lambda event: str(event.get("lastTimestamp") or ""))
    if not events:
        return f"self-test: no failure recorded in namespace {namespace} (entourage_selftest_success shows each probed namespace's last result)"
    last = events[-1]
    return f"self-test: last failed at {last.get('lastTimestamp')}: {last.get('message')}"


def _native_sidecars(api: Api) -> bool | None:
    """As the webhook resolves ``nativeSidecars: auto`` (kube.VersionCheck); None when the
    versions cannot be read (listing nodes needs a permission explain does not otherwise need)."""
    try:
        return VersionCheck(api, lambda _: None).check()
    except ApiError:
        return None


@dataclass(frozen=True)
class _Webhook:
    configuration: str
    kind: str
    spec: Mapping[str, Any]

    @property
    def subject(self) -> str:
        return f"{self.kind} {self.configuration}, webhook {self.spec.get('name')}"


def _webhooks(api: Api, plural: str, names: Sequence[str]) -> list[_Webhook]:
    kind = "MutatingWebhookConfiguration" if plural.startswith("mutating") else "ValidatingWebhookConfiguration"
    items, _ = api.list_all(f"{ADMISSION}/{plural}")
    chosen = []
    for item in items:
        name = str((item.get("metadata") or {}).get("name"))
        hooks = item.get("webhooks") or []
        ours = name in names if names else "entourage" in name or any("entourage" in str(h.get("name")) for h in hooks)
        if ours:
            chosen += [_Webhook(name, kind, hook) for hook in hooks]
    return chosen


def _mutating_checks(
    api: Api, webhooks: list[_Webhook], pod: Mapping[str, Any], namespace_labels: Mapping[str, str], target: Target, settings: Settings
) -> list[Check]:
    if not webhooks:
        return [Check("MutatingWebhookConfiguration", "installed", False, "none for entourage: the apiserver calls no webhook for pods",
                      "helm install entourage charts/entourage (or give --webhook-configuration NAME)")]  # fmt: skip
    checks: list[Check] = []
    for hook in webhooks:
        checks += _hook_checks(api, hook, pod, "Pod", ("", "v1", "pods"), namespace_labels, target, settings)
    return checks


def _validating_checks(
    api: Api, webhooks: list[_Webhook], obj: Mapping[str, Any], reference: Reference, namespace_labels: Mapping[str, str]
) -> list[Check]:
    """Validating webhooks whose rules cover this kind judge the object as applied: whether they
    see it is said, never counted against injection (they do not inject)."""
    checks: list[Check] = []
    for hook in webhooks:
        rules = hook.spec.get("rules")
        operations = [
            operation
            for operation in ("CREATE", "UPDATE")
            if matching.rule_matches(
                rules, group=reference.group, version=reference.version, resource=reference.resource, operation=operation
            )
        ]
        if not operations:
            continue
        misses = [f"namespaceSelector {term}" for term in matching.unmet(hook.spec.get("namespaceSelector"), namespace_labels)]
        labels = (obj.get("metadata") or {}).get("labels") or {}
        misses += [f"objectSelector {term}" for term in matching.unmet(hook.spec.get("objectSelector"), labels)]
        for entry in hook.spec.get("matchConditions") or ():
            result = matching.condition(str(entry.get("expression", "")), obj)
            if result is None:
                misses.append(f"matchCondition {entry.get('name')} cannot be evaluated offline")
            elif not result:
                misses.append(f"matchCondition {entry.get('name')} is false")
        what = f"{reference.kind} {' and '.join(operations).lower()}"
        if misses:
            checks.append(Check(hook.subject, "validation", True, f"does not see this {what} ({'; '.join(misses)})"))
            continue
        checks.append(Check(hook.subject, "validation", True, f"checks this {what} with the same engine"))
        endpoint = _endpoints_check(
            api,
            hook.subject,
            hook.spec,
            on_ignore=f"the {reference.kind} is applied unchecked",
            on_fail=f"applying the {reference.kind} is refused",
        )
        # A validating webhook that cannot answer blocks applies, never injection: not a "no" here.
        checks.append(Check(endpoint.group, endpoint.subject, None if endpoint.ok is False else endpoint.ok, endpoint.detail, endpoint.fix))
    return checks


def _hook_checks(
    api: Api,
    hook: _Webhook,
    obj: Mapping[str, Any],
    kind: str,
    resource: tuple[str, str, str],
    namespace_labels: Mapping[str, str],
    target: Target,
    settings: Settings,
) -> list[Check]:
    spec, subject = hook.spec, hook.subject
    namespace = target.namespace
    checks = []
    group, version, plural = resource
    if not matching.rule_matches(spec.get("rules"), group=group, version=version, resource=plural, operation="CREATE"):
        checks.append(Check(subject, "rules", False, f"do not cover CREATE of {plural}", "reinstall the chart: its rules cover pod CREATE"))
        return checks
    checks.append(_namespace_check(subject, spec.get("namespaceSelector"), namespace_labels, namespace))
    checks.append(_object_check(subject, spec.get("objectSelector"), obj, target))
    checks += _condition_checks(subject, spec.get("matchConditions"), obj, settings)
    checks.append(_endpoints_check(api, subject, spec))
    return checks


def _namespace_check(subject: str, selector: Any, labels: Mapping[str, str], namespace: str) -> Check:
    terms = matching.requirements(selector)
    unmet = matching.unmet(selector, labels)
    name = "namespaceSelector"
    if not terms:
        return Check(subject, name, True, "none: every namespace")
    if not unmet:
        return Check(subject, name, True, f"namespace {namespace} matches ({'; '.join(map(str, terms))})")
    term = unmet[0]
    if term.key == "kubernetes.io/metadata.name":
        return Check(subject, name, False, f"namespace {namespace} is excluded ({term})",
                     "run the workload in another namespace: this one is never sent to the webhook (the release, "
                     "kube-system, kube-node-lease and injection.excludedNamespaces are excluded by the chart)")  # fmt: skip
    have = labels.get(term.key)
    missing = f"namespace {namespace} has {term.key}={have}" if have is not None else f"namespace {namespace} lacks the label {term.key}"
    return Check(
        subject, name, False, f"{missing} ({term})", matching.label_fix(term, "namespace", f"kubectl label namespace {namespace} {{label}}")
    )


def _object_check(subject: str, selector: Any, obj: Mapping[str, Any], target: Target) -> Check:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    terms = matching.requirements(selector)
    unmet = matching.unmet(selector, labels)
    name = "objectSelector"
    if not terms:
        return Check(subject, name, True, "none: every pod")
    if not unmet:
        return Check(subject, name, True, f"the pod's labels match ({'; '.join(map(str, terms))})")
    term = unmet[0]
    have = labels.get(term.key)
    missing = f"the pod has {term.key}={have}" if have is not None else f"the pod lacks the label {term.key}"
    return Check(subject, name, False, f"{missing} ({term})", _label_fix(term, target))


def _label_fix(term: matching.Requirement, target: Target) -> str:
    """The command that changes the labels of the pods to come (the template's, for a workload)."""
    value = None if term.operator in ("NotIn", "DoesNotExist") else (term.values[0] if term.values else "<value>")
    return target.change("labels", term.key, value)


def _condition_checks(subject: str, conditions: Any, obj: Mapping[str, Any], settings: Settings) -> list[Check]:
    checks = []
    for entry in conditions or ():
        expression = str(entry.get("expression", ""))
        name = f"matchCondition {entry.get('name')}"
        result = matching.condition(expression, obj)
        if result is None:
            checks.append(Check(subject, name, None, f"cannot be evaluated offline: {expression}"))
        elif result:
            checks.append(Check(subject, name, True, "true"))
        else:
            prefix = settings.annotation_prefix
            checks.append(Check(subject, name, False, f"false for this pod: {expression}",
                                f"give the pod itself an annotation under {prefix}/ (namespace annotations do not count here), "
                                "or turn webhook.matchConditions.enabled off in the chart"))  # fmt: skip
    return checks


def _endpoints_check(
    api: Api,
    subject: str,
    spec: Mapping[str, Any],
    *,
    on_ignore: str = "pods are created WITHOUT injection",
    on_fail: str = "pod creation is refused",
) -> Check:
    service = (spec.get("clientConfig") or {}).get("service")
    policy = spec.get("failurePolicy", "Fail")
    if not isinstance(service, Mapping):
        return Check(subject, "endpoint", None, "called by URL, not through a Service: its readiness cannot be read here")
    namespace, name = service.get("namespace"), service.get("name")
    found = api.request(
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        query=[("labelSelector", f"kubernetes.io/service-name={name}")],
    )
    slices = found.get("items") or []
    ready = sum(
        1 for item in slices for endpoint in item.get("endpoints") or () if (endpoint.get("conditions") or {}).get("ready") is not False
    )
    label = f"Service {namespace}/{name}"
    if ready:
        return Check(subject, label, True, f"{ready} ready endpoint(s)")
    consequence = on_ignore if policy == "Ignore" else on_fail
    return Check(subject, label, False, f"no ready endpoints (failurePolicy {policy}: {consequence})",
                 f"kubectl -n {namespace} get pods,endpointslices -l app.kubernetes.io/name=entourage; kubectl -n {namespace} describe deployment {name}")  # fmt: skip
