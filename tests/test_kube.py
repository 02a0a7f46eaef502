"""Cluster awareness of the real ``entourage serve`` process against a local fake apiserver."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from tests.fake_apiserver import FakeApiServer
from tests.webhook_process import (
    ENTOURAGE,
    Webhook,
    containers,
    native_sidecar,
    review,
    running,
    start,
    tls_files,
)
from webhook import certs

LOGGING = {"entourage.dev/logging": "true"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApiServer]:
    fake = FakeApiServer().start()
    fake.set_nodes("v1.30.2", "v1.31.0")
    fake.put_namespace("shop", {"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/srv/logs"})
    fake.put_namespace("plain")
    try:
        yield fake
    finally:
        fake.stop()


def kube_args(api: FakeApiServer, tmp_path: Path, *extra: str) -> tuple[str, ...]:
    return ("--kubeconfig", str(api.kubeconfig(tmp_path / "kubeconfig")), *extra)


def answer(webhook: Webhook, document: dict[str, Any]) -> dict[str, Any]:
    with webhook.client() as client:
        response = client.post("/mutate", json=document)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_namespace_annotations_apply_from_the_watch_cache_and_the_pods_own_win(api: FakeApiServer, tmp_path: Path) -> None:
    with running(tmp_path, *kube_args(api, tmp_path)) as webhook:
        calls = len(api.requests)
        assert containers(answer(webhook, review(namespace="shop"))) == ["entourage-logging"]
        assert containers(answer(webhook, review({"entourage.dev/inject": "false"}, namespace="shop"))) == []
        assert containers(answer(webhook, review(namespace="plain"))) == []
        lookups = [request for request in api.requests[calls:] if not request.endswith("/events")]  # Events are posted in the background
        assert lookups == [], "the admission path must not read from the API"

        api.put_namespace("plain", LOGGING)  # a watch event, no restart
        webhook.wait_for(lambda: containers(answer(webhook, review(namespace="plain"))) == ["entourage-logging"], what="the watch")
        api.delete_namespace("shop")
        webhook.wait_for(lambda: containers(answer(webhook, review(namespace="shop"))) == [], what="the deletion")


def test_an_openshift_namespace_gets_containers_without_a_fixed_uid(api: FakeApiServer, tmp_path: Path) -> None:
    """OpenShift annotates each namespace with its UID range; the namespace cache carries it."""
    api.put_namespace("team-a", {"openshift.io/sa.scc.uid-range": "1000680000/10000", **LOGGING})

    def agent(webhook: Webhook, namespace: str) -> dict[str, Any]:
        document = review(namespace=namespace)
        patch = json.loads(base64.b64decode(answer(webhook, document)["response"]["patch"]))
        pod = jsonpatch.apply_patch(document["request"]["object"], patch)
        return next(c for c in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]] if c["name"] == "entourage-logging")

    with running(tmp_path, *kube_args(api, tmp_path)) as webhook:
        webhook.wait_for(lambda: containers(answer(webhook, review(namespace="team-a"))) == ["entourage-logging"], what="the namespace cache")
        security = agent(webhook, "team-a")["securityContext"]
        assert "runAsUser" not in security and "runAsGroup" not in security and security["runAsNonRoot"] is True
        assert agent(webhook, "shop")["securityContext"]["runAsUser"] == 65532


def test_a_watch_whose_resource_version_expired_lists_again(api: FakeApiServer, tmp_path: Path) -> None:
    with running(tmp_path, *kube_args(api, tmp_path)) as webhook:
        api.compact()  # etcd compaction: the watch's resourceVersion is now too old (410 Gone)
        api.put_namespace("plain", LOGGING)
        webhook.wait_for(lambda: containers(answer(webhook, review(namespace="plain"))) == ["entourage-logging"], what="the relist")
        assert any(line["msg"] == "namespace watch expired; listing again" for line in webhook.logs())
        assert sum(request.startswith("GET /api/v1/namespaces?limit") for request in api.requests) >= 2


def test_native_sidecars_auto_is_native_only_when_the_apiserver_and_every_kubelet_are_1_29_or_newer(api: FakeApiServer, tmp_path: Path) -> None:
    api.set_nodes("v1.30.2", "v1.28.9-eks-1234")
    with running(tmp_path, *kube_args(api, tmp_path, "--version-check-seconds", "0.2")) as webhook:
        webhook.wait_for(lambda: webhook.metrics()["entourage_native_sidecars"] == 0, what="the version check")
        assert not native_sidecar(answer(webhook, review(LOGGING, namespace="plain")))
        api.set_nodes("v1.30.2", "v1.29.0+k3s1")  # the old node was upgraded
        webhook.wait_for(lambda: native_sidecar(answer(webhook, review(LOGGING, namespace="plain"))), what="native sidecars")
        assert webhook.metrics()["entourage_native_sidecars"] == 1


@pytest.mark.slow
def test_readiness_waits_for_the_first_namespace_list_then_serves_without_namespace_defaults(api: FakeApiServer, tmp_path: Path) -> None:
    arguments = kube_args(api, tmp_path, "--sync-timeout", "4")  # long enough to be seen unready on a loaded machine
    api.stop()  # the API is unreachable when the webhook starts
    webhook = start(tmp_path, *arguments, ready=False)
    try:
        with webhook.client() as client:
            waiting = client.get("/readyz")
            assert waiting.status_code == 503 and waiting.json()["reason"] == "waiting for the first list of namespaces"
            webhook.wait_for(lambda: client.get("/readyz").status_code == 200, timeout=10, what="the sync timeout")
        assert containers(answer(webhook, review(namespace="shop"))) == []  # no namespace defaults known yet
        assert any(line["msg"].startswith("the namespace cache is not synced") for line in webhook.logs())
        api.start(api.port)
        webhook.wait_for(lambda: containers(answer(webhook, review(namespace="shop"))) == ["entourage-logging"], timeout=10, what="the late sync")
    finally:
        webhook.stop()


def test_the_last_known_namespace_defaults_keep_working_when_the_api_becomes_unreachable(api: FakeApiServer, tmp_path: Path) -> None:
    with running(tmp_path, *kube_args(api, tmp_path)) as webhook:
        api.stop()
        webhook.wait_for(lambda: webhook.metrics().get('entourage_kube_api_errors_total{operation="watch_namespaces"}', 0) >= 1, what="the watch to fail")
        assert containers(answer(webhook, review(namespace="shop"))) == ["entourage-logging"]
        with webhook.client() as client:
            assert client.get("/readyz").status_code == 200


def test_injections_and_denials_become_rate_limited_events_on_the_pods_owner(api: FakeApiServer, tmp_path: Path) -> None:
    with running(tmp_path, *kube_args(api, tmp_path)) as webhook:
        for document in (review(LOGGING, uid="dry-1", namespace="plain"), review({"entourage.dev/wait-for": "???"}, uid="dry-2", namespace="plain")):
            document["request"]["dryRun"] = True  # answered as usual, but no Event (sideEffects: None)
            answer(webhook, document)
        for index in range(3):
            answer(webhook, review(LOGGING, uid=f"event-{index}", namespace="plain"))
        answer(webhook, review({"entourage.dev/wait-for": "attacker chosen text"}, namespace="plain"))
        webhook.wait_for(lambda: len(api.events) == 2, what="two events")
        time.sleep(0.3)
        injected, denied = sorted(api.events, key=lambda event: event["reason"])
        owner = review()["request"]["object"]["metadata"]["ownerReferences"][0]
        assert injected["involvedObject"] == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner["name"], "uid": owner["uid"], "namespace": "plain"}
        assert (injected["reason"], injected["type"], injected["metadata"]["namespace"]) == ("Injected", "Normal", "plain")
        assert injected["message"] == "pod checkout-7d9c6b5f4-: injected entourage-logging"
        assert (denied["reason"], denied["type"]) == ("InjectionDenied", "Warning")
        # Fixed words only: a value from the request never reaches an Event on someone's object.
        assert denied["message"] == "pod checkout-7d9c6b5f4-: injection denied: its Entourage annotations are invalid; the pod's admission error lists each problem"
        assert webhook.metrics()['entourage_events_total{result="rate_limited"}'] == 2


def test_the_ca_bundle_is_patched_on_start_and_after_a_rotation(api: FakeApiServer, tmp_path: Path) -> None:
    api.put_webhook_configuration("entourage", "pods.entourage.dev", "workloads.entourage.dev")

    def bundles() -> list[str]:
        return [hook["clientConfig"].get("caBundle", "") for hook in api.webhook_configurations["entourage"]["webhooks"]]

    first = certs.generate("entourage", "entourage")
    tls_dir = tmp_path / "tls"
    arguments = kube_args(api, tmp_path, "--mutating-webhook-configuration", "entourage", "--ca-file", str(tls_dir / "ca.crt"))
    with running(tmp_path, *arguments, certificates=first) as webhook:
        webhook.wait_for(lambda: bundles() == [base64.b64encode(first.ca_pem).decode()] * 2, what="the first patch")
        rotated = certs.generate("entourage", "entourage")
        webhook.tls.swap(tls_files(rotated))
        webhook.wait_for(lambda: bundles() == [base64.b64encode(rotated.ca_pem).decode()] * 2, what="the rotation patch")
        time.sleep(0.5)
        assert len(api.patches) == 2, "an unchanged CA is not patched again"
        assert all(op["op"] in ("test", "add") for patch in api.patches for op in patch)


def test_audit_lists_pods_that_ask_for_injection_but_were_never_injected(api: FakeApiServer, tmp_path: Path) -> None:
    def pod(name: str, namespace: str, annotations: dict[str, str], phase: str = "Running") -> dict[str, Any]:
        metadata = {"name": name, "namespace": namespace, "annotations": annotations,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-rs", "uid": "u", "controller": True}]}  # fmt: skip
        return {"metadata": metadata, "spec": {"containers": [{"name": "app", "image": "app:1"}]}, "status": {"phase": phase}}

    api.pods = [
        pod("missed", "plain", LOGGING),
        pod("injected", "plain", {**LOGGING, "entourage.dev/status": '{"version":1}'}),
        pod("unrelated", "plain", {}),
        pod("by-namespace", "shop", {}),
        pod("opted-out", "shop", {"entourage.dev/inject": "false"}),
        pod("finished", "plain", LOGGING, phase="Succeeded"),
    ]
    result = subprocess.run([ENTOURAGE, "audit", "--kubeconfig", str(api.kubeconfig(tmp_path / "kubeconfig")), "-o", "json"],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = {(item["namespace"], item["pod"]): item for item in json.loads(result.stdout)}
    assert set(found) == {("plain", "missed"), ("shop", "by-namespace")}
    assert found[("plain", "missed")]["owners"] == ["ReplicaSet/missed-rs"]
    assert "2 of 6 pods" in result.stderr
    text = subprocess.run([ENTOURAGE, "audit", "--kubeconfig", str(tmp_path / "kubeconfig"), "-n", "plain"], capture_output=True, text=True, timeout=30)
    assert text.returncode == 0 and "missed" in text.stdout and "by-namespace" not in text.stdout and "ReplicaSet/missed-rs" in text.stdout


def test_events_carry_only_names_that_are_kubernetes_names() -> None:
    """A forged review's pod, owner and namespace names are checked before any Event is built."""
    from webhook.admission.decide import OUTCOME_INJECTED, Decision
    from webhook.admission.review import answer as answer_review
    from webhook.serving import observe

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[dict[str, object]] = []

        def record(self, **event: object) -> bool:
            self.calls.append(event)
            return True

    def decision(namespace: str, pod: str, owner_name: str) -> Decision:
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner_name, "uid": "u"}
        return Decision(OUTCOME_INJECTED, "injected", answer_review("x", allowed=True), "x", namespace, pod, ["entourage-logging"], owner=owner)

    recorder = Recorder()
    observe.event(decision("shop", "web-", "web-7d9f"), recorder)  # type: ignore[arg-type]
    observe.event(decision("shop", "Evil Name\n", "x" * 300), recorder)  # type: ignore[arg-type]
    observe.event(decision("not a namespace", "web-", "web-7d9f"), recorder)  # type: ignore[arg-type]
    assert [call["involved"]["kind"] for call in recorder.calls] == ["ReplicaSet", "Namespace"]  # type: ignore[index]
    assert recorder.calls[1]["message"] == "pod (unnamed): injected entourage-logging"
