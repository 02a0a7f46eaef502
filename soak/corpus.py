"""The committed seed corpus (tests/fuzz_corpus/): interesting request bodies the fuzzers start
from and the tests replay. ``python -m soak corpus`` rewrites it from ``seeds()``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import orjson

from soak import mix

DIRECTORY = Path(__file__).resolve().parent.parent / "tests" / "fuzz_corpus"


def _review(edit=None, annotations=None) -> bytes:  # type: ignore[no-untyped-def]
    review = mix.reference_review()
    review["request"]["object"]["metadata"]["annotations"].update(annotations or {})
    if edit is not None:
        edit(review)
    return orjson.dumps(review)


def _set(path: str, value: object):  # type: ignore[no-untyped-def]
    def edit(review: dict) -> None:  # type: ignore[type-arg]
        *parents, last = path.split(".")
        node = review
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def _delete(path: str):  # type: ignore[no-untyped-def]
    def edit(review: dict) -> None:  # type: ignore[type-arg]
        *parents, last = path.split(".")
        node = review
        for key in parents:
            node = node[key]
        del node[last]

    return edit


def seeds() -> dict[str, bytes]:
    P = "entourage.dev/"
    reference = _review()
    everything = {
        P + "logging": "true",
        P + "ambassador": "6379=redis:6379,8443=tls://api.example.com:443",
        P + "wait-for": "tcp://db:5432,dns://db",
        P + "adapter": "nginx-prometheus",
    }
    deep = b"[" * 5000 + b"]" * 5000
    deep_object = b'{"a":' * 3000 + b"1" + b"}" * 3000
    return {
        "reference-review.json": reference,
        "reference-all-patterns.json": _review(annotations=everything),
        "reference-native-sidecars.json": _review(annotations={**everything, P + "native-sidecars": "true"}),
        "truncated-half.json": reference[: len(reference) // 2],
        "truncated-one-byte.json": reference[:-1],
        "empty.json": b"",
        "whitespace.json": b" \n\t ",
        "null.json": b"null",
        "number.json": b"12345",
        "string.json": b'"AdmissionReview"',
        "array-of-review.json": b"[" + reference + b"]",
        "deep-array.json": deep,
        "deep-object.json": deep_object,
        "deep-in-object.json": _review(_set("request.object.spec.containers", json.loads(b"[" * 200 + b"]" * 200))),
        "huge-integer.json": _review(_set("request.object.spec.terminationGracePeriodSeconds", "@@BIG@@"), {P + "logging": "true"}).replace(
            b'"@@BIG@@"', b"1" + b"0" * 400
        ),
        "integer-past-64-bits.json": _review(
            _set("request.object.spec.terminationGracePeriodSeconds", "@@BIG@@"), {P + "logging": "true"}
        ).replace(b'"@@BIG@@"', b"18446744073709551616"),
        "huge-integer-raw.json": b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":'
        + b"9" * 5000
        + b"}}",
        "huge-float.json": b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","kind":{"group":"","kind":"Pod"},"object":{"spec":{"containers":[{"name":"a","ports":[{"containerPort":1e400}]}]}}}}',
        "nan.json": b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":NaN}}',
        "duplicate-keys.json": b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","uid":"b","operation":"CREATE","kind":{"group":"","version":"v1","kind":"Pod"},"object":{"metadata":{},"spec":{"containers":[]}}}}',
        "unicode-annotations.json": _review(
            annotations={P + "wait-for": "db\uff1a5432", P + "logging": "tr\u0443e", "\u202e" + P + "x": "\u0000"}
        ),
        "unicode-escapes.json": reference.replace(b'"checkout-7d9c6b5f4-"', b'"\\ud83d\\ude00\\u0000\\udc00"'),
        "invalid-utf8.json": reference.replace(b"checkout-7d9c6b5f4-", b"\xff\xfe\xc3\x28"),
        "bom.json": b"\xef\xbb\xbf" + reference,
        "shell-metacharacters.json": _review(
            annotations={
                P + "ambassador": "6379=redis:6379;rm -rf /",
                P + "wait-for": "$(id)`id`|id&&id",
                P + "logging-paths": "/var/log/app\n/etc",
            }
        ),
        "very-long-annotation.json": _review(annotations={P + "wait-for": "a" * 20_000}),
        "thousands-of-routes.json": _review(annotations={P + "ambassador": ",".join(f"{1024 + i}=svc-{i}:80" for i in range(3000))}),
        "nested-prefix.json": _review(
            annotations={P + P + "logging": "true", "entourage.dev.entourage.dev/logging": "true", P + "logging/extra": "true"}
        ),
        "wrong-type-apiVersion.json": _review(_set("apiVersion", 1)),
        "wrong-type-request.json": _review(_set("request", [])),
        "wrong-type-uid.json": _review(_set("request.uid", {"a": 1})),
        "empty-uid.json": _review(_set("request.uid", "")),
        "long-uid.json": _review(_set("request.uid", "u" * 10_000)),
        "wrong-type-kind.json": _review(_set("request.kind", "Pod")),
        "wrong-type-operation.json": _review(_set("request.operation", ["CREATE"])),
        "wrong-type-namespace.json": _review(_set("request.namespace", {"name": "shop"})),
        "wrong-type-object.json": _review(_set("request.object", "a pod")),
        "null-object.json": _review(_set("request.object", None)),
        "no-object.json": _review(_delete("request.object")),
        "wrong-type-metadata.json": _review(_set("request.object.metadata", [1, 2])),
        "wrong-type-annotations.json": _review(_set("request.object.metadata.annotations", ["entourage.dev/logging=true"])),
        "annotation-values-not-strings.json": _review(
            annotations={P + "logging": True, P + "wait-for": 5432, P + "ambassador": None, P + "adapter": ["a"]}
        ),  # type: ignore[dict-item]
        "wrong-type-spec.json": _review(_set("request.object.spec", "spec"), {P + "logging": "true"}),
        "wrong-type-containers.json": _review(_set("request.object.spec.containers", {"name": "app"}), {P + "logging": "true"}),
        "containers-of-nulls.json": _review(_set("request.object.spec.containers", [None, 1, "x", []]), {P + "logging": "true"}),
        "no-containers.json": _review(_delete("request.object.spec.containers"), {P + "logging": "true"}),
        "wrong-type-ports.json": _review(
            lambda r: r["request"]["object"]["spec"]["containers"][0].__setitem__("ports", "8080"), {P + "ambassador": "8080=x:1"}
        ),
        "wrong-type-volumes.json": _review(_set("request.object.spec.volumes", {"a": 1}), {P + "logging": "true"}),
        "wrong-type-initContainers.json": _review(_set("request.object.spec.initContainers", 7), {P + "wait-for": "tcp://db:5432"}),
        "wrong-type-volumeMounts.json": _review(
            lambda r: r["request"]["object"]["spec"]["containers"][0].__setitem__("volumeMounts", {"x": 1}), {P + "logging": "true"}
        ),
        "status-annotation-garbage.json": _review(annotations={P + "status": "{not json", P + "logging": "true"}),
        "update-with-old-object.json": _review(
            lambda r: r["request"].update(operation="UPDATE", oldObject=copy.deepcopy(r["request"]["object"]))
        ),
        "delete-without-object.json": _review(lambda r: r["request"].update(operation="DELETE", object=None)),
        "subresource.json": _review(_set("request.subResource", "ephemeralcontainers"), {P + "logging": "true"}),
        "v1beta1.json": _review(_set("apiVersion", "admission.k8s.io/v1beta1")),
        "ownerReferences-not-a-list.json": _review(_set("request.object.metadata.ownerReferences", True)),
        "ownerReferences-number-on-update.json": _review(
            lambda r: (r["request"].update(operation="UPDATE"), r["request"]["object"]["metadata"].__setitem__("ownerReferences", 1.5))
        ),
        "response-instead-of-request.json": b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true}}',
    }


def load() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(DIRECTORY.iterdir()) if path.is_file()}


def write() -> int:
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    found = seeds()
    for name, data in found.items():
        (DIRECTORY / name).write_bytes(data)
    return len(found)
