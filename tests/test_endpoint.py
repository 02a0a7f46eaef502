"""POST /mutate as the apiserver calls it: the real `entourage serve` process, real TLS, real JSON."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest

from tests.conftest import reference_review
from tests.test_golden import CASES, CONFIG, as_review, golden_path
from webhook import certs, yamlio

UID = "6c9a2f0e-1b7d-4e3a-9f58-2d4c8b1a7e35"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A client with keep-alive (like the apiserver's) to a server started for this module."""
    directory = tmp_path_factory.mktemp("certs")
    certs.write(certs.generate("entourage", "entourage"), directory)
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--tls-cert-file",
            str(directory / "tls.crt"),
            "--tls-private-key-file",
            str(directory / "tls.key"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            str(CONFIG),
            "--drain-seconds",
            "0",
        ],  # no 5 s drain when the module ends
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    http = httpx.Client(base_url=f"https://localhost:{port}", verify=context, timeout=10)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield http
    finally:
        http.close()
        server.terminate()
        server.wait(timeout=10)
        assert server.stderr is not None
        server.stderr.close()


def post(client: httpx.Client, review: Any) -> httpx.Response:
    return client.post("/mutate?timeout=10s", content=json.dumps(review), headers={"Content-Type": "application/json"})


def patched(review: dict[str, Any], response: dict[str, Any]) -> Any:
    patch = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    return jsonpatch.apply_patch(review["request"]["object"], patch)


@pytest.mark.parametrize("case", [c for c in CASES if not c.stem.startswith("denied-")], ids=lambda p: p.stem)
def test_every_golden_case_comes_back_over_https_as_its_golden_pod(client: httpx.Client, case: Path) -> None:
    review = as_review(yamlio.load_all(case.read_text())[0])
    answer = post(client, review)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    assert body["response"]["uid"] == UID and body["response"]["allowed"] is True
    assert patched(review, body["response"]) == yamlio.load_all(golden_path(case, ".injected").read_text())[0]


def test_an_injected_answer_carries_the_patch_type_and_audit_annotations(client: httpx.Client) -> None:
    response = post(client, reference_review({"entourage.dev/logging": "true"})).json()["response"]
    assert response["patchType"] == "JSONPatch"
    assert response["auditAnnotations"] == {"injected": "entourage-logging"}


def test_a_pod_without_annotations_is_allowed_without_a_patch(client: httpx.Client) -> None:
    response = post(client, reference_review()).json()["response"]
    assert response == {"uid": UID, "allowed": True}


def test_an_invalid_annotation_is_denied_with_code_400_and_the_message(client: httpx.Client) -> None:
    response = post(client, reference_review({"entourage.dev/wait-for": "db:5432;reboot"})).json()["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert "entourage.dev/wait-for: 'db:5432;reboot': expected a port number from 1 to 65535" in response["status"]["message"]


def test_advice_goes_into_warnings_each_under_120_characters(client: httpx.Client) -> None:
    review = reference_review({"entourage.dev/logging": "true", "entourage.dev/wait-for-timeout": "1m"})
    review["request"]["object"]["spec"]["restartPolicy"] = "OnFailure"
    warnings = post(client, review).json()["response"]["warnings"]
    assert len(warnings) == 2 and all(len(w) <= 120 for w in warnings)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}}, "not a pod"),
        ({"kind": {"group": "example.com", "version": "v1", "kind": "Pod"}}, "a custom resource whose kind is Pod"),
        ({"operation": "UPDATE"}, "update"),
        ({"subResource": "status"}, "subresource"),
    ],
    ids=["not-a-pod", "custom-resource-named-pod", "update", "subresource"],
)
def test_requests_that_are_not_pod_creations_are_allowed_untouched(client: httpx.Client, change: dict[str, Any], expected: str) -> None:
    review = reference_review({"entourage.dev/logging": "true"})
    review["request"].update(change)
    assert post(client, review).json()["response"] == {"uid": UID, "allowed": True}, expected


