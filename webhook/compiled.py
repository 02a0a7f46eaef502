"""The hot path compiled with mypyc, used only when it was built from these very sources.

``make compile`` (scripts/compile.py) compiles ``MODULES`` to C extensions in ``webhook/_compiled/``
with a manifest of each source's sha256; the Dockerfile does the same for the image. Compiled,
the server answers 1.26 times as many varied pods per second and 1.14 times as many unannotated
ones (``python -m bench.race`` against the same tree interpreted).

The build sits apart from the sources, and importing ``webhook`` puts it in front of them only
after checking every source against the manifest: an extension next to its ``.py`` would win the
import even after the ``.py`` changed. A compiled module calls the others directly, not through
their module attributes, so the build is used whole or not at all: a missing build, a build for
another Python, one edited source, a library that does not load, or ``ENTOURAGE_INTERPRETED=1``
runs everything interpreted, and ``STATUS`` (logged when the server starts) says which and why.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

MODULES = (
    "webhook.errors",
    "webhook.metrics",
    "webhook.engine.annotations",
    "webhook.engine.caches",
    "webhook.engine.grammar",
    "webhook.engine.inject",
    "webhook.engine.patch",
    "webhook.engine.quantity",
    "webhook.engine.request",
    "webhook.engine.settings",
    "webhook.engine.status",
    "webhook.engine.profiles.adapter",
    "webhook.engine.profiles.ambassador",
    "webhook.engine.profiles.common",
    "webhook.engine.profiles.logging",
    "webhook.engine.profiles.waitfor",
    "webhook.admission.decide",
    "webhook.admission.reuse",
    "webhook.admission.review",
    "webhook.admission.validate",
    "webhook.serving.endpoint",
    "webhook.serving.logs",
    "webhook.serving.observe",
)
"""What a request to ``/mutate`` or ``/validate`` passes through. Not here: ``frozen`` (mypyc
compiles no subclass of ``dict``), ``policy`` (an internal error of mypyc 2.4), ``partial`` and
``capped`` (msgspec refuses the types they decode into once compiled), and what no request runs."""

GROUP = "entourage__mypyc"
"""The shared library every compiled module's extension loads its code from."""
PACKAGE = Path(__file__).resolve().parent
BUILD = PACKAGE / "_compiled"
MANIFEST = "manifest.json"
SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX"))
DISABLE = "ENTOURAGE_INTERPRETED"


def source(module: str) -> Path:
    """The ``.py`` file of one of ``MODULES``."""
    return PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")


def location(module: str, build: Path = BUILD) -> Path:
    """Where ``build`` holds the extension of one of ``MODULES`` (or of ``GROUP``)."""
    *package, name = module.split(".")
    return build.joinpath(*package, name + SUFFIX)


def digest(module: str) -> str:
    return hashlib.sha256(source(module).read_bytes()).hexdigest()


def manifest() -> dict[str, object]:
    """What a build from the current sources records (scripts/compile.py writes it)."""
    return {"suffix": SUFFIX, "group": GROUP, "modules": {module: digest(module) for module in MODULES}}


class _Finder(importlib.abc.MetaPathFinder):
    """Finds each compiled module (and the shared library) in the build, before the sources."""

    def __init__(self, locations: dict[str, Path]) -> None:
        self.locations = locations

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        location = self.locations.get(fullname)
        return importlib.util.spec_from_file_location(fullname, location) if location is not None else None


def activate(build: Path = BUILD) -> str:
    """Serve ``MODULES`` from ``build`` if it matches the sources; what runs, and why."""
    if os.environ.get(DISABLE):
        return f"interpreted ({DISABLE} is set)"
    try:
        recorded = json.loads((build / MANIFEST).read_text())
    except (OSError, ValueError):
        return "interpreted (no compiled build: make compile)"
    if not isinstance(recorded, dict) or recorded.get("suffix") != SUFFIX or recorded.get("group") != GROUP:
        return f"interpreted (the compiled build is not for this Python ({SUFFIX}): make compile)"
    modules = recorded.get("modules")
    if not isinstance(modules, dict) or sorted(modules) != sorted(MODULES):
        return "interpreted (the compiled build has other modules: make compile)"
    for module in MODULES:
        if modules[module] != digest(module):
            return f"interpreted ({source(module).relative_to(PACKAGE.parent)} changed since the build: make compile)"
    locations = {module: location(module, build) for module in (*MODULES, GROUP)}
    missing = [path for path in locations.values() if not path.is_file()]
    if missing:
        return f"interpreted (the compiled build lacks {missing[0].name}: make compile)"
    finder = _Finder(locations)
    sys.meta_path.insert(0, finder)
    try:  # the shared library holds all the code: if it loads, every module will
        importlib.import_module(GROUP)
    except ImportError as error:  # e.g. built against another libpython: the sources still serve
        sys.meta_path.remove(finder)
        return f"interpreted (the compiled build does not load: {error})"
    return f"compiled ({len(MODULES)} modules)"


STATUS = activate()
"""``compiled (N modules)`` or ``interpreted (why)``."""
