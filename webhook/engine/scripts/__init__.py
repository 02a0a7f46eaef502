"""Shell scripts shipped with the webhook and run inside injected busybox containers."""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["read"]


@functools.cache
def read(name: str) -> str:
    """Return the text of the script ``name`` (e.g. ``"wait_for.sh"``) shipped in this package.

    The text is meant to be passed verbatim as the ``sh -c`` argument; user values always go in
    as positional parameters after it, never into the text.
    """
    if "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"invalid script name: {name!r}")
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


@functools.cache
def compact(name: str) -> str:
    """The script without comment-only and blank lines: it is copied into every pod that uses it."""
    lines = read(name).splitlines()
    kept = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return "\n".join(kept) + "\n"
