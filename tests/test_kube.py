"""Cluster awareness of the real ``entourage serve`` process against a local fake apiserver, and
the Event recorder in process (what it keeps, what it looks up)."""

from __future__ import annotations

import base64
import gc
import json
import re
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Iterator
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
from webhook.cluster import kube

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
        # The Events worker (owner lookups, posts) and the version check (nodes) run in the
        # background; what admission itself would read is a Namespace.
        lookups = [request for request in api.requests[calls:] if re.fullmatch(r"GET /api/v1/namespaces/[^/?]+", request)]
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
        webhook.wait_for(
            lambda: containers(answer(webhook, review(namespace="team-a"))) == ["entourage-logging"], what="the namespace cache"
        )
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


def test_native_sidecars_auto_is_native_only_when_the_apiserver_and_every_kubelet_are_1_29_or_newer(
    api: FakeApiServer, tmp_path: Path
) -> None:
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
        webhook.wait_for(
            lambda: containers(answer(webhook, review(namespace="shop"))) == ["entourage-logging"], timeout=10, what="the late sync"
        )
    finally:
        webhook.stop()


def test_the_last_known_namespace_defaults_keep_working_when_the_api_becomes_unreachable(api: FakeApiServer, tmp_path: Path) -> None:
    with running(tmp_path, *kube_args(api, tmp_path)) as webhook:
        api.stop()
        webhook.wait_for(
            lambda: webhook.metrics().get('entourage_kube_api_errors_total{operation="watch_namespaces"}', 0) >= 1, what="the watch to fail"
        )
        assert containers(answer(webhook, review(namespace="shop"))) == ["entourage-logging"]
        with webhook.client() as client:
            assert client.get("/readyz").status_code == 200


OWNER = review()["request"]["object"]["metadata"]["ownerReferences"][0]


def with_owner(document: dict[str, Any], **changes: str) -> dict[str, Any]:
    """The review with its pod's controller reference changed (a forged request's)."""
    document["request"]["object"]["metadata"]["ownerReferences"][0].update(changes)
    return document


def test_injections_and_denials_become_rate_limited_events_on_the_pods_owner(api: FakeApiServer, tmp_path: Path) -> None:
    api.put_object("ReplicaSet", "plain", OWNER["name"], uid=OWNER["uid"])
    with running(tmp_path, *kube_args(api, tmp_path)) as webhook:
        for document in (
            review(LOGGING, uid="dry-1", namespace="plain"),
            review({"entourage.dev/wait-for": "???"}, uid="dry-2", namespace="plain"),
        ):
            document["request"]["dryRun"] = True  # answered as usual, but no Event (sideEffects: None)
            answer(webhook, document)
        for index in range(3):
            answer(webhook, review(LOGGING, uid=f"event-{index}", namespace="plain"))
        answer(webhook, review({"entourage.dev/wait-for": "attacker chosen text"}, namespace="plain"))
        webhook.wait_for(lambda: len(api.events) == 2, what="two events")
        time.sleep(0.3)
        injected, denied = sorted(api.events, key=lambda event: event["reason"])
        assert injected["involvedObject"] == {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": OWNER["name"],
            "uid": OWNER["uid"],
            "namespace": "plain",
        }
        assert (injected["reason"], injected["type"], injected["metadata"]["namespace"]) == ("Injected", "Normal", "plain")
        assert injected["message"] == "pod checkout-7d9c6b5f4-: injected entourage-logging"
        assert (denied["reason"], denied["type"]) == ("InjectionDenied", "Warning")
        # Fixed words only: a value from the request never reaches an Event on someone's object.
        assert (
            denied["message"]
            == "pod checkout-7d9c6b5f4-: injection denied: its Entourage annotations are invalid; the pod's admission error lists each problem"
        )
        assert webhook.metrics()['entourage_events_total{result="rate_limited"}'] == 2
        lookups = [request for request in api.requests if "/replicasets/" in request]
        assert lookups == [f"GET /apis/apps/v1/namespaces/plain/replicasets/{OWNER['name']}"], "one lookup, then remembered"


WEB_UID = "0f9a4c1e-1111-4c8e-9d0e-5b1f2a7c9e11"


def real_owner(api: FakeApiServer, webhook: Webhook) -> list[dict[str, Any]]:
    """Admit a pod of a Deployment that exists and wait for its Event: the worker takes Events in
    order, so every Event asked for before it has been written or dropped by then; the others."""
    api.put_object("Deployment", "plain", "web", uid=WEB_UID)
    answer(
        webhook,
        with_owner(review(LOGGING, uid="real", namespace="plain"), apiVersion="apps/v1", kind="Deployment", name="web", uid=WEB_UID),
    )
    webhook.wait_for(lambda: any(event["involvedObject"]["name"] == "web" for event in api.events), what="the real owner's Event")
    return [event for event in api.events if event["involvedObject"]["name"] != "web"]