def _without(path: str) -> dict[str, Any]:
    review = reference_review()
    *parents, last = path.split(".")
    target = review
    for key in parents:
        target = target[key]
    del target[last]
    return review


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"this is not json", "the body is not JSON"),
        (b"[1, 2]", "got a JSON list"),
        (json.dumps(_without("request")).encode(), "no request object"),
        (json.dumps(_without("request.uid")).encode(), "request.uid must be a non-empty string"),
        (json.dumps({**reference_review(), "apiVersion": "admission.k8s.io/v1beta1"}).encode(), "expected apiVersion admission.k8s.io/v1"),
        (
            json.dumps({**reference_review(), "request": {**reference_review()["request"], "object": None}}).encode(),
            "request.object must be the Pod",
        ),
    ],
    ids=["not-json", "not-an-object", "no-request", "no-uid", "v1beta1", "no-object"],
)
def test_a_malformed_review_gets_http_400_with_a_clear_message(client: httpx.Client, body: bytes, message: str) -> None:
    answer = client.post("/mutate", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["kind"] == "Status" and message in answer.json()["message"]


def test_a_wrong_content_type_gets_415(client: httpx.Client) -> None:
    answer = client.post("/mutate", content=json.dumps(reference_review()), headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415 and "application/json" in answer.json()["message"]


def test_a_get_on_mutate_gets_405(client: httpx.Client) -> None:
    assert client.get("/mutate").status_code == 405


def test_a_body_over_the_apiservers_limit_gets_413(client: httpx.Client) -> None:
    answer = client.post("/mutate", content=b" " * (4 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413


def test_answers_stay_correct_across_many_requests_on_one_keep_alive_client(client: httpx.Client) -> None:
    review = reference_review({"entourage.dev/ambassador": "6379=redis:6379"})
    for _ in range(50):
        assert post(client, review).json()["response"]["allowed"] is True


def _slow_request(endpoint: Any) -> tuple[list[dict[str, Any]], asyncio.Task[None]]:
    """Run the endpoint on a request whose body never arrives; returns what it sent and its task."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/mutate", "headers": [(b"content-type", b"application/json")]}
    return sent, asyncio.ensure_future(endpoint(scope, receive, send))


def test_a_body_past_its_deadline_gets_408_and_other_cancellations_pass_through() -> None:
    from webhook.serving.endpoint import MutateEndpoint

    endpoint = MutateEndpoint(lambda: None, body_timeout=0.2)  # type: ignore[arg-type, return-value]

    async def scenario() -> None:
        late, late_task = _slow_request(endpoint)
        stopped, stopped_task = _slow_request(endpoint)
        await asyncio.sleep(0.05)
        stopped_task.cancel()  # e.g. the server shutting down: not a timeout
        with pytest.raises(asyncio.CancelledError):
            await stopped_task
        started = time.monotonic()
        await late_task
        assert 0.1 < time.monotonic() - started < 0.5
        assert late[0]["status"] == 408 and (b"connection", b"close") in late[0]["headers"]
        assert stopped == []
        assert endpoint._deadlines is not None and endpoint._deadlines.reading == {}

    asyncio.run(scenario())


def _call(endpoint: Any, body: bytes) -> tuple[int, Any]:
    """Drive the ASGI callable as uvicorn does, in process."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/mutate", "headers": [(b"content-type", b"application/json")]}
    asyncio.run(endpoint(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


@pytest.mark.parametrize("on_error", ["deny", "allow"])
def test_an_engine_failure_is_answered_per_on_error_for_the_requests_uid(on_error: str) -> None:
    from webhook.admission.reuse import AnswerCache
    from webhook.engine.inject import ClusterFacts
    from webhook.engine.settings import build_settings
    from webhook.serving.endpoint import MutateEndpoint

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug inside the engine")

    state = type("State", (), {"settings": build_settings({"onError": on_error}), "cluster": ClusterFacts(), "namespace_annotations": None})
    review = reference_review({"entourage.dev/logging": "true"})
    review["request"]["uid"] = "uid-of-this-request"
    status, answer = _call(MutateEndpoint(lambda: state, answers=AnswerCache(0, on_miss=broken)), json.dumps(review).encode())
    assert status == 200 and answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "uid-of-this-request"
    if on_error == "deny":
        assert response["allowed"] is False and response["status"]["code"] == 500 and response["status"]["reason"] == "InternalError"
        assert response["status"]["message"] == "Entourage failed to inject this pod (internal error: KeyError); see the webhook's logs"
    else:
        assert response == {
            "uid": "uid-of-this-request",
            "allowed": True,
            "warnings": ["Entourage failed and admitted the pod unchanged (onError: allow)"],
        }
