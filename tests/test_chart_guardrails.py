"""The chart's guardrails (issue 12, section 2), one test per template behaviour, with the real helm:
replicas and disruption, scheduling, the network the pods listen on, which pods reach the webhook,
the configuration check before any pod loads it, resources, names, priority, observability and
`helm test`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from tests.test_chart import (
    CHART,
    CONFIGMAP,
    NAMESPACE,
    PEM_CA,
    RELEASE,
    FakeApiserver,
    container,
    flag,
    kinds,
    merge,
    one,
    render,
    run_helm,
    template_error,
    validate,
    webhook,
)
from webhook import metrics

REPO = Path(__file__).resolve().parents[1]
CHECK = f"{RELEASE}-config-check"


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def notes(values: dict[str, Any]) -> str:
    done = run_helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", values=values)
    assert done.returncode == 0, done.stderr
    return done.stdout[done.stdout.index("NOTES:") :]


# ---------------------------------------------------------------------------------------------
# replicas and disruption


def test_one_replica_gets_no_disruption_budget_and_notes_explain_the_trade_off() -> None:
    docs = render({"replicaCount": 1})
    assert "PodDisruptionBudget" not in kinds(docs)
    assert one(docs, "Deployment")["spec"]["replicas"] == 1
    text = notes({"replicaCount": 1})
    assert "WARNING: one replica. No PodDisruptionBudget was rendered" in text
    assert "WARNING" not in notes({})


def test_three_replicas_keep_the_budget() -> None:
    pdb = one(render({"replicaCount": 3}), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"  # a crash-looping pod never blocks a drain


def test_the_autoscaler_owns_the_replica_count_and_the_budget_follows_its_minimum() -> None:
    docs = render({"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 7, "targetCPUUtilizationPercentage": 60}})
    for doc in docs:
        validate(doc)
    assert "replicas" not in one(docs, "Deployment")["spec"]  # an upgrade never resets the autoscaler's count
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": one(docs, "Deployment")["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 7)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
    ]
    assert "PodDisruptionBudget" in kinds(docs)
    assert "PodDisruptionBudget" not in kinds(render({"autoscaling": {"enabled": True, "minReplicas": 1}}))
    assert "HorizontalPodAutoscaler" not in kinds(render())


def test_an_autoscaler_minimum_above_its_maximum_is_refused() -> None:
    assert "autoscaling.minReplicas (6) must not exceed autoscaling.maxReplicas (5)" in template_error(
        {"autoscaling": {"enabled": True, "minReplicas": 6}}
    )


# ---------------------------------------------------------------------------------------------
# scheduling


def test_replicas_prefer_distinct_nodes_and_spread_over_hosts_and_zones_by_default() -> None:
    spec = pod_spec(render())
    selector = one(render(), "Deployment")["spec"]["selector"]["matchLabels"]
    assert spec["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}}
            ]
        }
    }
    assert [c["topologyKey"] for c in spec["topologySpreadConstraints"]] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]


def test_required_anti_affinity_and_none() -> None:
    required = pod_spec(render({"podAntiAffinity": "required"}))["affinity"]["podAntiAffinity"]
    assert list(required) == ["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert "affinity" not in pod_spec(render({"podAntiAffinity": "none"}))
    assert "value must be one of" in template_error({"podAntiAffinity": "sometimes"})


def test_a_users_affinity_is_kept_and_their_own_anti_affinity_replaces_ours() -> None:
    node = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}]
            }
        }
    }
    affinity = pod_spec(render({"affinity": node}))["affinity"]
    assert affinity["nodeAffinity"] == node["nodeAffinity"] and "podAntiAffinity" in affinity
    theirs = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"app": "x"}}}
            ]
        }
    }
    assert pod_spec(render({"affinity": theirs}))["affinity"] == theirs


def test_topology_keys_come_from_values() -> None:
    spreads = pod_spec(render({"topologySpread": {"topologyKeys": ["topology.kubernetes.io/zone"], "whenUnsatisfiable": "DoNotSchedule"}}))[
        "topologySpreadConstraints"
    ]
    assert [(s["topologyKey"], s["whenUnsatisfiable"]) for s in spreads] == [("topology.kubernetes.io/zone", "DoNotSchedule")]
    assert "topologySpreadConstraints" not in pod_spec(render({"topologySpread": {"enabled": False}}))


# ---------------------------------------------------------------------------------------------
# the network the pods listen on


def test_the_server_listens_dual_stack_by_default_and_the_host_is_a_value() -> None:
    assert flag(container(render())["args"], "--host") == "::"
    assert flag(container(render({"server": {"host": "0.0.0.0"}}))["args"], "--host") == "0.0.0.0"


def test_host_network_serves_on_the_nodes_port_and_keeps_cluster_dns() -> None:
    assert "hostNetwork" not in pod_spec(render())
    docs = render({"hostNetwork": True, "server": {"port": 10260}})
    for doc in docs:
        validate(doc)
    spec = pod_spec(docs)
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert container(docs)["ports"] == [
        {"name": "https", "containerPort": 10260, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9443, "protocol": "TCP"},
    ]
    assert flag(container(docs)["args"], "--port") == "10260"
    assert one(docs, "Service")["spec"]["ports"][0]["targetPort"] == "https"


# ---------------------------------------------------------------------------------------------
# which pods reach the webhook


def test_cert_manager_mode_never_sends_cert_managers_own_namespace() -> None:
    def names(docs: list[dict[str, Any]]) -> list[str]:
        expressions = webhook(docs)["namespaceSelector"]["matchExpressions"]
        return next(e["values"] for e in expressions if e["key"] == "kubernetes.io/metadata.name")

    assert names(render({"certificates": {"mode": "cert-manager"}})) == [NAMESPACE, "kube-system", "kube-node-lease", "cert-manager"]
    assert names(render({"certificates": {"mode": "cert-manager", "certManager": {"namespace": "security"}}}))[-1] == "security"
    assert "cert-manager" not in names(render())


def test_extra_namespace_conditions_are_anded_after_the_charts_own() -> None:
    extra = [{"key": "control-plane", "operator": "DoesNotExist"}, {"key": "team", "operator": "In", "values": ["a", "b"]}]
    docs = render({"webhook": {"namespaceSelector": {"matchExpressions": extra}}})
    for doc in docs:
        validate(doc)
    expressions = webhook(docs)["namespaceSelector"]["matchExpressions"]
    assert [e["key"] for e in expressions[:2]] == ["entourage.dev/injection", "kubernetes.io/metadata.name"]
    assert expressions[2:] == extra
    assert "additional properties 'matchLabels' not allowed" in template_error(
        {"webhook": {"namespaceSelector": {"matchLabels": {"a": "b"}}}}
    )


def test_the_webhook_configuration_carries_the_aks_opt_out_and_extra_labels_and_annotations() -> None:
    config = one(render({"certificates": {"mode": "helm"}, "webhook": {"labels": {"team": "platform"}}}), "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"] == {"admissions.enforcer/disabled": "true"}
    assert config["metadata"]["labels"]["team"] == "platform"
    # Helm merges maps: a default key goes by setting it to null.
    config = one(
        render({"certificates": {"mode": "helm"}, "webhook": {"annotations": {"admissions.enforcer/disabled": None}}}),
        "MutatingWebhookConfiguration",
    )
    assert "annotations" not in config["metadata"]


# ---------------------------------------------------------------------------------------------
# the configuration is checked before any pod loads it


def config_check(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return one(docs, "ConfigMap", CHECK), one(docs, "Job", CHECK)


def test_a_hook_job_validates_the_new_configuration_before_install_and_upgrade() -> None:
    docs = render()
    configmap, job = config_check(docs)
    assert configmap["data"] == one(docs, "ConfigMap", CONFIGMAP)["data"]  # the same config.yaml the pods will load
    for doc in (configmap, job):
        assert doc["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert doc["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert int(configmap["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 300
    pod = job["spec"]["template"]["spec"]
    (check,) = pod["containers"]
    assert check["image"] == container(docs)["image"]
    assert check["args"] == ["config", "validate", "/etc/entourage/config/config.yaml"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and check["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["volumes"] == [{"name": "config", "configMap": {"name": CHECK}}]
    assert {"Job"} & set(kinds(render({"configValidation": {"enabled": False}}))) == set()


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        pytest.param({}, None, id="defaults"),
        pytest.param(
            {"profiles": {"adapter": {"x": {"image": "example/x:1"}}}}, "profiles.adapter.x.command: required", id="profile without command"
        ),
        pytest.param(
            {"profiles": {"adapter": {"x": {"image": "a:1", "command": ["x"], "bogus": 1}}}},
            "profiles.adapter.x: unknown key 'bogus'",
            id="unknown profile key",
        ),
    ],
)
def test_the_hooks_command_accepts_a_good_configuration_and_names_what_is_wrong_in_a_bad_one(
    tmp_path: Path, config: dict[str, Any], problem: str | None
) -> None:
    """Runs what the Job runs (`python3 -m webhook config validate`) on the file the hook renders."""
    configmap, job = config_check(render({"config": config}))
    path = tmp_path / "config.yaml"
    path.write_text(configmap["data"]["config.yaml"])
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    done = subprocess.run(
        [sys.executable, "-m", "webhook", *args[:-1], str(path)], capture_output=True, text=True, timeout=60, check=False, cwd=REPO
    )
    if problem is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 1 and problem in done.stderr, done.stderr


# ---------------------------------------------------------------------------------------------
# resources, names, priority


@pytest.mark.parametrize(
    ("workers", "expected"),
    [
        (0, {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}}),
        (1, {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}}),
        # 4 workers and uvicorn's supervisor: 5 processes.
        (4, {"requests": {"cpu": "200m", "memory": "480Mi"}, "limits": {"memory": "1280Mi"}}),
    ],
)
def test_resources_grow_with_the_worker_count(workers: int, expected: dict[str, Any]) -> None:
    assert container(render({"server": {"workers": workers}}))["resources"] == expected


def test_explicit_resources_win() -> None:
    given = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert container(render({"resources": given, "server": {"workers": 4}}))["resources"] == given


LONG_RELEASE = "a-platform-teams-rather-long-release-for-the-webhooks"  # 53, Helm's longest: fullname 63


@pytest.mark.parametrize("mode", ["self-managed", "cert-manager", "helm"])
def test_a_long_release_name_keeps_every_name_label_and_common_name_within_limits(mode: str) -> None:
    values = {
        "certificates": {"mode": mode},
        "tests": {"namespace": "apps"},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    }
    done = run_helm("template", LONG_RELEASE, str(CHART), "--namespace", NAMESPACE, values=values)
    assert done.returncode == 0, done.stderr
    docs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    assert max(len(doc["metadata"]["name"]) for doc in docs) >= 63
    for doc in docs:
        validate(doc)  # label syntax and length, name length (tests/test_chart.py)
        if doc["kind"] == "Certificate" and "commonName" in doc["spec"]:
            assert len(doc["spec"]["commonName"]) <= 64, doc["spec"]["commonName"]  # cert-manager refuses more


def test_a_system_critical_priority_class_outside_kube_system_gets_its_resource_quota() -> None:
    docs = render({"priorityClassName": "system-cluster-critical", "replicaCount": 3})
    for doc in docs:
        validate(doc)
    quota = one(docs, "ResourceQuota")
    assert quota["spec"] == {
        "hard": {"pods": "4"},  # every replica and the rollout's surge pod
        "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["system-cluster-critical"]}]},
    }
    assert one(render({"priorityClassName": "system-node-critical", "autoscaling": {"enabled": True}}), "ResourceQuota")["spec"][
        "hard"
    ] == {"pods": "6"}
    assert "ResourceQuota" not in kinds(render({"priorityClassName": "high"}))
    assert "ResourceQuota" not in kinds(render({"priorityClassName": "system-cluster-critical", "priorityClassQuota": {"enabled": False}}))
    done = run_helm("template", RELEASE, str(CHART), "--namespace", "kube-system", values={"priorityClassName": "system-cluster-critical"})
    assert done.returncode == 0 and "kind: ResourceQuota" not in done.stdout


def test_values_describe_on_error_as_the_code_does() -> None:
    text = (CHART / "values.yaml").read_text()
    comment = text[text.index("What the webhook answers when it fails internally") : text.index("  onError: deny")]
    assert "not\n  # about invalid annotations" in comment and "failurePolicy" in comment


# ---------------------------------------------------------------------------------------------
# secret mode: what the user's Secret must hold, checked at install when it exists


@pytest.fixture
def apiserver() -> Iterator[FakeApiserver]:
    fake = FakeApiserver()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        fake.thread.join(timeout=5)


def user_secret(fake: FakeApiserver, data: dict[str, str]) -> None:
    fake.objects[f"/api/v1/namespaces/{NAMESPACE}/secrets/mine"] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mine", "namespace": NAMESPACE},
        "data": data,
    }


def template_against(fake: FakeApiserver, directory: Path, values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return run_helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=server", "--disable-openapi-validation",
        "--kubeconfig", str(fake.kubeconfig(directory)), values=values,
    )  # fmt: skip


PAIR = {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}


def test_secret_mode_without_ca_crt_works_when_the_ca_bundle_is_a_value(apiserver: FakeApiserver, tmp_path: Path) -> None:
    user_secret(apiserver, PAIR)
    done = template_against(apiserver, tmp_path, {"certificates": {"mode": "secret", "secret": {"name": "mine", "caBundle": PEM_CA}}})
    assert done.returncode == 0, done.stderr
    assert any(r.startswith(f"/api/v1/namespaces/{NAMESPACE}/secrets/mine") for r in apiserver.requests)


@pytest.mark.parametrize(
    ("data", "values", "message"),
    [
        pytest.param({"tls.crt": "Y2VydA=="}, {}, "Secret entourage-system/mine has no tls.key", id="no key"),
        pytest.param(
            PAIR, {"certificates": {"patchCABundle": True}}, "has no ca.crt to patch the caBundle from", id="patching without ca.crt"
        ),
        pytest.param(
            PAIR,
            {"serviceMonitor": {"enabled": True}},
            "has no ca.crt for Prometheus to verify the webhook with",
            id="scraping without ca.crt",
        ),
    ],
)
def test_secret_mode_says_at_install_what_the_users_secret_lacks(
    apiserver: FakeApiserver, tmp_path: Path, data: dict[str, str], values: dict[str, Any], message: str
) -> None:
    user_secret(apiserver, data)
    base = {"certificates": {"mode": "secret", "secret": {"name": "mine", "caBundle": PEM_CA}}}
    done = template_against(apiserver, tmp_path, merge(base, values))
    assert done.returncode != 0 and message in done.stderr, done.stderr


# ---------------------------------------------------------------------------------------------
# observability


# Every metric family webhook/metrics.py defines (counters without their _total suffix), with its labels.
EXPORTED: dict[str, set[str]] = {
    metric._name: set(metric._labelnames) for metric in vars(metrics).values() if isinstance(metric, MetricWrapperBase)
}
TARGET_LABELS = {"namespace", "job", "pod", "instance", "service", "endpoint", "container"}
"""The labels Prometheus adds to every scraped series (the ServiceMonitor's target)."""


def metric_names(expression: str) -> set[str]:
    """The Entourage metric families an expression reads, after checking it is PromQL (parsed by
    the Prometheus parser's Rust port) whose selectors and ``by``/``without`` labels exist."""
    names = set()
    for selector, labels in _selectors(promql_parser.parse(expression.replace("$__rate_interval", "5m")), []):
        family = re.sub(r"_(bucket|count|sum|total)$", "", selector)
        if selector.startswith("entourage_"):
            names.add(family)
            known = EXPORTED.get(family, set()) | TARGET_LABELS | ({"le"} if selector.endswith("_bucket") else set())
            assert labels <= known, (expression, selector, labels - known)
    return names


def _selectors(node: Any, found: list[tuple[str, set[str]]]) -> list[tuple[str, set[str]]]:
    """(metric name, label names it matches and aggregates by) for every selector under ``node``."""
    if isinstance(node, promql_parser.VectorSelector):
        found.append((node.name or "", {matcher.name for matcher in node.matchers.matchers}))
        return found
    start = len(found)
    for attribute in ("lhs", "rhs", "expr", "args", "vector_selector"):
        child = getattr(node, attribute, None)
        for item in child if isinstance(child, list) else [child] if child is not None else []:
            _selectors(item, found)
    if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
        for _selector, labels in found[start:]:
            labels.update(node.modifier.labels)
    return found


def test_the_prometheus_rule_alerts_on_metrics_the_webhook_exports() -> None:
    docs = render(
        {
            "prometheusRule": {
                "enabled": True,
                "labels": {"release": "prometheus"},
                "errorRatio": 0.05,
                "latencySeconds": 0.25,
                "certificateExpiryDays": 7,
            }
        }
    )
    rule = one(docs, "PrometheusRule")
    validate(rule)
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "EntourageDown",
        "EntourageAdmissionErrors",
        "EntourageManyDenials",
        "EntourageSlowAdmissions",
        "EntourageCertificateExpiresSoon",
        "EntourageReloadFailures",
        "EntourageConfigInvalid",
    }
    exported = EXPORTED.keys()
    for alert in alerts.values():
        expression = alert["expr"]
        assert metric_names(expression) <= exported, (alert["alert"], metric_names(expression) - exported)
        assert f'namespace="{NAMESPACE}", job="{RELEASE}"' in expression or "up{" in expression
        assert alert["labels"]["severity"] in ("critical", "warning") and alert["annotations"]["summary"]
    assert alerts["EntourageAdmissionErrors"]["expr"].endswith("> 0.05")
    assert alerts["EntourageSlowAdmissions"]["expr"].endswith("> 0.25")
    assert "< 7 * 86400" in alerts["EntourageCertificateExpiresSoon"]["expr"]
    assert "PrometheusRule" not in kinds(render())