def test_a_forged_request_gets_no_event_unless_its_owner_exists_in_its_namespace_with_its_uid(api: FakeApiServer, tmp_path: Path) -> None:
    """Anyone who reaches the Service can post an AdmissionReview naming any owner."""
    api.put_object("ReplicaSet", "shop", "elsewhere")  # exists, but in another namespace
    api.put_object("ReplicaSet", "plain", "recreated")  # exists, with another uid than the forged one
    with running(tmp_path, *kube_args(api, tmp_path)) as webhook:
        for index, name in enumerate(("no-such-owner", "elsewhere", "recreated")):
            answer(webhook, with_owner(review(LOGGING, uid=f"forged-{index}", namespace="plain"), name=name))
        answer(webhook, with_owner(review({"entourage.dev/wait-for": "???"}, namespace="plain"), name="no-such-owner"))
        answer(
            webhook, review(LOGGING, uid="no-namespace", namespace="no-such-namespace")
        )  # its Event would be on a Namespace that is not there
        assert real_owner(api, webhook) == []
        assert webhook.metrics()['entourage_events_total{result="unverified"}'] == 5
        lookups = [request for request in api.requests if "/namespaces/plain/replicasets/" in request]
        assert len(lookups) == 3, "the answer for no-such-owner is remembered: the denial's Event needs no second lookup"


def test_an_owner_of_a_kind_we_cannot_look_up_gets_its_event_on_the_namespace(api: FakeApiServer, tmp_path: Path) -> None:
    with running(tmp_path, *kube_args(api, tmp_path)) as webhook:
        answer(webhook, with_owner(review(LOGGING, uid="custom", namespace="plain"), apiVersion="example.com/v1", kind="Widget", name="w"))
        webhook.wait_for(lambda: len(api.events) == 1, what="the Namespace's Event")
        (event,) = api.events
        assert event["involvedObject"] == {
            "apiVersion": "v1",
            "kind": "Namespace",
            "name": "plain",
            "uid": api.namespaces["plain"]["metadata"]["uid"],
        }
        assert not [request for request in api.requests if "example.com" in request or "widget" in request.lower()]


def test_names_kubernetes_would_not_accept_never_reach_an_event_or_the_api(api: FakeApiServer, tmp_path: Path) -> None:
    """80 requests with 2.4 MB owner names took the process from 75 to 305 MiB: the recorder
    remembered every name, and each became an Event."""
    huge = "a" * 2_400_000
    names = [huge, "b" * 254, "Web Frontend: click http://evil.example", "web/../../secrets"]
    with running(tmp_path, *kube_args(api, tmp_path)) as webhook:
        for index, name in enumerate(names):
            answer(webhook, with_owner(review(LOGGING, uid=f"bad-{index}", namespace="plain"), name=name))
        bad_pod = review(LOGGING, uid="bad-pod", namespace="plain")
        bad_pod["request"]["object"]["metadata"]["generateName"] = "Pwned! see http://evil.example "
        answer(webhook, bad_pod)
        others = real_owner(api, webhook)
        assert not [event for event in others if event["involvedObject"]["name"] in names or "evil" in event["message"]]
        assert not [request for request in api.requests if "evil" in request or "aaaa" in request or "bbbb" in request or ".." in request]


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
    text = subprocess.run(
        [ENTOURAGE, "audit", "--kubeconfig", str(tmp_path / "kubeconfig"), "-n", "plain"], capture_output=True, text=True, timeout=30
    )
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
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner_name, "uid": "u", "controller": True}
        return Decision(
            OUTCOME_INJECTED,
            "injected",
            answer_review("x", allowed=True),
            "x",
            namespace,
            pod,
            ["entourage-logging"],
            owner_references=[owner],
        )

    recorder = Recorder()
    observe.event(decision("shop", "web-", "web-7d9f"), recorder)  # type: ignore[arg-type]
    observe.event(decision("shop", "Evil Name\n", "x" * 300), recorder)  # type: ignore[arg-type]
    observe.event(decision("not a namespace", "web-", "web-7d9f"), recorder)  # type: ignore[arg-type]
    assert [call["involved"]["kind"] for call in recorder.calls] == ["ReplicaSet", "Namespace"]  # type: ignore[index]
    assert recorder.calls[1]["message"] == "pod (unnamed): injected entourage-logging"


# -- the recorder in process: what it keeps, and its lookups ---------------------------------------


def recorder(api: FakeApiServer, tmp_path: Path, **options: Any) -> kube.EventRecorder:
    """A real recorder on a real client of the fake API, its worker not started: ``verify`` is
    called directly, and what ``record`` queues stays in the queue."""
    return kube.EventRecorder(kube.Api(str(api.kubeconfig(tmp_path / "kubeconfig"))), **options)


