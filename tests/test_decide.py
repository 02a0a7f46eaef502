"""Deciding on an AdmissionReview (webhook/admission/decide.py): which requests are pod creations,
and what each outcome answers, in process on the apiserver's reference review."""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
import pytest

from tests.conftest import reference_review
from webhook.admission.decide import (
    INVALID,
    NOT_A_POD,
    NOT_CREATE,
    OUTCOME_DENIED,
    OUTCOME_INJECTED,
    OUTCOME_SKIPPED,
    admit,
    failed,
)
from webhook.engine.inject import INJECTED, NO_ANNOTATION, ClusterFacts, inject_pod
from webhook.engine.settings import Settings
from webhook.errors import ReviewError

UID = "6c9a2f0e-1b7d-4e3a-9f58-2d4c8b1a7e35"
REPLICASET = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9c6b5f4", "uid": "3f0b6a4e-8a51-4c8e-9d0e-5b1f2a7c9e11"}


def logging_review(**request: Any) -> dict[str, Any]:
    review = reference_review({"entourage.dev/logging": "true"})
    review["request"].update(request)
    return review


@pytest.mark.parametrize(
    "kind",
    [
        {"group": "example.com", "version": "v1", "kind": "Pod"},  # a custom resource whose kind is Pod
        {"group": "apps", "version": "v1", "kind": "Deployment"},
        {"group": "", "version": "v1", "kind": "Service"},
        {"version": "v1", "kind": "Pod"},
        "Pod",
        None,
    ],
    ids=["custom-resource-named-pod", "deployment", "service", "no-group", "not-an-object", "null"],
)
def test_only_a_core_pod_is_a_pod(settings: Settings, kind: Any) -> None:
    decision = admit(logging_review(kind=kind), settings)
    assert (decision.outcome, decision.reason) == (OUTCOME_SKIPPED, NOT_A_POD)
    assert decision.review["response"] == {"uid": UID, "allowed": True}
    assert decision.owner is None


def test_a_core_pod_creation_is_injected(settings: Settings) -> None:
    decision = admit(logging_review(), settings)
    assert (decision.outcome, decision.reason, decision.components) == (OUTCOME_INJECTED, INJECTED, ["entourage-logging"])


@pytest.mark.parametrize(
    ("change", "reason"), [({"subResource": "status"}, NOT_A_POD), ({"operation": "UPDATE"}, NOT_CREATE), ({"operation": None}, NOT_CREATE)]
)
def test_a_subresource_or_another_operation_is_allowed_untouched(settings: Settings, change: dict[str, Any], reason: str) -> None:
    decision = admit(logging_review(**change), settings)
    assert (decision.outcome, decision.reason, decision.review["response"]) == (OUTCOME_SKIPPED, reason, {"uid": UID, "allowed": True})


@pytest.mark.parametrize("pod", [None, [], "pod"])
def test_a_pod_creation_without_a_pod_object_is_a_review_error(settings: Settings, pod: Any) -> None:
    with pytest.raises(ReviewError, match=r"^request\.object must be the Pod being created$"):
        admit(logging_review(object=pod), settings)


def test_an_injected_answer_carries_the_engines_patch_audit_annotation_and_warnings(settings: Settings) -> None:
    review = logging_review()
    review["request"]["object"]["spec"]["restartPolicy"] = "Never"
    decision = admit(review, settings)
    injection = inject_pod(copy.deepcopy(review["request"]["object"]), settings)
    response = decision.review["response"]
    assert decision.review["apiVersion"] == "admission.k8s.io/v1" and decision.review["kind"] == "AdmissionReview"
    assert (response["uid"], response["allowed"], response["patchType"]) == (UID, True, "JSONPatch")
    assert orjson.loads(base64.b64decode(response["patch"])) == injection.patch
    assert response["auditAnnotations"] == {"injected": "entourage-logging"}
    two = admit(reference_review({"entourage.dev/logging": "true", "entourage.dev/wait-for": "db:5432"}), settings)
    assert two.review["response"]["auditAnnotations"] == {"injected": "entourage-wait-db-5432,entourage-logging"}
    assert response["warnings"] == list(injection.warnings) and injection.warnings
    assert decision.owner == REPLICASET


def test_a_denial_answers_400_with_every_problem_and_names_the_owner(settings: Settings) -> None:
    review = reference_review({"entourage.dev/wait-for": "db:0", "entourage.dev/loging": "true"})
    decision = admit(review, settings)
    assert (decision.outcome, decision.reason, decision.owner) == (OUTCOME_DENIED, INVALID, REPLICASET)
    response = decision.review["response"]
    assert (response["uid"], response["allowed"]) == (UID, False)
    assert response["status"]["code"] == 400 and response["status"]["reason"] == "BadRequest"
    message = response["status"]["message"]
    assert message.startswith("Entourage cannot inject this pod: entourage.dev/")
    assert "entourage.dev/wait-for: 'db:0'" in message and "entourage.dev/loging: 'true'" in message


