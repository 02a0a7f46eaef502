"""The server's decode keeps what admission reads, leaves out the rest, and reads a body of any
other shape in the same single pass (the answers are compared in tests/test_properties.py)."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from bench import payloads
from webhook.admission import partial
from webhook.admission.review import decode
from webhook.errors import ReviewError


def test_the_fields_admission_reads_are_kept_and_the_rest_left_out() -> None:
    full = orjson.loads(payloads.bodies()["large"])
    kept = partial.loads(payloads.bodies()["large"])
    pod, kept_pod = full["request"]["object"], kept["request"]["object"]
    assert kept["request"]["uid"] == full["request"]["uid"]
    assert kept_pod["metadata"]["annotations"] == pod["metadata"]["annotations"]
    owner_fields = ("apiVersion", "kind", "name", "uid", "controller")
    assert kept_pod["metadata"]["ownerReferences"] == [
        {key: owner[key] for key in owner_fields if key in owner} for owner in pod["metadata"]["ownerReferences"]
    ]
    for before, after in zip(pod["spec"]["containers"], kept_pod["spec"]["containers"], strict=True):
        assert after["name"] == before["name"] and after.get("restartPolicy") == before.get("restartPolicy")
        assert after.get("ports", []) == [{"containerPort": port["containerPort"]} for port in before.get("ports", [])]
        assert [mount["mountPath"] for mount in after.get("volumeMounts", [])] == [
            mount["mountPath"] for mount in before.get("volumeMounts", [])
        ]
        assert "env" in before and "env" not in after
    assert [v["name"] for v in kept_pod["spec"]["volumes"]] == [v["name"] for v in pod["spec"]["volumes"]]
    assert len(orjson.dumps(kept)) < len(payloads.bodies()["large"]) / 10


def test_absent_and_null_stay_apart() -> None:
    body = b'{"request":{"object":{"metadata":{"annotations":null},"spec":{"containers":[{"name":"a"}],"initContainers":null}}}}'
    assert partial.loads(body) == {
        "request": {"object": {"metadata": {"annotations": None}, "spec": {"containers": [{"name": "a"}], "initContainers": None}}}
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"request":{"object":{"spec":{"containers":"not a list"}}}}', {"request": {"object": {"spec": {"containers": "not a list"}}}}),
        (
            b'{"request":{"object":{"spec":{"containers":[1, null, "x"]}}}}',
            {"request": {"object": {"spec": {"containers": [1, None, "x"]}}}},
        ),
        (b'{"request":{"object":{"spec":{"containers":{"name":"a"}}}}}', {"request": {"object": {"spec": {"containers": {}}}}}),
        (
            b'{"request":{"object":{"metadata":{"annotations":{"a":[1,{"b":2}],"c":{"d":1},"e":5}}}}}',
            {"request": {"object": {"metadata": {"annotations": {"a": [], "c": {}, "e": 5}}}}},  # a list's content is skipped
        ),
        (
            b'{"request":{"object":{"metadata":{"annotations":["x",[1]]}}}}',
            {"request": {"object": {"metadata": {"annotations": []}}}},
        ),
        (b'{"request":"x"}', {"request": "x"}),
        (b"[1]", []),
        (b"5", 5),
    ],
    ids=[
        "containers-string",
        "containers-scalars",
        "containers-object",
        "annotation-values",
        "annotations-list",
        "request-string",
        "array",
        "number",
    ],
)
def test_a_body_of_another_shape_keeps_the_type_of_what_admission_reads(body: bytes, expected: object) -> None:
    assert partial.loads(body) == expected


def test_content_that_admission_does_not_read_is_skipped_even_where_it_reads_the_field() -> None:
    body = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":[1,2,3],"object":{"spec":{"containers":[{"name":{"a":[1]},"ports":[{"containerPort":[7]}]}, [1, 2]]}}}}'
    decoded = partial.loads(body)
    assert decoded["request"]["uid"] == partial.Skipped()
    assert decoded["request"]["object"]["spec"]["containers"] == [
        {"name": {}, "ports": [{"containerPort": partial.Skipped()}]},
        partial.Skipped(),
    ]
    with pytest.raises(ReviewError, match=r"request\.uid must be a non-empty string"):
        decode(body, loads=partial.loads)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"request": ', "the body is not JSON: Input data was truncated"),
        (b'{"request": {"uid": "\xff"}}', "the body is not JSON: 'utf-8' codec can't decode byte 0xff"),
        (b'{"request":{"object":{"spec":{"containers":[{"name":1e400}]}}}}', "the body is not JSON: Number out of range"),
        (
            b'{"request":{"object":{"metadata":{"annotations":{"a":' + b"[" * 3000 + b"]" * 3000 + b"}}}}}",
            "nests deeper than any AdmissionReview",
        ),
        (b'{"request":{"object":{"spec":{"affinity":' + b"[" * 3000 + b"]" * 3000 + b"}}}}", "nests deeper than any AdmissionReview"),
    ],
    ids=["truncated", "invalid-utf-8", "number-out-of-range", "deep-read", "deep-unread"],
)
def test_a_body_the_decoder_refuses_is_a_request_error(body: bytes, error: str) -> None:
    with pytest.raises(ReviewError, match=error):
        decode(body, loads=partial.loads)


def test_a_number_beyond_a_double_is_accepted_where_it_is_not_read() -> None:
    body = b'{"request":{"uid":"u","object":{"spec":{"containers":[{"name":"a","x":1e400}]}}}}'
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    assert partial.loads(body)["request"]["object"]["spec"]["containers"] == [{"name": "a"}]


def test_a_lone_surrogate_is_refused_even_where_it_is_not_read() -> None:
    with pytest.raises(ReviewError, match="the body is not JSON: JSON is malformed: invalid utf-16 surrogate pair"):
        decode(b'{"request":{"uid":"u","object":{"spec":{"containers":[{"name":"a","image":"\\udead"}]}}}}', loads=partial.loads)


def test_markers_encode_as_empty_json() -> None:
    """The answer cache keys requests by their decoded content (webhook/admission/reuse.py)."""
    decoded = partial.loads(b'{"request":{"uid":[1,[2]],"kind":{"x":1}}}')
    assert msgspec.json.encode(decoded) == b'{"request":{"uid":[],"kind":{}}}'