def kept_by(action: Callable[[], Any]) -> int:
    """Bytes still allocated (tracemalloc) after ``action``, against before it."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        action()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def owner(name: str, uid: str = "3f0b6a4e-8a51-4c8e-9d0e-5b1f2a7c9e11", kind: str = "ReplicaSet") -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid}


def record(events: kube.EventRecorder, name: str, *, namespace: str = "plain", reason: str = "Injected") -> bool:
    return events.record(
        namespace=namespace, involved=owner(name), reason=reason, message="pod web-1: injected entourage-logging", warning=False
    )


def test_the_recorder_keeps_nothing_of_a_name_kubernetes_would_not_accept(api: FakeApiServer, tmp_path: Path) -> None:
    events = recorder(api, tmp_path)
    names = [f"{index}" + "a" * 2_400_000 for index in range(80)]
    results: list[bool] = []
    kept = kept_by(lambda: results.extend(record(events, name) for name in names))
    assert results == [False] * 80
    assert (len(events.recent.entries), events.queue.qsize()) == (0, 0)
    assert kept < 64 * 1024, f"{kept} bytes kept after 80 owners of 2.4 MB (192 MB of names)"
    for namespace, name in (("Plain", "web-1"), ("plain", "Web 1"), ("plain", ""), ("a" * 64, "web-1"), ("plain", "web-1\nx")):
        assert not record(events, name, namespace=namespace)


def test_a_flood_of_distinct_owners_stays_within_the_rate_limiters_entries_and_bytes(api: FakeApiServer, tmp_path: Path) -> None:
    events = recorder(api, tmp_path)
    capacity = events.queue.maxsize

    def flood() -> None:
        for index in range(6_000):
            record(events, f"{index}-" + "r" * 240)  # about 245 characters: valid, and as long as names get

    kept = kept_by(flood)
    recent = events.recent
    assert len(recent.entries) <= kube.RATE_LIMIT_ENTRIES and recent.bytes <= kube.RATE_LIMIT_BYTES
    assert recent.bytes > kube.RATE_LIMIT_BYTES * 0.9, "the flood did not reach the byte bound"
    assert events.queue.qsize() == capacity
    queued = capacity * 4096  # an Event with a 250-character name is under 4 KiB (tracemalloc: about 2.5)
    assert kept <= recent.bytes + queued + 256 * 1024, f"{kept} bytes kept; the rate limiter's estimate {recent.bytes}"


def test_the_rate_limiter_forgets_each_object_after_its_minute(api: FakeApiServer, tmp_path: Path) -> None:
    clock = Clock()
    events = recorder(api, tmp_path, capacity=10_000, clock=clock)
    assert record(events, "web-7d9f") and not record(events, "web-7d9f")
    assert record(events, "web-7d9f", reason="InjectionDenied"), "one Event per object AND reason"
    clock.now += 59.9
    assert not record(events, "web-7d9f")
    clock.now += 0.1
    assert record(events, "web-7d9f"), "a minute later the object may have an Event again"
    for index in range(100):
        record(events, f"other-{index}")
    clock.now += 61
    record(events, "late")
    assert list(events.recent.entries) == [("plain", "ReplicaSet", "late", "3f0b6a4e-8a51-4c8e-9d0e-5b1f2a7c9e11", "Injected")], (
        "past their age, entries leave"
    )
    assert events.recent.bytes == sum(size for _, size in events.recent.entries.values())


def test_owner_lookups_are_remembered_found_or_not_and_limited_per_second(api: FakeApiServer, tmp_path: Path) -> None:
    uid = api.put_object("ReplicaSet", "plain", "web-7d9f")
    clock = Clock()
    events = recorder(api, tmp_path, lookups_per_second=5, clock=clock)

    def lookups() -> int:
        return sum("/replicasets/" in request for request in api.requests)

    involved = {**owner("web-7d9f", uid), "namespace": "plain"}
    assert events.verify(dict(involved)) == ""
    assert events.verify({**involved, "uid": "0" * 36}) == "unverified"  # same name, another uid: remembered
    assert lookups() == 1
    namespace = {"apiVersion": "v1", "kind": "Namespace", "name": "plain"}
    assert events.verify(namespace) == "" and namespace["uid"] == api.namespaces["plain"]["metadata"]["uid"]
    verdicts = [events.verify({**owner(f"forged-{index}"), "namespace": "plain"}) for index in range(8)]
    assert verdicts == ["unverified"] * 3 + ["lookup_limited"] * 5, "5 lookups a second, 2 of them spent above"
    assert lookups() == 4
    clock.now += 0.2  # one lookup more is allowed every 0.2 s
    assert events.verify({**owner("forged-0"), "namespace": "plain"}) == "unverified"  # remembered: no lookup spent
    assert events.verify({**owner("forged-7"), "namespace": "plain"}) == "unverified" and lookups() == 5
    clock.now += 61  # past --event-owner-cache-seconds: looked up again
    assert events.verify({**owner("forged-0"), "namespace": "plain"}) == "unverified" and lookups() == 6


def test_a_flood_of_distinct_owner_lookups_is_bounded(api: FakeApiServer, tmp_path: Path) -> None:
    events = recorder(api, tmp_path, lookups_per_second=10_000)
    kept = kept_by(lambda: [events.verify({**owner(f"{index}-" + "o" * 240), "namespace": "plain"}) for index in range(400)])
    owners = events.owners
    assert len(owners.entries) == 400 and owners.bytes <= 400 * (kube.ENTRY_OVERHEAD + 63 + 21 + 253 + 64)
    assert owners.max_entries == kube.OWNER_ENTRIES and owners.max_bytes == kube.OWNER_BYTES
    assert kept <= owners.bytes + 256 * 1024, f"{kept} bytes kept; the lookups' estimate {owners.bytes}"
