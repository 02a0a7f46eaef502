"""The compiled build (webhook/compiled.py): what the tests run, and when it is left out.

``make test`` compiles first, so the whole suite runs the compiled modules, then runs the engine's
and the endpoint's tests, golden files included, once more interpreted (``ENTOURAGE_INTERPRETED=1``):
both ways give the same pods and the same answers.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from webhook import compiled

REPO = Path(__file__).resolve().parents[1]
PROBE = "import importlib, webhook; print(webhook.compiled.STATUS); print(*(importlib.import_module(m).__file__ for m in webhook.compiled.MODULES), sep='\\n')"


def _probe(tree: Path, **environ: str) -> tuple[str, list[str]]:
    """What ``import webhook`` in ``tree`` reports, and the file each compiled module came from."""
    env = {key: value for key, value in os.environ.items() if key != compiled.DISABLE} | environ
    env["PYTHONPATH"] = str(tree)
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=tree, env=env, capture_output=True, text=True, check=True)
    status, *files = result.stdout.splitlines()
    return status, files


def test_the_suite_runs_the_compiled_build() -> None:
    status = compiled.STATUS
    assert status == f"compiled ({len(compiled.MODULES)} modules)", "run `make compile` (make test does)"
    for module in compiled.MODULES:
        assert importlib.import_module(module).__file__ == str(compiled.location(module))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package with its build."""
    shutil.copytree(REPO / "webhook", tmp_path / "webhook", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_a_source_edited_after_the_build_runs_everything_interpreted(tree: Path) -> None:
    assert _probe(tree)[0].startswith("compiled")
    inject = tree / "webhook" / "engine" / "inject.py"
    inject.write_text(inject.read_text() + "\n# edited\n")
    status, files = _probe(tree)
    assert status == "interpreted (webhook/engine/inject.py changed since the build: make compile)"
    assert all(file.endswith(".py") for file in files)  # the others too: compiled code calls inject directly


def test_no_build_a_build_for_another_python_or_the_switch_run_interpreted(tree: Path) -> None:
    assert _probe(tree, **{compiled.DISABLE: "1"})[0] == f"interpreted ({compiled.DISABLE} is set)"
    manifest = tree / "webhook" / "_compiled" / compiled.MANIFEST
    recorded = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**recorded, "suffix": ".cpython-312-x86_64-linux-gnu.so"}))
    assert _probe(tree)[0].startswith("interpreted (the compiled build is not for this Python")
    manifest.write_text(json.dumps({**recorded, "modules": dict(list(recorded["modules"].items())[1:])}))
    assert _probe(tree)[0] == "interpreted (the compiled build has other modules: make compile)"
    manifest.write_text(json.dumps(recorded))
    library = tree / "webhook" / "_compiled" / (compiled.GROUP + compiled.SUFFIX)
    library.write_bytes(b"\x7fELF not really")
    assert _probe(tree)[0].startswith("interpreted (the compiled build does not load: ")
    library.unlink()
    assert _probe(tree)[0] == f"interpreted (the compiled build lacks {compiled.GROUP + compiled.SUFFIX}: make compile)"
    shutil.rmtree(tree / "webhook" / "_compiled")
    status, files = _probe(tree)
    assert status == "interpreted (no compiled build: make compile)" and all(file.endswith(".py") for file in files)


def test_no_compiled_function_binds_one_name_to_two_exception_types() -> None:
    """mypyc types an ``except ... as name`` variable by its first handler in the function: a
    second handler of another type binding the same name raises TypeError when it catches (the
    endpoint's catch-all did, for anything but a ReviewError)."""
    found = []
    for module in compiled.MODULES:
        for function in ast.walk(ast.parse(compiled.source(module).read_text())):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                types: dict[str, set[str]] = {}
                for node in ast.walk(function):
                    if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
                        types.setdefault(node.name, set()).add(ast.unparse(node.type))
                found += [f"{module}.{function.name}: {name} {sorted(kinds)}" for name, kinds in types.items() if len(kinds) > 1]
    assert not found
