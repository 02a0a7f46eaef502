"""The patch encoder: only adds, escaped keys, absent containers created once, anything else refused."""

from __future__ import annotations

import base64
import copy

import jsonpatch
import orjson
import pytest

from webhook.engine import patch
from webhook.engine.inject import inject_pod
from webhook.engine.patch import diff, escape
from webhook.engine.settings import load_settings
from webhook.errors import PatchError


def test_keys_are_escaped_as_rfc_6901_says() -> None:
    assert escape("entourage.dev/status") == "entourage.dev~1status"
    assert escape("a~b/c") == "a~0b~1c"


def test_an_absent_member_is_added_whole_and_once() -> None:
    assert diff({"spec": {}}, {"spec": {"volumes": [{"name": "v"}]}}) == [{"op": "add", "path": "/spec/volumes", "value": [{"name": "v"}]}]


def test_a_null_member_is_set_with_add() -> None:
    original = {"metadata": {"annotations": None}}
    desired = {"metadata": {"annotations": {"a/b": "c"}}}
    operations = diff(original, desired)
    assert operations == [{"op": "add", "path": "/metadata/annotations", "value": {"a/b": "c"}}]
    assert jsonpatch.apply_patch(original, operations) == desired


def test_elements_before_and_after_the_users_are_inserted_and_appended() -> None:
    original = {"items": [{"name": "a"}, {"name": "b"}]}
    desired = {"items": [{"name": "x"}, {"name": "y"}, {"name": "a"}, {"name": "b", "extra": [1]}, {"name": "z"}]}
    operations = diff(original, desired)
    assert [op["path"] for op in operations] == ["/items/1/extra", "/items/0", "/items/1", "/items/-"]
    assert jsonpatch.apply_patch(original, operations) == desired


@pytest.mark.parametrize(
    ("original", "desired"),
    [
        ({"a": 1}, {}),
        ({"a": 1}, {"a": 2}),
        ({"items": [{"name": "a"}, {"name": "b"}]}, {"items": [{"name": "b"}, {"name": "a"}]}),
        ({"items": [1, 2]}, {"items": [2]}),
        ({"a": {"b": 1}}, {"a": [1]}),
    ],
    ids=["removal", "replacement", "reorder", "list-removal", "type-change"],
)
def test_anything_but_an_addition_is_refused(original: object, desired: object) -> None:
    with pytest.raises(PatchError):
        diff(original, desired)


def test_shared_subtrees_are_skipped_without_comparing() -> None:
    shared = {"env": [{"name": f"V{i}", "value": str(i)} for i in range(1000)]}
    assert diff({"spec": shared}, {"spec": shared}) == []


ANNOTATED = {"entourage.dev/logging": "tail", "entourage.dev/ambassador": "6379=redis:6379", "entourage.dev/wait-for": "tcp://db:5432"}


def _pod(metadata: object, **spec: object) -> dict[str, object]:
    pod: dict[str, object] = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "app", "image": "app:1"}], **spec}}
    if metadata is not _NO_METADATA:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod["spec"]}
    return pod


_NO_METADATA = object()