def test_the_grafana_dashboard_is_a_configmap_for_the_sidecar_graphing_exported_metrics() -> None:
    docs = render({"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Entourage"}}})
    configmap = one(docs, "ConfigMap", f"{RELEASE}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Entourage"}
    dashboard = json.loads(configmap["data"]["entourage.json"])
    assert dashboard["uid"] == "entourage" and len(dashboard["panels"]) >= 6
    exported = EXPORTED.keys()
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= metric_names(target["expr"])
    assert used <= exported, used - exported
    assert {"entourage_admissions", "entourage_admission_duration_seconds", "entourage_certificate_expiry_timestamp_seconds"} <= used
    assert f"{RELEASE}-dashboard" not in [d["metadata"]["name"] for d in render()]


# ---------------------------------------------------------------------------------------------
# helm test


def test_helm_test_dry_runs_an_annotated_pod_in_a_served_namespace_and_fails_without_injection() -> None:
    assert not [d for d in render() if "test" in (d["metadata"].get("annotations") or {}).get("helm.sh/hook", "")]
    docs = render({"tests": {"namespace": "apps"}, "config": {"annotationPrefix": "sidecars.example.com"}})
    hooks = [d for d in docs if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]
    for doc in hooks:
        validate(doc)
    assert sorted(d["kind"] for d in hooks) == ["ConfigMap", "Pod", "Role", "RoleBinding", "ServiceAccount"]
    role = one(hooks, "Role")
    assert role["metadata"]["namespace"] == "apps"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]  # nothing else, nowhere else
    binding = one(hooks, "RoleBinding")
    account = one(hooks, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}]
    test_pod = one(hooks, "Pod")
    assert test_pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    args = test_pod["spec"]["containers"][0]["args"]
    assert args[:3] == ["create", "--dry-run=server", "--filename=/etc/entourage-test/pod.yaml"]
    assert "--output=jsonpath={.metadata.annotations.sidecars\\.example\\.com/status}" in args
    assert "--allow-missing-template-keys=false" in args  # a missing status annotation fails the test
    manifest = yaml.safe_load(one(hooks, "ConfigMap")["data"]["pod.yaml"])
    validate({**manifest, "metadata": {**manifest["metadata"], "name": "x"}})
    assert manifest["metadata"]["namespace"] == "apps"
    assert manifest["metadata"]["annotations"] == {"sidecars.example.com/logging": "true"}
