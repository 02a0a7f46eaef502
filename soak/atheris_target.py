"""libFuzzer (atheris) target: one input = one request body to the in-process app.

Run by ``soak.fuzz.atheris_run`` in a subprocess (libFuzzer ends its process): ``python -m
soak.atheris_target -runs=N CORPUS_DIR...``. A verdict problem raises, which libFuzzer reports as
a crash with the input saved under ``-artifact_prefix``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["webhook"]):
    from soak.fuzz import App, Input, verdict

app = App()


def one(data: bytes) -> None:
    item = Input(data, chunks=1 + len(data) % 4)  # the whole input is the body, so seeds stay seeds
    sent, error = app.call(item)
    _status, problem = verdict(item, sent, error)
    if problem:
        raise AssertionError(problem)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