def test_a_skipped_pod_keeps_its_warnings_and_names_no_owner(settings: Settings) -> None:
    decision = admit(reference_review({"entourage.dev/wait-for-timeout": "1m"}), settings)
    assert decision.outcome == OUTCOME_SKIPPED and decision.owner is None
    assert decision.review["response"] == {
        "uid": UID,
        "allowed": True,
        "warnings": ["entourage.dev/wait-for-timeout has no effect without entourage.dev/wait-for"],
    }
    plain = admit(reference_review(), settings)
    assert (plain.reason, plain.review["response"]) == (NO_ANNOTATION, {"uid": UID, "allowed": True})


def test_what_logs_and_events_read_comes_from_the_request(settings: Settings) -> None:
    decision = admit(logging_review(namespace="n" * 63, dryRun=True), settings)
    assert decision.uid == UID and decision.namespace == "n" * 63 and decision.dry_run is True
    assert admit(logging_review(namespace="n" * 64), settings).namespace == ""  # a DNS label, or nothing
    assert decision.pod_name == "checkout-7d9c6b5f4-" and 0 < decision.duration < 1
    named = logging_review(dryRun="true")
    named["request"]["object"]["metadata"]["name"] = "web-0"
    decision = admit(named, settings)
    assert decision.pod_name == "web-0" and decision.dry_run is False
    long_name = logging_review()
    long_name["request"]["object"]["metadata"]["generateName"] = "g" * 253
    assert admit(long_name, settings).pod_name == "g" * 253
    long_name["request"]["object"]["metadata"]["generateName"] = "g" * 254
    assert admit(long_name, settings).pod_name == ""
    assert admit(logging_review(namespace=None), settings).namespace == ""
    unnamed = logging_review()
    del unnamed["request"]["object"]["metadata"]["generateName"]
    assert admit(unnamed, settings).pod_name == ""
    unnamed["request"]["object"]["metadata"] = None
    assert admit(unnamed, settings).pod_name == ""


@pytest.mark.parametrize(
    ("owners", "expected"),
    [
        (
            [
                {**REPLICASET, "controller": False},
                {"apiVersion": "batch/v1", "kind": "Job", "name": "batch", "controller": True, "uid": "7"},
            ],
            {"apiVersion": "batch/v1", "kind": "Job", "name": "batch", "uid": "7"},
        ),
        ([{**REPLICASET, "controller": True, "uid": 7}], None),
        ([{**REPLICASET, "controller": "true"}], None),
        ([{**REPLICASET, "controller": True, "name": 5}], None),
        (["not-an-object", {**REPLICASET, "controller": True}], REPLICASET),
        ({"controller": True}, None),
        (None, None),
    ],
    ids=[
        "the-controller-among-others",
        "uid-must-be-a-string",
        "controller-must-be-true",
        "name-must-be-a-string",
        "odd-entries-skipped",
        "not-a-list",
        "none",
    ],
)
def test_the_owner_is_the_controller_reference_with_its_string_fields(settings: Settings, owners: Any, expected: Any) -> None:
    review = logging_review()
    review["request"]["object"]["metadata"]["ownerReferences"] = owners
    assert admit(review, settings).owner == expected


def test_namespace_defaults_are_looked_up_for_the_requests_namespace_only_when_it_has_one(settings: Settings) -> None:
    asked: list[str] = []

    def lookup(namespace: str) -> dict[str, str]:
        asked.append(namespace)
        return {"entourage.dev/wait-for": "db:5432"}

    decision = admit(reference_review(), settings, namespace_annotations=lookup)
    assert asked == ["shop"] and decision.components == ["entourage-wait-db-5432"]
    unnamespaced = reference_review()
    del unnamespaced["request"]["namespace"]
    assert admit(unnamespaced, settings, namespace_annotations=lookup).reason == NO_ANNOTATION and asked == ["shop"]


def test_cluster_facts_reach_the_engine(settings: Settings) -> None:
    native = admit(logging_review(), settings, cluster=ClusterFacts(native_sidecars=True))
    patch = orjson.loads(base64.b64decode(native.review["response"]["patch"]))
    assert any(op["path"].startswith("/spec/initContainers") for op in patch)


def test_an_internal_failure_keeps_the_namespace_only_when_it_is_a_dns_label(settings: Settings) -> None:
    """The failure's Decision reaches logs and metrics like any other: an invalid name is dropped."""
    assert failed(logging_review(namespace="shop"), settings, KeyError("x")).namespace == "shop"
    for invalid in ("ns\n" * 10, "n" * 64, 7):
        assert failed(logging_review(namespace=invalid), settings, KeyError("x")).namespace == ""
