"""The patch encoder: only adds, escaped keys, absent containers created once, anything else refused."""

from __future__ import annotations

import jsonpatch
import pytest

from webhook.errors import PatchError
from webhook.patch import diff, escape


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
