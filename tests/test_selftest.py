"""The self-test through a fake apiserver that calls the real webhook as the apiserver would:
dry-run probe pods, the selectors, the caBundle verified, and the failures the webhook cannot see
from inside (no endpoints, a stale caBundle, a namespace the configuration does not select)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_apiserver import FakeApiServer, selects
from tests.webhook_process import Webhook, free_port, running
from webhook import certs
from webhook.cluster.selftest import label_selector

OPT_IN = {"matchExpressions": [{"key": "entourage.dev/injection", "operator": "In", "values": ["enabled"]}]}


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    fake = FakeApiServer().start()
    fake.set_nodes("v1.30.2")
    fake.put_namespace("shop", labels={"entourage.dev/injection": "enabled"})
    fake.put_namespace("billing", labels={"entourage.dev/injection": "enabled"})
    fake.put_namespace("plain")
    try:
        yield fake
    finally:
        fake.stop()


def configure(api: FakeApiServer, url: str, ca_pem: bytes, *, failure_policy: str = "Fail") -> None:
    client_config = {"url": url, "caBundle": base64.b64encode(ca_pem).decode()}
    api.put_webhook_configuration(
        "entourage", "inject.entourage.dev", client_config=client_config, namespace_selector=OPT_IN, failure_policy=failure_policy
    )


def selftest_metrics(webhook: Webhook) -> dict[str, float]:
    return {name: value for name, value in webhook.metrics().items() if name.startswith("entourage_selftest_success")}


def kube(api: FakeApiServer, tmp_path: Path, *extra: str) -> tuple[str, ...]:
    return ("--kubeconfig", str(api.kubeconfig(tmp_path / "kubeconfig")), "--self-test-seconds", "0.3", *extra)


def test_a_healthy_webhook_passes_in_every_selected_namespace(api: FakeApiServer, tmp_path: Path) -> None:
    port = free_port()
    certificates = certs.generate("entourage", "entourage")
    configure(api, f"https://127.0.0.1:{port}/mutate", certificates.ca_pem)
    with running(tmp_path, *kube(api, tmp_path), certificates=certificates, port=port) as webhook:
        webhook.wait_for(lambda: len(selftest_metrics(webhook)) == 2, what="a self-test round")
        assert selftest_metrics(webhook) == {
            'entourage_selftest_success{namespace="billing"}': 1.0,
            'entourage_selftest_success{namespace="shop"}': 1.0,
        }
        probe = api.dry_run_pods[0]
        assert probe["metadata"]["labels"] == {"entourage.dev/self-test": "true"}
        assert "entourage.dev/status" in probe["metadata"]["annotations"]
        assert any(c["name"].startswith("entourage-wait-") for c in probe["spec"]["initContainers"])
        assert not any(event["reason"] == "EntourageSelfTestFailed" for event in api.events)


def test_a_stale_ca_bundle_fails_with_the_apiservers_words_and_an_event(api: FakeApiServer, tmp_path: Path) -> None:
    port = free_port()
    certificates = certs.generate("entourage", "entourage")
    configure(api, f"https://127.0.0.1:{port}/mutate", certs.generate("entourage", "entourage").ca_pem)  # another CA
    with running(tmp_path, *kube(api, tmp_path, "--self-test-namespace", "shop"), certificates=certificates, port=port) as webhook:
        webhook.wait_for(lambda: selftest_metrics(webhook) == {'entourage_selftest_success{namespace="shop"}': 0.0}, what="a failed round")
        webhook.wait_for(lambda: any(e["reason"] == "EntourageSelfTestFailed" for e in api.events), what="the Event")
        [event] = [e for e in api.events if e["reason"] == "EntourageSelfTestFailed"]
        assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Namespace", "name": "shop"}
        assert event["type"] == "Warning" and "CERTIFICATE_VERIFY_FAILED" in event["message"]
        assert event["message"].startswith(
            "a dry-run probe pod was not injected: POST /api/v1/namespaces/shop/pods?dryRun=All: HTTP 500: "
            'Internal error occurred: failed calling webhook "inject.entourage.dev": failed to call webhook: '
        )
        failures = [line for line in webhook.logs() if line.get("msg") == "self-test failed"]
        assert failures and failures[0]["namespace"] == "shop"
        # The caBundle is corrected: the next round passes, and one Event was enough.
        configure(api, f"https://127.0.0.1:{port}/mutate", certificates.ca_pem)
        webhook.wait_for(lambda: selftest_metrics(webhook) == {'entourage_selftest_success{namespace="shop"}': 1.0}, what="recovery")
        assert sum(e["reason"] == "EntourageSelfTestFailed" for e in api.events) == 1


def test_a_webhook_without_endpoints_fails(api: FakeApiServer, tmp_path: Path) -> None:
    certificates = certs.generate("entourage", "entourage")
    configure(api, f"https://127.0.0.1:{free_port()}/mutate", certificates.ca_pem)  # nothing listens there
    with running(tmp_path, *kube(api, tmp_path, "--self-test-namespace", "billing"), certificates=certificates) as webhook:
        webhook.wait_for(
            lambda: selftest_metrics(webhook) == {'entourage_selftest_success{namespace="billing"}': 0.0}, what="a failed round"
        )
        webhook.wait_for(lambda: any(e["reason"] == "EntourageSelfTestFailed" for e in api.events), what="the Event")
        message = next(e["message"] for e in api.events if e["reason"] == "EntourageSelfTestFailed")
        assert message == (
            "a dry-run probe pod was not injected: POST /api/v1/namespaces/billing/pods?dryRun=All: HTTP 500: Internal error "
            'occurred: failed calling webhook "inject.entourage.dev": failed to call webhook: [Errno 111] Connection refused'
        )


def test_a_namespace_the_selector_leaves_out_is_admitted_uninjected_and_fails(api: FakeApiServer, tmp_path: Path) -> None:
    port = free_port()
    certificates = certs.generate("entourage", "entourage")
    configure(api, f"https://127.0.0.1:{port}/mutate", certificates.ca_pem, failure_policy="Ignore")
    with running(tmp_path, *kube(api, tmp_path, "--self-test-namespace", "plain"), certificates=certificates, port=port) as webhook:
        webhook.wait_for(lambda: selftest_metrics(webhook) == {'entourage_selftest_success{namespace="plain"}': 0.0}, what="a failed round")
        webhook.wait_for(lambda: any(e["reason"] == "EntourageSelfTestFailed" for e in api.events), what="the Event")
        message = next(e["message"] for e in api.events if e["reason"] == "EntourageSelfTestFailed")
        assert "admitted without injection: the webhook was not called (selectors, matchConditions) or failed open" in message


@pytest.mark.parametrize(
    ("selector", "query"),
    [
        (None, ""),
        (OPT_IN, "entourage.dev/injection in (enabled)"),
        (
            {"matchLabels": {"team": "a"}, "matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["1", "2"]}]},
            "team=a,x notin (1,2)",
        ),
        ({"matchExpressions": [{"key": "x", "operator": "Exists"}, {"key": "y", "operator": "DoesNotExist"}]}, "x,!y"),
    ],
)
def test_a_namespace_selector_becomes_the_label_selector_the_apiserver_evaluates(selector: dict[str, object] | None, query: str) -> None:
    assert label_selector(selector) == query
    labels = {"entourage.dev/injection": "enabled", "team": "a", "x": "3"}
    from tests.fake_apiserver import matches

    assert selects(query, labels) == matches(selector, labels)  # type: ignore[arg-type]
