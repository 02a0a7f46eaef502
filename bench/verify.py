"""Check answers in full before anything is timed, so a fast wrong answer cannot score."""

from __future__ import annotations

import base64
import http.client
import ssl
from typing import Any

import jsonpatch
import orjson

INJECTED_CONTAINERS = ("entourage-ambassador-", "entourage-logging")
INJECTED_INIT_CONTAINERS = ("entourage-wait-",)


class VerificationError(AssertionError):
    """An answer is not what the apiserver needs; the message names the server, case and field."""


def post(port: int, body: bytes, *, ca_file: str, method: str = "POST", content_type: str = "application/json") -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False  # the certificate names the Service, not 127.0.0.1; the CA is still checked
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request(method, "/mutate", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _names(pod: dict[str, Any], section: str) -> list[str]:
    return [c["name"] for c in pod["spec"].get(section) or []]


def check_answer(where: str, review: dict[str, Any], status: int, body: bytes, *, annotated: bool, containers_asked: bool = True) -> None:
    """The answer echoes the uid, allows the pod and (when annotated) carries a patch that applies
    to the pod, user's containers kept, and (``containers_asked``: the bench's three annotations)
    adds the ambassador, logging agent and wait-for containers."""

    def require(condition: bool, what: str) -> None:
        if not condition:
            raise VerificationError(f"{where}: {what}; answer: {body[:300]!r}")

    require(status == 200, f"HTTP {status}")
    answer = orjson.loads(body)
    require(answer.get("apiVersion") == "admission.k8s.io/v1" and answer.get("kind") == "AdmissionReview", "not an AdmissionReview")
    response = answer.get("response") or {}
    request = review["request"]
    require(response.get("uid") == request["uid"], "uid not echoed")
    require(response.get("allowed") is True, "pod not allowed")
    pod = request["object"]
    if not annotated:
        require("patch" not in response, "a patch for a pod that asked for nothing")
        return
    require(response.get("patchType") == "JSONPatch", "no JSONPatch")
    operations = orjson.loads(base64.b64decode(response["patch"]))
    require(all(op["op"] == "add" for op in operations), "operations other than add")
    injected = jsonpatch.apply_patch(pod, operations)
    containers, init_containers = _names(injected, "containers"), _names(injected, "initContainers")
    for prefix in INJECTED_CONTAINERS if containers_asked else ():
        require(any(name.startswith(prefix) for name in containers + init_containers), f"no {prefix}* container")
    for prefix in INJECTED_INIT_CONTAINERS if containers_asked else ():
        require(any(name.startswith(prefix) for name in init_containers), f"no {prefix}* init container")
    original = _names(pod, "containers")
    require([name for name in containers if name in original] == original, "the pod's own containers changed")
    require("entourage.dev/status" in injected["metadata"]["annotations"], "no status annotation")


def check_server(
    name: str,
    port: int,
    *,
    ca_file: str,
    reviews: dict[str, dict[str, Any]],
    bodies: dict[str, bytes],
    varied: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
) -> None:
    """Entourage: every case in full (each varied pod too), plus the HTTP errors of the lean endpoint."""
    for case, body in bodies.items():
        status, answer = post(port, body, ca_file=ca_file)
        check_answer(f"{name}/{case}", reviews[case], status, answer, annotated=case != "unannotated")
    for index, review in enumerate(varied):
        status, answer = post(port, orjson.dumps(review), ca_file=ca_file)
        check_answer(f"{name}/varied[{index}]", review, status, answer, annotated=True, containers_asked=False)
    for method, content_type, body, expected in (
        ("GET", "application/json", b"", 405),
        ("POST", "text/plain", bodies["small"], 415),
        ("POST", "application/json", b'{"kind": "AdmissionReview"', 400),
    ):
        status, answer = post(port, body, ca_file=ca_file, method=method, content_type=content_type)
        if status != expected or orjson.loads(answer).get("kind") != "Status":
            raise VerificationError(
                f"{name}: {method} {content_type}: expected HTTP {expected} with a Status, got {status}: {answer[:200]!r}"
            )


def check_baseline(port: int, *, ca_file: str, reviews: dict[str, dict[str, Any]], bodies: dict[str, bytes]) -> None:
    """The baseline's fixed answer is valid for the small case (same uid) and a 200 for the rest."""
    status, answer = post(port, bodies["small"], ca_file=ca_file)
    check_answer("baseline/small", reviews["small"], status, answer, annotated=False)
    for case in ("large", "unannotated"):
        status, _ = post(port, bodies[case], ca_file=ca_file)
        if status != 200:
            raise VerificationError(f"baseline/{case}: HTTP {status}")
