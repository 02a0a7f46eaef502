"""A decoding schema whose lists stop being built at a cap: the rest of each list is skipped.

A 1.5 MB pod can hold 500,000 containers, volumes, ports or mounts; building each one as a dict
is the whole cost of such a request (35 ms, and twice that per MB at 3 MiB, where fresh memory
costs page faults too), yet any list longer than its limit is denied without reading its items.
msgspec decodes a JSON array into an ``array_like`` Struct field by field and skips the elements
beyond the last field without building them: a Struct of ``cap + 1`` fields reads the first
``cap`` items, and a last field that is set says "more than cap". ``schemas`` rewrites schemas of
TypedDicts so that each list becomes such a Struct; ``uncapped`` turns the decoded Structs back
into lists (of at most ``cap + 1`` items), so that admission sees the shape it always sees.

Filling and reading a few hundred fields costs tens of microseconds per list, so the capped schema
is for large bodies only (``partial.CAPPED_FROM``); a small body cannot hold a list long enough
to matter.
"""

from __future__ import annotations

import functools
import operator
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypedDict

import msgspec


class Capped(msgspec.Struct, array_like=True, gc=False):
    """The base of every capped list Struct (its fields are the items, then UNSET)."""

    nested: ClassVar[bool] = False
    """Whether its items may hold capped lists (containers do; ports and mounts do not)."""


def schemas(roots: tuple[Any, ...], cap: Callable[[str], int]) -> tuple[Any, ...]:
    """Each of ``roots`` (types built of TypedDicts, unions and lists) with every list in a
    TypedDict field named ``name`` read up to ``cap(name)`` items; the TypedDicts they share
    are rewritten once, and their capped lists built once."""
    rewriter = _Rewriter(cap)
    return tuple(rewriter.rewrite(root, "")[0] for root in roots)


def uncapped(value: Any) -> Any:
    """The decoded value with every Capped Struct turned back into a list, in place for dicts."""
    if isinstance(value, Capped):
        items = msgspec.structs.astuple(value)
        if msgspec.UNSET in items:  # else every field is set: the list had more items than the cap
            items = items[: items.index(msgspec.UNSET)]
        return [uncapped(item) for item in items] if value.nested else list(items)
    if type(value) is dict:
        for key, item in value.items():
            if type(item) is dict or isinstance(item, Capped):
                value[key] = uncapped(item)
    return value


class _Rewriter:
    def __init__(self, cap: Callable[[str], int]) -> None:
        self.cap = cap
        self.typed_dicts: dict[Any, tuple[Any, bool]] = {}

    def rewrite(self, hint: Any, field: str) -> tuple[Any, bool]:
        """The rewritten hint, and whether it holds a capped list."""
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType):
            arms = [self.rewrite(arg, field) for arg in typing.get_args(hint)]
            return functools.reduce(operator.or_, [arm for arm, _ in arms]), any(holds for _, holds in arms)
        if origin is list:
            (item,) = typing.get_args(hint)
            return _capped_list(*self.rewrite(item, ""), self.cap(field)), True
        if typing.is_typeddict(hint):
            return self._typed_dict(hint)
        return hint, False

    def _typed_dict(self, hint: Any) -> tuple[Any, bool]:
        if hint not in self.typed_dicts:
            fields = {name: self.rewrite(field_hint, name) for name, field_hint in typing.get_type_hints(hint, include_extras=True).items()}
            make_typed_dict: Any = TypedDict  # the functional form, with a name known only at run time
            rewritten = make_typed_dict(hint.__name__, {name: field_hint for name, (field_hint, _) in fields.items()}, total=False)
            self.typed_dicts[hint] = rewritten, any(holds for _, holds in fields.values())
        return self.typed_dicts[hint]


@functools.lru_cache(maxsize=64)
def _capped_list(item: Any, nested: bool, cap: int) -> type[Capped]:
    fields = [(f"item{index}", item, msgspec.UNSET) for index in range(cap + 1)]
    struct = msgspec.defstruct(f"Capped{cap}", fields, bases=(Capped,), namespace={"nested": nested}, array_like=True, gc=False)
    return typing.cast(type[Capped], struct)
