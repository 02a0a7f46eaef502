"""`entourage audit --outdated` and `--restart`: pods injected under an old configuration, the
configuration changed, the list by workload, and the restart patches sent to the API."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_apiserver import FakeApiServer
from tests.webhook_process import ENTOURAGE
from webhook.cluster import audit
from webhook.engine.inject import ClusterFacts, inject_pod
from webhook.engine.settings import Settings, load_settings

CURRENT = load_settings(None, environ={})
OLD_CONFIG = """
profiles:
  logging:
    tail:
      image: busybox:1.36.0
  ambassador:
    socat:
      resources:
        requests: {cpu: 10m, memory: 16Mi}
        limits: {cpu: 100m, memory: 32Mi}
"""
ASKS = {"entourage.dev/logging": "true", "entourage.dev/ambassador": "6379=redis.cache:6379", "entourage.dev/wait-for": "tcp://db:5432"}


def old_settings(tmp_path: Path) -> Settings:
    path = tmp_path / "old.yaml"
    path.write_text(OLD_CONFIG)
    return load_settings(str(path), environ={})


def injected(
    settings: Settings,
    name: str,
    *,
    namespace: str = "shop",
    owner: tuple[str, str] | None = None,
    native: bool = True,
    asks: dict[str, str] = ASKS,
) -> dict[str, Any]:
    """A pod as the API shows it after our injection: with the fields the apiserver defaults."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "annotations": dict(asks)}
    if owner:
        metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "u", "controller": True}]
    pod = {"metadata": metadata, "spec": {"containers": [{"name": "app", "image": "shop/app:2.1", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                                          "volumes": [{"name": "data", "emptyDir": {}}]}}  # fmt: skip
    result = copy.deepcopy(dict(inject_pod(pod, settings, cluster=ClusterFacts(native)).pod))
    for container in [*result["spec"].get("initContainers", []), *result["spec"]["containers"]]:
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
    result["status"] = {"phase": "Running"}
    return result


def test_pods_injected_under_the_current_configuration_are_not_outdated() -> None:
    pods = [injected(CURRENT, "web-1"), injected(CURRENT, "web-2", native=False)]
    assert audit.outdated(pods, CURRENT, lambda _: None) == []


def test_a_changed_image_and_changed_resources_are_reported_per_component(tmp_path: Path) -> None:
    [finding] = audit.outdated([injected(old_settings(tmp_path), "web-1", owner=("ReplicaSet", "web-7d9f"))], CURRENT, lambda _: None)
    assert (finding.namespace, finding.pod, finding.owner, finding.entourage) == ("shop", "web-1", ("ReplicaSet", "web-7d9f"), "0.1.0")
    shown = [str(change) for change in finding.changes]
    assert shown == [
        "entourage-ambassador-6379: resources.limits.cpu 100m → 200m",
        "entourage-ambassador-6379: resources.limits.memory 32Mi → 64Mi",
        "entourage-logging: image busybox:1.36.0 → busybox:1.36.1",
    ]
    assert "entourage-logging: image busybox:1.36.0 → busybox:1.36.1" in shown
    assert not any(change.component.startswith("entourage-wait-") for change in finding.changes), "the wait-for profile did not change"


def test_a_classic_sidecar_pod_is_compared_in_classic_mode(tmp_path: Path) -> None:
    [finding] = audit.outdated([injected(old_settings(tmp_path), "web-1", native=False)], CURRENT, lambda _: None)
    assert {change.field for change in finding.changes} == {"image", "resources.limits.cpu", "resources.limits.memory"}


def test_a_configured_profile_with_a_new_image_is_reported(tmp_path: Path) -> None:
    pod = injected(CURRENT, "web-1", asks={"entourage.dev/logging": "fluent-bit"})
    newer = tmp_path / "newer.yaml"
    newer.write_text("profiles:\n  logging:\n    fluent-bit:\n      image: fluent/fluent-bit:3.2.11\n")
    [finding] = audit.outdated([pod], load_settings(str(newer), environ={}), lambda _: None)
    assert [str(change) for change in finding.changes] == ["entourage-logging: image fluent/fluent-bit:3.2.10 → fluent/fluent-bit:3.2.11"]


def test_a_pod_the_configuration_would_now_refuse_is_reported_as_such(tmp_path: Path) -> None:
    custom = tmp_path / "custom.yaml"
    custom.write_text(
        "profiles:\n  adapter:\n    custom:\n      image: example/exporter:1.0\n      command: [/exporter]\n"
        "      resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 50m, memory: 32Mi}}\n"
    )
    pod = injected(load_settings(str(custom), environ={}), "web-1", asks={"entourage.dev/adapter": "custom"})
    [finding] = audit.outdated([pod], CURRENT, lambda _: None)
    [change] = finding.changes
    assert (change.component, change.before) == ("pod", "injected")
    assert (
        change.after
        == "denied now: entourage.dev/adapter: 'custom': no adapter profile 'custom'; known: nginx-prometheus, statsd-prometheus"
    )


def test_a_status_of_version_1_is_compared_by_the_running_containers(tmp_path: Path) -> None:
    pod = injected(old_settings(tmp_path), "web-1")
    recorded = json.loads(pod["metadata"]["annotations"]["entourage.dev/status"])
    pod["metadata"]["annotations"]["entourage.dev/status"] = json.dumps(
        {"version": 1, **{k: recorded[k] for k in ("initContainers", "containers", "volumes")}}
    )
    [finding] = audit.outdated([pod], CURRENT, lambda _: None)
    assert finding.entourage == ""
    assert "entourage-logging: image busybox:1.36.0 → busybox:1.36.1" in [str(change) for change in finding.changes]


def test_putting_a_pod_back_as_it_was_before_injection_removes_exactly_what_was_added() -> None:
    pod = injected(CURRENT, "web-1")
    before = audit.uninjected(pod, audit.status.read(pod["metadata"]["annotations"]["entourage.dev/status"]), CURRENT)  # type: ignore[arg-type]
    assert [c["name"] for c in before["spec"]["containers"]] == ["app"]
    assert "initContainers" not in before["spec"]
    assert before["spec"]["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert before["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert "entourage.dev/status" not in before["metadata"]["annotations"]


# -- against the API ------------------------------------------------------------------------------


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    fake = FakeApiServer().start()
    fake.put_namespace("shop")
    try:
        yield fake
    finally:
        fake.stop()


def run_audit(api: FakeApiServer, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    return subprocess.run([ENTOURAGE, "audit", "--kubeconfig", str(kubeconfig), *extra], capture_output=True, text=True, timeout=60)


def outdated_cluster(api: FakeApiServer, tmp_path: Path) -> None:
    """Pods injected under the old configuration, owned as a cluster owns them."""
    old = old_settings(tmp_path)
    api.put_workload("Deployment", "shop", "web")
    api.put_workload("ReplicaSet", "shop", "web-7d9f", owner=("Deployment", "web"))
    api.put_workload("StatefulSet", "shop", "db")
    api.put_workload("CronJob", "shop", "nightly")
    api.put_workload("Job", "shop", "nightly-290", owner=("CronJob", "nightly"))
    api.pods = [
        injected(old, "web-7d9f-a", owner=("ReplicaSet", "web-7d9f")),
        injected(old, "web-7d9f-b", owner=("ReplicaSet", "web-7d9f")),
        injected(old, "db-0", owner=("StatefulSet", "db")),
        injected(old, "nightly-290-x", owner=("Job", "nightly-290")),
        injected(old, "debug"),
        injected(CURRENT, "fresh", owner=("ReplicaSet", "web-7d9f")),
    ]


def test_outdated_pods_are_listed_by_the_workload_that_owns_them(api: FakeApiServer, tmp_path: Path) -> None:
    outdated_cluster(api, tmp_path)
    result = run_audit(api, tmp_path, "--outdated", "-o", "json")
    assert result.returncode == 0, result.stderr
    listed = {(item["kind"], item["name"]): item for item in json.loads(result.stdout)}
    assert set(listed) == {("Deployment", "web"), ("StatefulSet", "db"), ("CronJob", "nightly"), ("Pod", "debug")}
    assert listed[("Deployment", "web")]["pods"] == ["web-7d9f-a", "web-7d9f-b"]
    assert {"component": "entourage-logging", "field": "image", "before": "busybox:1.36.0", "after": "busybox:1.36.1"} in listed[
        ("Deployment", "web")
    ]["changes"]
    assert listed[("Deployment", "web")]["injectedBy"] == ["0.1.0"]
    assert "5 of 6 pods in 4 workloads run outdated companions" in result.stderr
    text = run_audit(api, tmp_path, "--outdated")
    assert "Deployment/web" in text.stdout and "entourage-logging: image busybox:1.36.0 → busybox:1.36.1" in text.stdout
    assert not any(request.startswith("PATCH") for request in api.requests)


def test_restart_is_a_dry_run_until_yes(api: FakeApiServer, tmp_path: Path) -> None:
    outdated_cluster(api, tmp_path)
    result = run_audit(api, tmp_path, "--outdated", "--restart")
    assert result.returncode == 0, result.stderr
    assert "would restart shop/Deployment/web (2 pods)" in result.stderr
    assert "would restart shop/StatefulSet/db (1 pods)" in result.stderr
    assert "skipped shop/CronJob/nightly (1 pods): a CronJob is not restarted through a template" in result.stderr
    assert "skipped shop/Pod/debug (1 pods): a bare pod: delete it and create it again" in result.stderr
    assert "dry run: nothing was restarted; add --yes to restart" in result.stderr
    assert api.workload_patches == []


def test_restart_with_yes_patches_each_workload_template_once(api: FakeApiServer, tmp_path: Path) -> None:
    outdated_cluster(api, tmp_path)
    result = run_audit(api, tmp_path, "--outdated", "--restart", "--yes", "--pause", "0")
    assert result.returncode == 0, result.stderr
    assert [(plural, name) for plural, _, name, _ in api.workload_patches] == [("deployments", "web"), ("statefulsets", "db")]
    for _, _, _, body in api.workload_patches:
        stamp = body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
        assert len(stamp) == 20 and stamp.endswith("Z")
    assert api.objects[("apps/v1", "deployments", "shop", "web")]["spec"]["template"]["metadata"]["annotations"][
        "kubectl.kubernetes.io/restartedAt"
    ]
    assert all(request.startswith(("GET", "PATCH /apis/apps/v1/namespaces/shop/")) for request in api.requests)


def test_restart_also_serves_the_pods_that_missed_injection(api: FakeApiServer, tmp_path: Path) -> None:
    api.put_workload("Deployment", "shop", "web")
    api.put_workload("ReplicaSet", "shop", "web-7d9f", owner=("Deployment", "web"))
    missed = {"metadata": {"name": "web-7d9f-a", "namespace": "shop", "annotations": {"entourage.dev/logging": "true"},
                           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f", "uid": "u", "controller": True}]},
              "spec": {"containers": [{"name": "app", "image": "shop/app:2.1"}]}, "status": {"phase": "Running"}}  # fmt: skip
    api.pods = [missed]
    result = run_audit(api, tmp_path, "--restart", "--yes", "--pause", "0")
    assert result.returncode == 0, result.stderr
    assert "restarted shop/Deployment/web (1 pods)" in result.stderr
    assert [(plural, name) for plural, _, name, _ in api.workload_patches] == [("deployments", "web")]


def test_a_failed_restart_is_reported_and_makes_the_exit_code_1(api: FakeApiServer, tmp_path: Path) -> None:
    outdated_cluster(api, tmp_path)
    del api.objects[("apps/v1", "statefulsets", "shop", "db")]
    result = run_audit(api, tmp_path, "--outdated", "--restart", "--yes", "--pause", "0")
    assert result.returncode == 1
    assert "failed to restart shop/StatefulSet/db: PATCH /apis/apps/v1/namespaces/shop/statefulsets/db: HTTP 404" in result.stderr
    assert "restarted shop/Deployment/web (2 pods)" in result.stderr
