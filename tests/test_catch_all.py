"""The endpoint's one catch-all: whatever escapes below it is answered, never a 500.

Faults are injected below the endpoint (in the answer cache, in the engine, in decoding, in the
observer) and the ASGI callable itself is driven, as uvicorn drives it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tests.conftest import reference_review
from webhook.admission import partial
from webhook.admission.reuse import AnswerCache
from webhook.engine.inject import ClusterFacts
from webhook.engine.settings import Settings, build_settings
from webhook.serving.endpoint import MutateEndpoint


@dataclass
class State:
    settings: Settings
    cluster: ClusterFacts = ClusterFacts()
    namespace_annotations: Any = None


def call(endpoint: MutateEndpoint, body: bytes) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/mutate", "headers": [(b"content-type", b"application/json")]}
    asyncio.run(endpoint(scope, receive, send))
    return sent[0]["status"], orjson.loads(sent[1]["body"])


def body(uid: str) -> bytes:
    review = reference_review()
    review["request"]["uid"] = uid
    review["request"]["object"]["metadata"]["annotations"]["entourage.dev/logging"] = "true"
    return orjson.dumps(review)


def exploding(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a bug below the endpoint")


@pytest.mark.parametrize(("on_error", "allowed"), [("deny", False), ("allow", True)])
def test_a_fault_below_the_endpoint_is_answered_per_on_error_with_the_requests_uid(on_error: str, allowed: bool) -> None:
    endpoint = MutateEndpoint(lambda: State(build_settings({"onError": on_error})), answers=AnswerCache(0, on_miss=exploding))
    status, review = call(endpoint, body("uid-fault-1"))
    assert status == 200
    response = review["response"]
    assert response["uid"] == "uid-fault-1" and response["allowed"] is allowed
    if allowed:
        assert "onError: allow" in response["warnings"][0] and "patch" not in response
    else:
        assert response["status"]["code"] == 500 and "RuntimeError" in response["status"]["message"]


def test_a_fault_in_decoding_is_a_4xx_status(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(raw: bytes) -> Any:
        raise MemoryError("a bug in the decoder")

    monkeypatch.setattr(partial, "loads", broken)
    status, answer = call(MutateEndpoint(lambda: State(build_settings({}))), body("uid-fault-2"))
    assert status == 400 and answer["kind"] == "Status" and answer["code"] == 400


def test_a_fault_while_recording_does_not_reach_the_client() -> None:
    def observe(decision: Any) -> None:
        raise RuntimeError("metrics are broken")

    status, review = call(MutateEndpoint(lambda: State(build_settings({})), observe), body("uid-fault-3"))
    assert status == 200 and review["response"]["uid"] == "uid-fault-3" and review["response"]["allowed"] is True
