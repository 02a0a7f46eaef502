"""The partial decode keeps every field admission reads: checked, not promised.

The server decodes only the fields listed in ``webhook/admission/partial.py``; a field the engine
starts reading without being added there would be silently absent in the server (and present in
``entourage inject``). Here every golden case and every review in testdata/ is admitted with a pod
that records each field read, and the recorded paths must all lie inside what the decoder keeps.
Copies made to build the injected pod are not reads (dict copies bypass the recording methods).
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from tests.test_golden import CASES, CONFIG, as_review
from webhook import yamlio
from webhook.admission import partial
from webhook.admission.decide import admit
from webhook.engine.settings import Settings, load_settings
from webhook.errors import PodDenied

EVERYTHING = "*"
"""In the kept tree: the whole subtree is kept (a field typed Any)."""
Path_ = tuple[str, ...]


class _RecordingDict(dict[str, Any]):
    """A decoded JSON object that notes every key read through get, [], in and the views."""

    def __init__(self, value: dict[str, Any], path: Path_, reads: set[Path_]) -> None:
        super().__init__({key: _recording(item, (*path, key), reads) for key, item in value.items()})
        self._path, self._reads = path, reads

    def __getitem__(self, key: str) -> Any:
        self._reads.add((*self._path, key))
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self._reads.add((*self._path, key))
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._reads.add((*self._path, str(key)))
        return super().__contains__(key)

    def items(self) -> Any:
        self._reads.add((*self._path, EVERYTHING))
        return super().items()

    def values(self) -> Any:
        self._reads.add((*self._path, EVERYTHING))
        return super().values()

    def keys(self) -> Any:
        self._reads.add((*self._path, EVERYTHING))
        return super().keys()


def _recording(value: Any, path: Path_, reads: set[Path_]) -> Any:
    if isinstance(value, dict):
        return _RecordingDict(value, path, reads)
    if isinstance(value, list):
        return [_recording(item, (*path, "[]"), reads) for item in value]
    return value


def _kept(shape: Any) -> dict[str, Any]:
    """The decoder's TypedDicts as a tree: field -> subtree; a field of a scalar type is a leaf
    (``{}``: the value is kept, nothing under it), a map of any keys is EVERYTHING."""
    return {name: _kept_value(hint) for name, hint in typing.get_type_hints(shape).items()}


def _kept_value(hint: Any) -> Any:
    if hint is msgspec.Raw:
        return EVERYTHING  # decoded in full after a check (the annotations)
    for arg in typing.get_args(hint) or (hint,):
        if typing.get_origin(arg) is dict:
            return EVERYTHING
        if typing.get_origin(arg) is list:
            shapes = [item for item in typing.get_args(typing.get_args(arg)[0]) if typing.is_typeddict(item)]
            return {"[]": _kept(shapes[0]) if shapes else {}}
        if typing.is_typeddict(arg) and typing.get_type_hints(arg):
            return _kept(arg)
    return {}


POD_KEPT = _kept(partial._Pod)


def _outside(path: Path_, tree: Any) -> bool:
    for step in path:
        if tree == EVERYTHING:
            return False
        if step == EVERYTHING or step not in tree:
            return True
        tree = tree[step]
    return False


def _pods() -> Iterator[tuple[str, dict[str, Any]]]:
    for case in CASES:
        for index, document in enumerate(yamlio.load_all(case.read_text())):
            if isinstance(document, dict) and document.get("kind") == "Pod":
                yield f"{case.stem}[{index}]", document
    for review in sorted((Path(__file__).parent / "testdata" / "reviews").glob("*.json")):
        pod = orjson.loads(review.read_bytes())["request"].get("object")
        if isinstance(pod, dict):
            yield review.stem, pod


@pytest.fixture(scope="module")
def golden_settings() -> Settings:
    return load_settings(str(CONFIG))


@pytest.mark.parametrize(("name", "pod"), list(_pods()), ids=[name for name, _ in _pods()])
def test_admission_reads_only_what_the_partial_decode_keeps(name: str, pod: dict[str, Any], golden_settings: Settings) -> None:
    reads: set[Path_] = set()
    review = as_review(pod)
    review["request"]["object"] = _recording(pod, (), reads)
    with contextlib.suppress(PodDenied):
        admit(review, golden_settings)
    assert reads, "the recording pod saw no reads at all"
    assert sorted(path for path in reads if _outside(path, POD_KEPT)) == []


def test_a_read_outside_the_kept_fields_is_noticed() -> None:
    """The check itself: reading a container's image (never kept) is reported."""
    reads: set[Path_] = set()
    pod = _recording({"spec": {"containers": [{"name": "app", "image": "x"}]}}, (), reads)
    pod["spec"]["containers"][0].get("image")
    pod["spec"]["containers"][0].get("name")
    assert [path for path in reads if _outside(path, POD_KEPT)] == [("spec", "containers", "[]", "image")]