@pytest.mark.parametrize("native", ["true", "false"])
@pytest.mark.parametrize(
    "pod",
    [
        _pod({"annotations": dict(ANNOTATED)}),
        _pod({"annotations": dict(ANNOTATED)}, initContainers=[], volumes=[]),
        _pod({"annotations": dict(ANNOTATED)}, initContainers=None, volumes=None),
        _pod(
            {"annotations": {**ANNOTATED, "a": "b"}},
            initContainers=[{"name": "setup", "image": "x"}],
            volumes=[{"name": "v", "emptyDir": {}}],
        ),
        {**_pod({"annotations": dict(ANNOTATED)}), "spec": {"containers": [{"name": "app", "image": "a", "volumeMounts": []}]}},
        {**_pod({"annotations": dict(ANNOTATED)}), "spec": {"containers": [{"name": "app", "image": "a", "volumeMounts": None}]}},
        {
            **_pod({"annotations": dict(ANNOTATED)}),
            "spec": {
                "containers": [
                    {"name": "x", "image": "a"},
                    {"name": "app", "image": "a", "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
                ],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
        },
    ],
    ids=["plain", "empty-lists", "null-lists", "existing-lists", "empty-mounts", "null-mounts", "second-container"],
)
def test_the_engine_writes_exactly_the_patch_that_diff_finds(pod: dict[str, object], native: str) -> None:
    """inject_pod writes its patch directly; diff over the whole pod is the reference."""
    pod = copy.deepcopy(pod)
    pod["metadata"]["annotations"]["entourage.dev/native-sidecars"] = native  # type: ignore[index]
    if pod["spec"]["containers"][-1]["name"] == "app" and len(pod["spec"]["containers"]) > 1:  # type: ignore[index]
        pod["metadata"]["annotations"]["entourage.dev/logging-container"] = "app"  # type: ignore[index]
    injection = inject_pod(pod, load_settings(None, environ={}))
    assert injection.patch == diff(pod, injection.pod)
    assert jsonpatch.apply_patch(copy.deepcopy(pod), injection.patch) == injection.pod


@pytest.mark.parametrize("metadata", [_NO_METADATA, None, {}, {"annotations": None}, {"annotations": {}}])
def test_the_written_patch_creates_missing_metadata_and_annotations(metadata: object) -> None:
    """Namespace defaults can ask for injection of a pod that has no annotations at all."""
    pod = _pod(metadata if metadata is _NO_METADATA else copy.deepcopy(metadata))
    injection = inject_pod(pod, load_settings(None, environ={}), namespace_annotations=ANNOTATED)
    assert injection.patch == diff(pod, injection.pod)
    assert jsonpatch.apply_patch(copy.deepcopy(pod), injection.patch) == injection.pod


def _decoded(text: str) -> object:
    return orjson.loads(base64.b64decode(text, validate=True))


@pytest.mark.parametrize("size", range(6))
def test_the_encoded_patch_is_the_base64_of_its_json_with_remembered_values_spliced_in(size: int) -> None:
    """Pieces of every length modulo 3, remembered values alone and inside lists."""
    kept = [{"name": "k" * (size + n), "args": ["é" * n]} for n in range(3)]
    for value in kept:
        patch.remember(value)
    try:
        operations = [
            patch.add("/a" * (size + 1), "x" * size),
            patch.add("/spec/containers/0", kept[0]),
            patch.add("/spec/initContainers", [{"name": "fresh"}, kept[1], kept[2]]),
            patch.add("/metadata/annotations/" + escape("a/b"), "y" * (size * 7)),
            patch.add("/spec/volumes/-", kept[2]),
        ]
        for count in range(len(operations) + 1):
            assert _decoded(patch.encode(operations[:count])) == operations[:count]
    finally:
        for value in kept:
            patch.forget(value)
    assert _decoded(patch.encode(operations)) == operations  # forgotten: encoded in full


@pytest.mark.parametrize("op", ["add", "remove", "replace", "test"])
def test_any_operation_is_encoded_as_its_json(op: str) -> None:
    operations = [{"op": op, "path": "/metadata/labels/a~1b", "value": {"k": ["é", 1]}}, patch.add("/spec/x", None)]
    assert _decoded(patch.encode(operations)) == operations


def test_a_forgotten_value_releases_its_encoding() -> None:
    """Shared containers are remembered while they are kept, and only that long (memory)."""
    value = {"name": "remembered"}
    before = len(patch._encoded)
    patch.remember(value)
    assert len(patch._encoded) == before + 1
    patch.forget(value)
    patch.forget(value)  # twice is fine
    assert len(patch._encoded) == before


def test_an_unnamed_element_inserted_before_an_equal_one_is_an_add_at_its_index() -> None:
    assert diff({"a": [{"x": 1}]}, {"a": [{"x": 2}, {"x": 1}]}) == [patch.add("/a/0", {"x": 2})]


def test_a_new_member_whose_value_is_null_is_added() -> None:
    assert diff({}, {"a": None}) == [patch.add("/a", None)]


@pytest.mark.parametrize(
    ("original", "desired", "message"),
    [
        ({"a": 1}, {"a": 2}, "/a would be replaced"),
        (1, 2, "/ would be replaced"),
        ([1], {"a": 1}, "/ would be replaced"),
        ({"a": 1}, [1], "/ would be replaced"),
        ({"a": {"b": 1}}, {"a": {}}, "/a/b would be removed"),
        ({"a": [1, 2]}, {"a": [2, 1]}, "/a: elements would be removed or reordered"),
    ],
)
def test_a_change_that_is_not_an_addition_is_refused_naming_where(original: object, desired: object, message: str) -> None:
    with pytest.raises(PatchError) as error:
        diff(original, desired)
    assert str(error.value) == message


def test_a_member_that_is_neither_absent_nor_an_object_would_be_replaced() -> None:
    assert patch.absent(None, "/metadata") is True and patch.absent({}, "/metadata") is False
    with pytest.raises(PatchError) as error:
        patch.absent("x", "/metadata/annotations")
    assert str(error.value) == "/metadata/annotations would be replaced"
