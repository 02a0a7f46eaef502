"""Requests to the real ``entourage serve`` process: limits, errors, metrics, the admission log line."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.webhook_process import Webhook, containers, review, running, start
from webhook.engine import status
from webhook.engine.settings import load_settings

SECRET = "s3cr3t-db-password"


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    server = start(tmp_path_factory.mktemp("requests"), "--request-timeout", "0.5")
    try:
        yield server
    finally:
        server.stop()


def post(webhook: Webhook, body: object, **kwargs: object) -> httpx.Response:
    with webhook.client() as client:
        return client.post("/mutate", json=body, **kwargs)  # type: ignore[arg-type]


def test_an_admission_review_is_answered_with_a_patch(webhook: Webhook) -> None:
    response = post(webhook, review({"entourage.dev/logging": "true"}))
    assert response.status_code == 200
    assert containers(response.json()) == ["entourage-logging"]


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
        response = client.request(method, "/mutate", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["kind"] == "Status" and response.json()["code"] == status


def test_a_body_over_the_apiservers_3_mib_limit_is_refused_with_413(webhook: Webhook) -> None:
    big = json.dumps(review({"entourage.dev/padding": "x" * (3 * 1024 * 1024 + 100 * 1024)})).encode()
    with webhook.client() as client:
        declared = client.post("/mutate", content=big, headers={"Content-Type": "application/json"})
        chunked = client.post(
            "/mutate", content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]), headers={"Content-Type": "application/json"}
        )
    assert declared.status_code == 413 and chunked.status_code == 413


def test_a_client_too_slow_to_send_its_body_gets_408(webhook: Webhook) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw:
        with webhook.context().wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 3


def test_metrics_count_outcomes_components_and_latency(webhook: Webhook) -> None:
    before = webhook.metrics()
    annotations = {"entourage.dev/logging": "true", "entourage.dev/wait-for": "tcp://metrics-db:5432"}
    post(webhook, review(annotations, uid="metrics-1"))
    post(webhook, review(annotations, uid="metrics-2"))  # the same pod again: the answer is reused
    post(webhook, review())
    post(webhook, review({"entourage.dev/wait-for": "???"}))
    after = webhook.metrics()

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert delta('entourage_admissions_total{outcome="injected",reason="injected"}') == 2
    assert delta("entourage_answers_reused_total") == 1
    assert delta('entourage_admissions_total{outcome="skipped",reason="no_annotation"}') == 1
    assert delta('entourage_admissions_total{outcome="denied",reason="invalid"}') == 1
    settings = load_settings(None, environ={})
    tail, waiter = (
        status.profile_version(settings.profiles[kind][name])
        for kind, name in (("logging", "tail"), ("waitFor", settings.defaults.wait_for))
    )
    assert delta(f'entourage_injected_components_total{{component_kind="logging",profile="tail",profile_version="{tail}"}}') == 2
    assert (
        delta(
            f'entourage_injected_components_total{{component_kind="waitFor",profile="{settings.defaults.wait_for}",profile_version="{waiter}"}}'
        )
        == 2
    )
    assert delta("entourage_admission_duration_seconds_count") == 4
    assert after["entourage_certificate_expiry_timestamp_seconds"] > time.time() + 300 * 86400
    assert "entourage_config_reload_failures_total" in after


def test_each_admission_is_one_json_log_line_without_the_pod_spec_or_env_values(webhook: Webhook) -> None:
    document = review({"entourage.dev/logging": "true"}, uid="log-line-uid")
    document["request"]["object"]["spec"]["containers"][0]["env"].append({"name": "PASSWORD", "value": SECRET})
    assert post(webhook, document).status_code == 200
    line = webhook.wait_for(lambda: [line for line in webhook.logs() if line.get("uid") == "log-line-uid"], what="the log line")
    assert len(line) == 1
    assert {k: v for k, v in line[0].items() if k not in ("time", "pid", "duration_ms")} == {
        "level": "info",
        "logger": "entourage.admission",
        "msg": "admission",
        "uid": "log-line-uid",
        "namespace": "shop",
        "pod": "checkout-7d9c6b5f4-",
        "decision": "injected",
        "reason": "injected",
        "components": ["entourage-logging"],
    }
    assert line[0]["duration_ms"] >= 0
    text = webhook.log_path.read_text()
    assert SECRET not in text and "DATABASE_URL" not in text and "checkout-db" not in text


FAULTS = """
import webhook.engine.inject as inject
_build = inject._Builder.build
def build(self):
    if (self.pod.get("metadata", {}).get("annotations") or {}).get("test.example/explode"):
        raise RuntimeError("injected fault")
    return _build(self)
inject._Builder.build = build
"""


def test_an_unexpected_engine_failure_answers_per_on_error_logs_the_traceback_and_counts(tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(FAULTS)  # a bug inside inject_pod, in the real process
    exploding = {"entourage.dev/logging": "true", "test.example/explode": "yes"}
    # Interpreted: a compiled class cannot be patched (the compiled endpoint's catch-all is
    # tests/test_catch_all.py's, in process).
    with running(tmp_path, env={"PYTHONPATH": str(faults), "ENTOURAGE_INTERPRETED": "1"}) as webhook:
        denied = post(webhook, review(exploding, uid="boom-1"))
        assert denied.status_code == 200
        answer = denied.json()["response"]
        assert answer["uid"] == "boom-1" and answer["allowed"] is False and answer["status"]["code"] == 500
        assert "RuntimeError" in answer["status"]["message"]
        assert webhook.metrics()['entourage_admissions_total{outcome="error",reason="internal_error"}'] == 1
        logs = webhook.logs()
        assert any("injected fault" in line.get("traceback", "") for line in logs)
        assert any(line.get("uid") == "boom-1" and line["level"] == "error" and line["decision"] == "error" for line in logs)

        webhook.config.swap({"config.yaml": b"onError: allow\n"})
        webhook.wait_for(lambda: webhook.metrics()["entourage_config_reloads_total"] == 1, what="the reload")
        allowed = post(webhook, review(exploding, uid="boom-2")).json()["response"]
        assert (
            allowed["uid"] == "boom-2"
            and allowed["allowed"] is True
            and "patch" not in allowed
            and "onError: allow" in allowed["warnings"][0]
        )
