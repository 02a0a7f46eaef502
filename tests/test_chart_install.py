"""The chart as a platform team installs it, without overrides: self-managed certificates, safe
under Argo CD and Flux (a render is the same bytes every time), with only the RBAC that needs."""

from __future__ import annotations

import pytest

from tests.test_chart import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    container,
    flag,
    kinds,
    one,
    render,
    run_helm,
    template_error,
    validate,
    webhook,
)

SECRET = f"{FULLNAME}-tls"


def test_helm_template_twice_gives_byte_identical_output_in_the_default_mode() -> None:
    first, second = (run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE).stdout for _ in range(2))  # not the cached render
    assert first and first == second
    assert "BEGIN" not in first and "caBundle:" not in first and "kind: Secret\n" not in first, "no key material and no caBundle"


def test_the_default_mode_is_self_managed_and_lints_into_valid_objects() -> None:
    lint = run_helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render()
    for doc in docs:
        validate(doc)
    assert "Secret" not in kinds(docs) and "Certificate" not in kinds(docs)
    assert "caBundle" not in webhook(docs)["clientConfig"]


def test_the_container_manages_its_certificates_through_the_api_without_a_mounted_secret() -> None:
    docs = render()
    main = container(docs)
    args = main["args"]
    assert flag(args, "--certificates-secret") == SECRET
    assert flag(args, "--service") == one(docs, "Service")["metadata"]["name"]
    assert flag(args, "--mutating-webhook-configuration") == one(docs, "MutatingWebhookConfiguration")["metadata"]["name"]
    assert flag(args, "--validating-webhook-configuration") == one(docs, "ValidatingWebhookConfiguration")["metadata"]["name"]
    assert (flag(args, "--ca-lifetime"), flag(args, "--certificate-lifetime"), flag(args, "--rotation-overlap")) == ("365d", "90d", "300s")
    assert "--tls-cert-file" not in args and "--ca-file" not in args
    assert {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in main["env"]
    assert "/etc/entourage/tls" not in [mount["mountPath"] for mount in main["volumeMounts"]]
    assert not [volume for volume in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"] if "secret" in volume]


def test_the_lifetimes_come_from_values_and_the_schema_refuses_other_units() -> None:
    args = container(
        render({"certificates": {"selfManaged": {"caLifetime": "730d", "certificateLifetime": "30d", "rotationOverlap": "10m"}}})
    )["args"]
    assert (flag(args, "--ca-lifetime"), flag(args, "--certificate-lifetime"), flag(args, "--rotation-overlap")) == ("730d", "30d", "10m")
    assert "caLifetime" in template_error({"certificates": {"selfManaged": {"caLifetime": "1y"}}})


def test_self_managed_rbac_is_its_own_secret_by_name_and_its_own_webhook_configuration_by_name() -> None:
    docs = render()
    name = one(docs, "MutatingWebhookConfiguration")["metadata"]["name"]
    rules = one(docs, "ClusterRole")["rules"]
    assert rules[-2:] == [
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
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET], "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    binding = one(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": one(docs, "ServiceAccount")["metadata"]["name"], "namespace": NAMESPACE}
    ]


@pytest.mark.parametrize("mode", ["cert-manager", "helm"])
def test_other_modes_have_no_secret_role(mode: str) -> None:
    assert "Role" not in kinds(render({"certificates": {"mode": mode}}))


def test_the_webhook_configurations_tell_flux_to_keep_the_ca_bundle_the_webhook_writes() -> None:
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        annotations = one(render(), kind)["metadata"]["annotations"]
        assert annotations == {"kustomize.toolkit.fluxcd.io/ssa": "Merge", "admissions.enforcer/disabled": "true"}


def test_self_patching_is_refused_in_self_managed_mode_where_it_is_always_on() -> None:
    assert "in self-managed mode the webhook always keeps its caBundle" in template_error({"certificates": {"patchCABundle": True}})


DIGEST = "sha256:" + "ab" * 32


def test_an_image_digest_pins_the_image_and_the_version_label_stays_the_charts_app_version() -> None:
    import re

    import yaml

    docs = render({"image": {"digest": DIGEST, "tag": "1.2.3@" + DIGEST}})
    assert container(docs)["image"] == f"ghcr.io/entourage-dev/entourage@{DIGEST}"
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    label_value = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        assert labels["app.kubernetes.io/version"] == app_version
        assert all(len(value) <= 63 and label_value.match(value) for value in labels.values()), labels
        assert len(doc["metadata"]["name"]) <= 63
    assert "digest" in template_error({"image": {"digest": "latest"}})
