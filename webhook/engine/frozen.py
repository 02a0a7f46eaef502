"""Frozen values: cached containers are shared between pods, so nobody may change them.

``freeze`` turns nested dicts and lists into ``FrozenDict``/``FrozenList``, which raise on any
write; orjson, ``json`` and YAML write them as plain objects and ``copy.deepcopy`` returns plain,
writable copies. Kept apart from ``caches`` because mypyc compiles no subclass of ``dict``
(webhook/compiled.py compiles ``caches``, not this).
"""

from __future__ import annotations

from typing import Any, NoReturn


def _read_only(*args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError("injected containers are shared between pods and read-only; copy before changing")


class FrozenDict(dict[str, Any]):
    """A dict that refuses writes (see ``freeze``)."""

    digest: str | None = None
    """A digest of the content, memoised by whoever computes one (``status.fingerprint``): the
    content never changes, and the digest lives and dies with it."""
    component: Any = None
    """What the status annotation records of this container (``status.component``), memoised alike."""

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        import copy

        return {key: copy.deepcopy(value, memo) for key, value in self.items()}

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        return dict, (dict(self),)


class FrozenList(list[Any]):
    """A list that refuses writes (see ``freeze``)."""

    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = sort = reverse = __iadd__ = __imul__ = _read_only

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        import copy

        return [copy.deepcopy(value, memo) for value in self]

    def __copy__(self) -> list[Any]:
        return list(self)

    def __reduce__(self) -> tuple[type[list[Any]], tuple[list[Any]]]:
        return list, (list(self),)


def freeze(value: Any) -> Any:
    """A deep, read-only version of decoded-JSON-like data (dicts, lists, scalars)."""
    if isinstance(value, dict):
        return FrozenDict({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return FrozenList(freeze(item) for item in value)
    return value
