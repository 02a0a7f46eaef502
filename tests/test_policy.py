"""Governance: per-namespace allowlists of profiles, ambassador upstreams and wait-for targets,
and namespace defaults a pod may not override, chosen by namespace labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import reference_pod
from tests.fake_apiserver import FakeApiServer
from tests.webhook_process import containers, review, running
from webhook.engine import policy
from webhook.engine.annotations import KEYS
from webhook.engine.inject import DISABLED, INJECTED, inject_pod
from webhook.engine.policy import Namespace
from webhook.engine.settings import parse_settings
from webhook.errors import ConfigError, PodDenied

CONFIG = """
policies:
  - name: payments
    namespaceSelector: {matchLabels: {team: payments}}
    profiles: {adapter: [nginx-prometheus]}
    ambassadorUpstreams: ["*.payments.svc.cluster.local:5432", "tls://api.stripe.com:443"]
    waitForTargets: ["tcp://*.svc.cluster.local:*", "https://status.example.com/healthz*", "dns://*.payments.svc.cluster.local"]
    enforced: [logging]
"""
SETTINGS = parse_settings(CONFIG)
PAYMENTS = Namespace({"entourage.dev/logging": "true"}, {"team": "payments", "kubernetes.io/metadata.name": "payments"})
OTHER = Namespace({}, {"team": "web"})


def inject(annotations: dict[str, str], namespace: Namespace = PAYMENTS) -> list[str]:
    injection = inject_pod(reference_pod(annotations), SETTINGS, namespace_annotations=namespace)
    return injection.components if injection.reason == INJECTED else [injection.reason]


def denial(annotations: dict[str, str], namespace: Namespace = PAYMENTS) -> str:
    with pytest.raises(PodDenied) as error:
        inject_pod(reference_pod(annotations), SETTINGS, namespace_annotations=namespace)
    return str(error.value)


def test_allowed_profiles_upstreams_and_targets_are_injected() -> None:
    assert inject({
        "entourage.dev/adapter": "nginx-prometheus",
        "entourage.dev/ambassador": "5432=db.payments.svc.cluster.local:5432,8443=tls://api.stripe.com:443",
        "entourage.dev/wait-for": "tcp://db.payments.svc.cluster.local:5432,https://status.example.com/healthz/ready,dns://db.payments.svc.cluster.local",
    }) == [
        "entourage-wait-db-payments-svc-cluster-local-5432", "entourage-wait-status-example-com-healthz-ready",
        "entourage-wait-db-payments-svc-cluster-local", "entourage-ambassador-5432", "entourage-ambassador-8443",
        "entourage-logging", "entourage-adapter-nginx-prometheus",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {"entourage.dev/adapter": "statsd-prometheus"},
            "entourage.dev/adapter: profile 'statsd-prometheus': policy 'payments' allows adapter profiles nginx-prometheus",
        ),
        (
            {"entourage.dev/ambassador": "6379=redis.evil.example:6379"},
            "entourage.dev/ambassador: '6379=redis.evil.example:6379': policy 'payments' allows upstreams *.payments.svc.cluster.local:5432, tls://api.stripe.com:443",
        ),
        ({"entourage.dev/ambassador": "8443=api.stripe.com:443"}, "entourage.dev/ambassador: '8443=api.stripe.com:443': policy 'payments'"),
        (
            {"entourage.dev/ambassador": "5433=db.payments.svc.cluster.local:5433"},
            "'5433=db.payments.svc.cluster.local:5433': policy 'payments'",
        ),
        ({"entourage.dev/ambassador": "5432=payments.svc.cluster.local.evil.example:5432"}, "policy 'payments' allows upstreams"),
        (
            {"entourage.dev/wait-for": "http://status.example.com/healthz"},
            "entourage.dev/wait-for: 'http://status.example.com/healthz': policy 'payments' allows targets",
        ),
        ({"entourage.dev/wait-for": "https://status.example.com/admin"}, "'https://status.example.com/admin': policy 'payments'"),
        ({"entourage.dev/wait-for": "tcp://db.example.com:5432"}, "'tcp://db.example.com:5432': policy 'payments'"),
        ({"entourage.dev/wait-for": "dns://kubernetes.default.svc"}, "'dns://kubernetes.default.svc': policy 'payments'"),
    ],
)
def test_what_a_policy_does_not_allow_is_denied_naming_the_rule(annotations: dict[str, str], message: str) -> None:
    assert message in denial(annotations)


def test_every_refusal_is_reported_at_once() -> None:
    text = denial({"entourage.dev/adapter": "statsd-prometheus", "entourage.dev/wait-for": "dns://x.example"})
    assert "entourage.dev/adapter: profile 'statsd-prometheus'" in text and "entourage.dev/wait-for: 'dns://x.example'" in text


def test_a_namespace_the_policy_does_not_select_is_not_restricted() -> None:
    assert inject({"entourage.dev/adapter": "statsd-prometheus", "entourage.dev/wait-for": "dns://x.example"}, OTHER) == [
        "entourage-wait-x-example", "entourage-adapter-statsd-prometheus",
    ]  # fmt: skip
    # Without labels (entourage inject, a namespace not in the cache) a selective policy does not apply.
    injection = inject_pod(reference_pod({"entourage.dev/adapter": "statsd-prometheus"}), SETTINGS, namespace_annotations={})
    assert injection.reason == INJECTED


def test_an_enforced_namespace_default_cannot_be_overridden_or_opted_out_of() -> None:
    assert inject({}) == ["entourage-logging"]
    assert inject({"entourage.dev/logging": "true"}) == ["entourage-logging"]
    assert denial({"entourage.dev/logging": "false"}) == (
        "entourage.dev/logging: 'false': policy 'payments' enforces the namespace's value 'true'"
    )
    assert denial({"entourage.dev/inject": "false"}) == (
        "entourage.dev/inject: \"false\": policy 'payments' enforces the namespace's logging; the pod cannot opt out"
    )
    # Elsewhere the same pod opts out as usual.
    assert inject({"entourage.dev/inject": "false"}, Namespace({"entourage.dev/logging": "true"}, {})) == [DISABLED]


def test_an_already_injected_pod_comes_back_unchanged_whatever_it_says() -> None:
    pod = reference_pod({"entourage.dev/logging": "false", "entourage.dev/status": json.dumps({"version": 2})})
    assert inject_pod(pod, SETTINGS, namespace_annotations=PAYMENTS).patch == []


def test_the_enforceable_keys_are_annotation_keys() -> None:
    assert set(policy.ENFORCEABLE) <= set(KEYS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policies: {name: x}", "policies: expected a list of policies"),
        ("policies: [{name: x}]", "policies[0].namespaceSelector: required ({} selects every namespace)"),
        ("policies: [{name: X, namespaceSelector: {}}]", "policies[0].name: expected a DNS label"),
        ("policies: [{name: x, namespaceSelector: {}}, {name: x, namespaceSelector: {}}]", "policies[1].name: 'x' is used twice"),
        (
            "policies: [{name: x, namespaceSelector: {matchExpressions: [{key: a, operator: Maybe}]}}]",
            "operator: expected one of In, NotIn, Exists, DoesNotExist",
        ),
        ("policies: [{name: x, namespaceSelector: {matchExpressions: [{key: a, operator: In}]}}]", "In and NotIn need values"),
        ("policies: [{name: x, namespaceSelector: {}, profiles: {adapter: [nope]}}]", "profiles.adapter: no adapter profile 'nope'"),
        ("policies: [{name: x, namespaceSelector: {}, profiles: {sidecar: [x]}}]", "profiles: unknown kind 'sidecar'"),
        (
            "policies: [{name: x, namespaceSelector: {}, ambassadorUpstreams: ['https://a:1']}]",
            "'https://a:1': expected [SCHEME://]HOST[:PORT][/PATH] with SCHEME one of tcp, tls",
        ),
        ("policies: [{name: x, namespaceSelector: {}, ambassadorUpstreams: ['a*b.example:1']}]", "a host is a name, *, or *.domain"),
        (
            "policies: [{name: x, namespaceSelector: {}, waitForTargets: ['tcp://a:1/path']}]",
            "only http:// and https:// targets have a path",
        ),
        ("policies: [{name: x, namespaceSelector: {}, waitForTargets: ['tcp://a:70000']}]", "a port is 1-65535 or *"),
        ("policies: [{name: x, namespaceSelector: {}, enforced: [status]}]", "'status': expected annotation keys among logging"),
        ("policies: [{name: x, namespaceSelector: {}, allowed: []}]", "unknown key 'allowed'"),
    ],
)
def test_an_invalid_policy_is_refused_naming_the_setting(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(text, source="config.yaml")
    assert message in str(error.value), str(error.value)


# -- through the webhook, with the namespace's labels from the API -------------------------------


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    fake = FakeApiServer().start()
    fake.set_nodes("v1.30.2")
    fake.put_namespace("payments", {"entourage.dev/logging": "true"}, labels={"team": "payments"})
    fake.put_namespace("web", labels={"team": "web"})
    try:
        yield fake
    finally:
        fake.stop()


def test_the_webhook_applies_policies_by_the_labels_the_namespace_cache_holds(api: FakeApiServer, tmp_path: Path) -> None:
    kubeconfig = str(api.kubeconfig(tmp_path / "kubeconfig"))
    with running(tmp_path, "--kubeconfig", kubeconfig, "--self-test-seconds", "0", config=CONFIG) as webhook, webhook.client() as client:
        asks = {"entourage.dev/wait-for": "dns://kubernetes.default.svc"}
        webhook.wait_for(
            lambda: client.post("/mutate", json=review(asks, namespace="payments")).json()["response"]["allowed"] is False, what="the cache"
        )
        refused = client.post("/mutate", json=review(asks, namespace="payments")).json()["response"]
        assert "policy 'payments' allows targets" in refused["status"]["message"]
        assert containers(client.post("/mutate", json=review(asks, namespace="web")).json()) == ["entourage-wait-kubernetes-default-svc"]
        # A label change reaches the cache through the watch: the policy stops applying.
        api.put_namespace("payments", {"entourage.dev/logging": "true"}, labels={"team": "platform"})
        webhook.wait_for(
            lambda: client.post("/mutate", json=review(asks, namespace="payments")).json()["response"]["allowed"] is True, what="the watch"
        )


def test_ports_and_schemes_are_part_of_the_rule() -> None:
    settings = parse_settings(
        "policies: [{name: db-only, namespaceSelector: {}, waitForTargets: ['tcp://db.internal:5432'], ambassadorUpstreams: ['db.internal:5432']}]"
    )
    allowed = {
        "entourage.dev/wait-for": "db.internal:5432",
        "entourage.dev/ambassador": "5432=db.internal:5432,15432=tls://db.internal:5432",
    }
    assert inject_pod(reference_pod(allowed), settings).reason == INJECTED
    for refused in (
        {"entourage.dev/wait-for": "db.internal:5433"},
        {"entourage.dev/wait-for": "dns://db.internal"},
        {"entourage.dev/ambassador": "5433=db.internal:5433"},
    ):
        with pytest.raises(PodDenied, match="policy 'db-only'"):
            inject_pod(reference_pod(refused), settings)
