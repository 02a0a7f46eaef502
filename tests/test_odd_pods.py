"""Odd but valid pods: nothing lost, nothing crashed, the answer stays small and fast."""

from __future__ import annotations

import copy
import json

import jsonpatch

from tests.conftest import reference_pod, reference_review
from tests.podcheck import assert_valid_injected_pod
from webhook.admission.decide import admit
from webhook.engine.inject import ALREADY_INJECTED, INJECTED, inject_pod
from webhook.engine.settings import Settings


def huge_pod(target_bytes: int = 1024 * 1024) -> dict:
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/wait-for": "db:5432"})
    container = pod["spec"]["containers"][0]
    entry = 0
    while len(json.dumps(pod)) < target_bytes:
        container["env"].extend({"name": f"VAR_{entry + i}", "value": "x" * 180} for i in range(500))
        entry += 500
    return pod


def test_a_one_mebibyte_pod_is_injected_with_a_small_patch(settings: Settings) -> None:
    pod = huge_pod()
    original = copy.deepcopy(pod)
    injection = inject_pod(pod, settings)
    assert injection.reason == INJECTED and pod == original
    assert len(json.dumps(injection.patch)) < 20_000, "the patch carries only what was added"
    assert jsonpatch.apply_patch(original, injection.patch) == injection.pod
    # Untouched subtrees are shared with the input, not copied (and so not compared by the diff).
    assert injection.pod["spec"]["containers"][0]["env"] is pod["spec"]["containers"][0]["env"]


def test_a_pod_without_ports_or_volumes_or_init_containers_is_fine(settings: Settings) -> None:
    pod = {
        "metadata": {"name": "p", "annotations": {"entourage.dev/ambassador": "6379=r:6379", "entourage.dev/adapter": "statsd-prometheus"}},
        "spec": {"containers": [{"name": "a", "image": "a:1"}]},
    }
    injection = inject_pod(pod, settings)
    assert_valid_injected_pod(injection.pod, injection.components)


def test_a_host_network_pod_is_injected_with_a_warning_about_the_nodes_loopback(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/ambassador": "6379=r:6379"})
    pod["spec"]["hostNetwork"] = True
    injection = inject_pod(pod, settings)
    assert injection.reason == INJECTED
    assert any("hostNetwork" in warning for warning in injection.warnings)


def test_a_status_annotation_written_by_someone_else_stops_injection(settings: Settings) -> None:
    for value in ("", "not json", '{"containers": ["x"]}'):
        pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/status": value})
        assert inject_pod(pod, settings).reason == ALREADY_INJECTED


def test_existing_containers_named_like_ours_are_kept_and_ours_are_renamed(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/ambassador": "6379=r:6379"})
    pod["spec"]["containers"].append({"name": "entourage-ambassador-6379", "image": "theirs:1"})
    injection = inject_pod(pod, settings)
    names = [c["name"] for c in injection.pod["spec"]["containers"]]
    assert names == ["entourage-ambassador-6379-2", "checkout", "entourage-ambassador-6379"]


def test_annotation_values_that_are_not_strings_are_denied_not_crashed(settings: Settings) -> None:
    review = reference_review()
    review["request"]["object"]["metadata"]["annotations"] = {"entourage.dev/logging": True, "entourage.dev/wait-for": ["db:1"]}
    response = admit(review, settings).review["response"]
    assert (
        response["allowed"] is False
        and "metadata.annotations['entourage.dev/logging']: expected a string value, got a boolean" in response["status"]["message"]
    )


def test_odd_metadata_shapes_never_crash_the_admission(settings: Settings) -> None:
    for metadata in (None, [], "x", {"annotations": "x"}, {"annotations": []}, {"annotations": {"entourage.dev/logging": "true"}}):
        review = reference_review()
        review["request"]["object"]["metadata"] = metadata
        decision = admit(review, settings)
        assert decision.review["response"]["uid"] == review["request"]["uid"]
        assert decision.outcome in ("skipped", "injected", "denied")


def test_wrongly_typed_container_fields_are_denied_by_name_not_failed_internally(settings: Settings) -> None:
    for field_name, value in (("ports", True), ("volumeMounts", {"x": 1}), ("ports", [1])):
        review = reference_review({"entourage.dev/logging": "true", "entourage.dev/ambassador": "6379=r:6379"})
        review["request"]["object"]["spec"]["containers"][0][field_name] = value
        response = admit(review, settings).review["response"]
        assert response["status"]["code"] == 400
        assert f"spec.containers[0].{field_name}: expected a list of objects" in response["status"]["message"]
