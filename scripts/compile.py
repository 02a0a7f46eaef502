"""Compile the hot path (``webhook.compiled.MODULES``) with mypyc into ``webhook/_compiled/``.

The build is type-checked with the project's own mypy configuration (pyproject.toml) and written
to a fresh directory that replaces the old one only once it is complete, with the manifest of the
sources it was built from (webhook/compiled.py uses it only while they match). Needs mypy and the
YAML stubs (the compile extra; requirements/build.lock in the image) and a C compiler with the
Python headers.

Usage: ``python scripts/compile.py`` (``make compile``: about a minute on 2 cores; mypyc's
``multi_file`` with a parallel ``build_ext`` took as long).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["ENTOURAGE_INTERPRETED"] = "1"  # read the sources' digests without loading an old build

from webhook import compiled  # noqa: E402 -- after the path and the environment it needs

sys.path.remove(str(REPO))


def build(out: Path = compiled.BUILD) -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="entourage-compile-") as scratch:
        work = Path(scratch)
        staged = work / "out"
        recorded = compiled.manifest()  # the sources as they are before compiling starts
        paths = [str(compiled.source(module)) for module in compiled.MODULES]
        options = ["--config-file", str(REPO / "pyproject.toml"), "--cache-dir", str(work / "mypy-cache")]
        here = Path.cwd()
        os.chdir(work)  # setuptools would read the project's own pyproject.toml from the working directory
        try:
            extensions = mypycify(
                [*options, *paths], opt_level="3", group_name=compiled.GROUP.removesuffix("__mypyc"), target_dir=str(work / "c")
            )
            setup(
                name="entourage-compiled",
                ext_modules=extensions,
                script_args=["--quiet", "build_ext", "--build-lib", str(staged), "--build-temp", str(work / "temp")],
            )
        finally:
            os.chdir(here)
        if compiled.manifest() != recorded:
            raise SystemExit("scripts/compile.py: a source changed while it was compiled; run it again")
        (staged / compiled.MANIFEST).write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        retired = out.with_name(out.name + ".old")
        shutil.rmtree(retired, ignore_errors=True)
        if out.exists():
            out.rename(retired)
        shutil.move(str(staged), out)
        shutil.rmtree(retired, ignore_errors=True)
    print(f"scripts/compile.py: {len(compiled.MODULES)} modules compiled into {out} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    build(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else compiled.BUILD)
