"""The server's decode keeps what admission reads, leaves out the rest, and falls back to the
full decode for anything unusual (the answers are compared in tests/test_properties.py)."""

from __future__ import annotations

import orjson
import pytest

from bench import payloads
from webhook.admission import partial


def test_the_fields_admission_reads_are_kept_and_the_rest_left_out() -> None:
    full = orjson.loads(payloads.bodies()["large"])
    kept = partial.loads(payloads.bodies()["large"])
    pod, kept_pod = full["request"]["object"], kept["request"]["object"]
    assert kept["request"]["uid"] == full["request"]["uid"]
    assert kept_pod["metadata"]["annotations"] == pod["metadata"]["annotations"]
    assert kept_pod["metadata"]["ownerReferences"] == pod["metadata"]["ownerReferences"]
    for before, after in zip(pod["spec"]["containers"], kept_pod["spec"]["containers"], strict=True):
        assert after == {key: before[key] for key in ("name", "ports", "volumeMounts", "restartPolicy") if key in before}
        assert "env" in before
    assert [v["name"] for v in kept_pod["spec"]["volumes"]] == [v["name"] for v in pod["spec"]["volumes"]]
    assert len(orjson.dumps(kept)) < len(payloads.bodies()["large"]) / 10


def test_absent_and_null_stay_apart() -> None:
    body = b'{"request":{"object":{"metadata":{"annotations":null},"spec":{"containers":[{"name":"a"}],"initContainers":null}}}}'
    assert partial.loads(body) == {"request": {"object": {"metadata": {"annotations": None}, "spec": {"containers": [{"name": "a"}], "initContainers": None}}}}


@pytest.mark.parametrize(
    "body",
    [
        b'{"request":{"object":{"spec":{"containers":"not a list"}}}}',
        b'{"request":{"object":{"spec":{"containers":[1, 2]}}}}',
        b'{"request":{"object":[]}}',
        b'{"request":"x"}',
        b'[1]',
        b'{"request":{"object":{"metadata":{"annotations":{"a":' + b"[" * 3000 + b"]" * 3000 + b"}}}}}",
    ],
    ids=["containers-string", "containers-numbers", "object-list", "request-string", "array", "deep"],
)
def test_a_body_of_another_shape_gets_the_full_decode(body: bytes) -> None:
    try:
        expected: object = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        with pytest.raises(orjson.JSONDecodeError, match=str(error).split(":")[0]):
            partial.loads(body)
        return
    assert partial.loads(body) == expected


def test_a_body_that_is_not_json_gets_orjsons_error() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        partial.loads(b'{"request": ')


def test_text_outside_ascii_is_decoded_in_part_when_it_is_utf_8_and_refused_when_it_is_not() -> None:
    valid = '{"request":{"uid":"ü","object":{"spec":{"containers":[{"name":"a","env":[{"value":"naïve"}]}]}}}}'.encode()
    assert partial.loads(valid) == {"request": {"uid": "ü", "object": {"spec": {"containers": [{"name": "a"}]}}}}
    # Invalid UTF-8 inside a field the partial decode skips without reading it.
    invalid = b'{"request":{"uid":"u","object":{"spec":{"containers":[{"name":"a","env":[{"value":"\xff\xfe"}]}]}}}}'
    with pytest.raises(orjson.JSONDecodeError):
        partial.loads(invalid)
