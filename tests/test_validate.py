"""``POST /validate`` through the real server over HTTPS, with the namespaces of a (fake) cluster.

Every ``tests/testdata/validate/<case>.json`` is an AdmissionReview as the apiserver sends it
(each workload kind, Namespaces, pod UPDATEs with ``oldObject``); its answer is kept next to it
as ``<case>.json.answer`` and refreshed with ``REFRESH_GOLDEN=1``. The reviews' namespaces exist
in the fake API server: ``plain`` (no annotations), ``shop`` (``logging: "true"`` for every pod)
and ``broken`` (annotations set before the webhook was installed: a typo and an invalid target).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest

from tests.fake_apiserver import FakeApiServer
from tests.webhook_process import Webhook, review, running, start
from webhook.admission.validate import MAX_LISTED, locate, validate
from webhook.engine.inject import ClusterFacts
from webhook.engine.settings import Settings
from webhook.serving import validation
from webhook.serving.validation import ValidateEndpoint

CASES = Path(__file__).parent / "testdata" / "validate"
REFRESH = os.environ.get("REFRESH_GOLDEN") == "1"
BROKEN = {"entourage.dev/loging": "true", "entourage.dev/wait-for": "db"}

EXPECTED = {
    "cronjob-create-invalid": "denied",
    "cronjob-update-invalid-kept": "warned",
    "daemonset-create-invalid": "denied",
    "daemonset-update-valid": "allowed",
    "deployment-create-every-problem": "denied",
    "deployment-create-namespace-defaults": "denied",
    "deployment-create-namespace-invalid": "denied",
    "deployment-create-no-annotations": "allowed",
    "deployment-create-typo": "denied",
    "deployment-create-valid": "allowed",
    "deployment-create-warning": "warned",
    "deployment-delete-not-validated": "allowed",
    "deployment-update-typo-added": "denied",
    "deployment-update-typo-fixed": "allowed",
    "deployment-update-typo-kept": "warned",
    "job-create-invalid": "denied",
    "job-create-warning": "warned",
    "namespace-create-invalid": "denied",
    "namespace-create-valid": "allowed",
    "namespace-create-warning": "warned",
    "namespace-update-invalid-added": "denied",
    "namespace-update-invalid-kept": "warned",
    "pod-create-not-validated": "allowed",
    "pod-update-app-image": "allowed",
    "pod-update-injected-image": "denied",
    "pod-update-injected-removed": "denied",
    "pod-update-labels": "allowed",
    "pod-update-not-injected": "allowed",
    "replicaset-create-invalid": "denied",
    "statefulset-create-invalid": "denied",
    "statefulset-update-invalid-changed": "denied",
}
"""What each case must come to, independently of its golden answer (which a refresh rewrites)."""


@pytest.fixture(scope="module")
def api() -> Iterator[FakeApiServer]:
    fake = FakeApiServer().start()
    fake.set_nodes("v1.28.5")  # an old kubelet: classic sidecars, and the Job gets told what they do
    fake.put_namespace("plain")
    fake.put_namespace("shop", {"entourage.dev/logging": "true"})
    fake.put_namespace("broken", BROKEN)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def webhook(api: FakeApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    tmp_path = tmp_path_factory.mktemp("validate")
    server = start(tmp_path, "--kubeconfig", str(api.kubeconfig(tmp_path / "kubeconfig")))
    try:
        yield server
    finally:
        server.stop()


def post(webhook: Webhook, body: Any, path: str = "/validate", **kwargs: Any) -> httpx.Response:
    with webhook.client() as client:
        return client.post(path, json=body, **kwargs)


def outcome(response: dict[str, Any]) -> str:
    if not response["allowed"]:
        return "denied"
    return "warned" if response.get("warnings") else "allowed"


def test_every_case_has_an_expectation_and_every_answer_a_case() -> None:
    cases = {path.name.removesuffix(".json") for path in CASES.glob("*.json")}
    assert cases == set(EXPECTED)
    orphans = [path.name for path in CASES.glob("*.answer") if not path.with_suffix("").exists()]
    assert orphans == []


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_each_review_gets_its_golden_answer_over_https(webhook: Webhook, case: str) -> None:
    document = json.loads((CASES / f"{case}.json").read_text())
    response = post(webhook, document)
    assert response.status_code == 200
    answer = response.json()
    assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    got = answer["response"]
    assert got["uid"] == document["request"]["uid"]
    assert "patch" not in got  # a validating webhook never changes the object
    assert outcome(got) == EXPECTED[case]
    assert all(len(warning) <= 120 for warning in got.get("warnings", []))
    golden = CASES / f"{case}.json.answer"
    text = json.dumps(got, indent=2, ensure_ascii=False) + "\n"
    if REFRESH:
        golden.write_text(text)
    assert golden.exists(), f"no golden answer for {case}: run with REFRESH_GOLDEN=1 and review it"
    assert text == golden.read_text(), f"{case}: the answer changed; REFRESH_GOLDEN=1 rewrites it (review the diff)"


def message(case: str, webhook: Webhook) -> str:
    response = post(webhook, json.loads((CASES / f"{case}.json").read_text())).json()["response"]
    return str(response["status"]["message"])


def test_a_typo_in_a_deployments_template_is_denied_at_apply_time_where_it_is(webhook: Webhook) -> None:
    assert message("deployment-create-typo", webhook) == (
        "Entourage would deny every pod of this Deployment: "
        'spec.template.metadata.annotations["entourage.dev/loging"]: unknown annotation; did you mean entourage.dev/logging?'
    )


def test_a_cronjobs_problems_are_located_in_its_job_template(webhook: Webhook) -> None:
    assert message("cronjob-create-invalid", webhook).startswith(
        'Entourage would deny every pod of this CronJob: spec.jobTemplate.spec.template.metadata.annotations["entourage.dev/logging-paths"]: '
    )


def test_a_workload_in_a_namespace_with_invalid_annotations_is_told_which_namespace_key_and_command(webhook: Webhook) -> None:
    text = message("deployment-create-namespace-invalid", webhook)
    assert 'Namespace broken annotations["entourage.dev/loging"]: unknown annotation; did you mean entourage.dev/logging?' in text
    assert "kubectl annotate namespace broken entourage.dev/loging-" in text
    assert "kubectl annotate namespace broken entourage.dev/wait-for-" in text


def test_changing_an_injected_container_is_denied_naming_it(webhook: Webhook) -> None:
    assert message("pod-update-injected-image", webhook) == (
        "Entourage: spec.containers[entourage-logging]: the container entourage-logging was injected by Entourage and cannot be changed"
        " (image changed); change the Entourage annotations or the configuration and recreate the pod"
    )
    removed = message("pod-update-injected-removed", webhook)
    assert "the container entourage-logging was injected by Entourage and cannot be removed" in removed
    assert "the init container entourage-wait-db-5432 was injected by Entourage and cannot be changed" in removed
    assert "the volume entourage-logs-var-log-app was injected by Entourage and cannot be removed" in removed


def test_a_pod_in_a_namespace_with_invalid_annotations_is_denied_naming_the_fix_and_the_namespace_gets_an_event(
    api: FakeApiServer, webhook: Webhook
) -> None:
    response = post(webhook, review(namespace="broken"), "/mutate").json()["response"]
    assert response["allowed"] is False
    text = response["status"]["message"]
    assert text.startswith(
        'Entourage cannot inject this pod: Namespace broken annotations["entourage.dev/loging"]: unknown annotation; did you mean entourage.dev/logging?'
        " (set on the Namespace for all its pods; fix the value, or remove it: kubectl annotate namespace broken entourage.dev/loging-)"
    )
    assert "kubectl annotate namespace broken entourage.dev/wait-for-" in text
    # The pod's own annotation wins, and a problem of its own stays the pod's.
    own = post(
        webhook, review({"entourage.dev/loging": "false", "entourage.dev/wait-for": "db:5432"}, namespace="broken"), "/mutate"
    ).json()["response"]
    assert (
        own["status"]["message"]
        == "Entourage cannot inject this pod: entourage.dev/loging: 'false': unknown annotation; did you mean entourage.dev/logging?"
    )
    webhook.wait_for(lambda: [e for e in api.events if e["reason"] == "InvalidNamespaceAnnotations"], what="the Namespace event")
    event = next(e for e in api.events if e["reason"] == "InvalidNamespaceAnnotations")
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "name": "broken",
        "uid": api.namespaces["broken"]["metadata"]["uid"],
    }
    assert (event["type"], event["metadata"]["namespace"]) == ("Warning", "broken")
    assert event["message"] == (
        "pods in namespace broken are denied: its annotations entourage.dev/loging, entourage.dev/wait-for are invalid"
        " (the pod's admission error says why); remove with: kubectl annotate namespace broken entourage.dev/loging- entourage.dev/wait-for-"
    )


@pytest.mark.parametrize(
    ("method", "content_type", "body", "status"),
    [
        ("GET", None, None, 405),
        ("POST", "text/plain", b"{}", 415),
        ("POST", "application/json", b"not json", 400),
        ("POST", "application/json", b'{"apiVersion": "v1", "kind": "Pod"}', 400),
    ],
)
def test_requests_that_are_not_admission_reviews_get_a_4xx_status(
    webhook: Webhook, method: str, content_type: str | None, body: bytes | None, status: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with webhook.client() as client:
        response = client.request(method, "/validate", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["kind"] == "Status" and response.json()["code"] == status


def test_an_update_without_its_old_object_is_a_400_naming_it(webhook: Webhook) -> None:
    document = json.loads((CASES / "pod-update-injected-image.json").read_text())
    del document["request"]["oldObject"]
    response = post(webhook, document)
    assert response.status_code == 400
    assert response.json()["message"] == "request.object and request.oldObject must be the Pod of the UPDATE"


def test_a_body_over_the_apiservers_limit_is_refused_with_413(webhook: Webhook) -> None:
    document = json.loads((CASES / "deployment-create-valid.json").read_text())
    document["request"]["object"]["metadata"]["annotations"] = {"padding": "x" * (3 * 1024 * 1024 + 100 * 1024)}
    assert post(webhook, document).status_code == 413


def test_validations_are_counted_by_kind_outcome_and_reason(webhook: Webhook) -> None:
    post(webhook, json.loads((CASES / "namespace-create-invalid.json").read_text()))
    metrics = webhook.metrics()
    assert metrics['entourage_validations_total{kind="Namespace",outcome="denied",reason="invalid"}'] >= 1
    assert any(line.get("msg") == "validation" and line.get("kind") == "Namespace" for line in webhook.logs())


def test_the_modes_warn_and_off_never_deny(tmp_path: Path) -> None:
    typo = json.loads((CASES / "deployment-create-typo.json").read_text())
    injected = json.loads((CASES / "pod-update-injected-image.json").read_text())
    with running(tmp_path, config="validation: warn\n") as webhook:
        for document in (typo, injected):
            answer = post(webhook, document).json()["response"]
            assert answer["allowed"] is True and answer["warnings"], answer
        assert post(webhook, typo).json()["response"]["warnings"] == [
            'spec.template.metadata.annotations["entourage.dev/loging"]: unknown annotation; did you mean entourage.dev/logging?'
        ]
        webhook.config.swap({"config.yaml": b"validation: 'off'\n"})
        webhook.wait_for(lambda: "warnings" not in post(webhook, typo).json()["response"], what="the reload")
        assert post(webhook, injected).json()["response"] == {"uid": injected["request"]["uid"], "allowed": True}


# ---------------------------------------------------------------------------------------------
# in process: the catch-all, and what the HTTPS cases cannot show cheaply


def call(endpoint: ValidateEndpoint, body: bytes) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/validate", "headers": [(b"content-type", b"application/json")]}
    asyncio.run(endpoint(scope, receive, send))
    return sent[0]["status"], orjson.loads(sent[1]["body"])


def test_a_fault_in_validation_admits_with_a_warning_never_a_500(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug below the endpoint")

    monkeypatch.setattr(validation, "validate", broken)
    state = SimpleNamespace(settings=settings, cluster=ClusterFacts(), namespace_annotations=None)
    status, answer = call(ValidateEndpoint(lambda: state), (CASES / "deployment-create-typo.json").read_bytes())  # type: ignore[arg-type, return-value]
    assert status == 200
    assert answer["response"] == {
        "uid": "00000000-0000-4000-8000-000000000002",
        "allowed": True,
        "warnings": ["Entourage could not validate this object (internal error: RuntimeError); see the webhook's logs"],
    }


def test_an_unrelated_update_in_a_namespace_with_invalid_annotations_is_warned_not_denied(settings: Settings) -> None:
    document = json.loads((CASES / "deployment-update-typo-fixed.json").read_text())
    document["request"]["oldObject"] = document["request"]["object"]
    verdict = validate(document, settings, namespace_annotations=lambda name: BROKEN)
    response = verdict.review["response"]
    assert (verdict.outcome, verdict.reason, response["allowed"]) == ("warned", "invalid_unchanged", True)
    assert response["warnings"][0].startswith('Namespace plain annotations["entourage.dev/loging"]: unknown annotation')


def test_a_forged_status_annotation_listing_many_names_is_read_only_up_to_a_bound(settings: Settings) -> None:
    document = json.loads((CASES / "pod-update-injected-removed.json").read_text())
    old = document["request"]["oldObject"]
    names = [f"c{index}" for index in range(100_000)]
    old["metadata"]["annotations"]["entourage.dev/status"] = json.dumps({"containers": names})
    old["spec"]["containers"] += [{"name": name} for name in names[:100]]
    verdict = validate(document, settings)
    assert verdict.outcome == "allowed"  # a status this long is not one injection wrote: not ours to judge
    old["metadata"]["annotations"]["entourage.dev/status"] = json.dumps({"containers": names[:1000]})
    problems = validate(document, settings).review["response"]["status"]["message"].split("; spec.")
    assert len(problems) == MAX_LISTED


@pytest.mark.parametrize(
    ("problem", "at", "located"),
    [
        ("entourage.dev/loging: 'true': unknown annotation; did you mean entourage.dev/logging?", "spec.template",
         'spec.template.metadata.annotations["entourage.dev/loging"]: unknown annotation; did you mean entourage.dev/logging?'),
        ("entourage.dev/inject: annotation values are strings, got a number", "", 'metadata.annotations["entourage.dev/inject"]: annotation values are strings, got a number'),
        ("spec.containers: a pod needs at least one container with a name", "spec.jobTemplate.spec.template",
         "spec.jobTemplate.spec.template.spec.containers: a pod needs at least one container with a name"),
        ("70 annotations under entourage.dev/ (the pod's and its namespace's); at most 64 are allowed (limits.maxAnnotationKeys)", "spec.template",
         "spec.template: 70 annotations under entourage.dev/ (the pod's and its namespace's); at most 64 are allowed (limits.maxAnnotationKeys)"),
    ],
)  # fmt: skip
def test_each_shape_of_engine_message_is_located(settings: Settings, problem: str, at: str, located: str) -> None:
    own = {"entourage.dev/loging": "true"}
    assert locate(problem, settings, own=own, inherited={}, at=at, namespace="shop") == located


def test_an_ambassador_below_port_1024_is_denied_at_apply_time_unless_the_template_sets_the_sysctl(settings: Settings) -> None:
    document = json.loads((CASES / "deployment-create-valid.json").read_text())
    template = document["request"]["object"]["spec"]["template"]
    template["metadata"]["annotations"] = {"entourage.dev/ambassador": "443=tls://api.example.com:443,6379=redis:6379"}
    denied = validate(document, settings)
    message = denied.review["response"]["status"]["message"]
    assert denied.outcome == "denied"
    assert (
        "spec.template.metadata.annotations[\"entourage.dev/ambassador\"]: '443=tls://api.example.com:443': local port 443 is below 1024"
        in message
    )
    assert "set that sysctl in the pod's spec.securityContext.sysctls to at most 443" in message

    template["spec"]["securityContext"] = {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "443"}]}
    assert validate(document, settings).outcome == "allowed"
