"""In-process timings of the engine, without HTTP: µs per call for each bench case.

Stages, timed separately so a regression points at its stage:
- ``decode``: ``admission.decode`` of the body on the wire as the server runs it (``partial.loads``:
  only the fields admission reads, then the shape check); ``full decode``: the same with
  orjson's whole-document parse, for comparison;
- ``inject``: ``inject.inject_pod`` on the decoded pod (annotations, containers, ``patch.diff``);
- ``encode``: the patch as the response carries it (``patch.encode``: base64 of its JSON) and
  the response review (orjson) — what ``admit`` and the endpoint add after ``inject_pod``;
- ``total``: decode → ``admission.admit`` → ``orjson.dumps`` of the answer: what ``/mutate``
  computes per request, everything except HTTP, TLS and the ``observe`` callback.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import orjson

from bench import payloads
from webhook.admission import partial
from webhook.admission.decide import admit
from webhook.admission.review import decode
from webhook.engine import patch
from webhook.engine.inject import inject_pod
from webhook.engine.settings import Settings, load_settings


def _per_call(function: Callable[[], Any], *, repeat: int, seconds: float) -> float:
    """Microseconds per call: the best of ``repeat`` batches of about ``seconds`` (noise only adds)."""
    started = time.perf_counter()
    function()
    number = max(1, int(seconds / max(time.perf_counter() - started, 1e-7)))
    gc.collect()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            function()
        best = min(best, (time.perf_counter() - started) / number)
    return best * 1e6


def run(*, seconds: float = 0.2, repeat: int = 5, settings: Settings | None = None) -> dict[str, dict[str, float]]:
    """case → {stage: µs per call}."""
    settings = settings or load_settings(None, environ={})
    results: dict[str, dict[str, float]] = {}
    for case, body in payloads.bodies().items():
        review = decode(body, loads=partial.loads)
        pod = review["request"]["object"]
        injection = inject_pod(pod, settings)
        answer = admit(review, settings).review

        def encode(injection: Any = injection, answer: Any = answer) -> bytes:
            patch.encode(injection.patch)
            return orjson.dumps(answer)

        # Default arguments bind this case's values: each stage is timed before the loop moves on.
        stages: dict[str, Callable[[], Any]] = {
            "full decode": lambda body=body: decode(body),
            "decode": lambda body=body: decode(body, loads=partial.loads),
            "inject": lambda pod=pod: inject_pod(pod, settings),
            "encode": encode,
            "total": lambda body=body: orjson.dumps(admit(decode(body, loads=partial.loads), settings).review),
        }
        results[case] = {stage: _per_call(function, repeat=repeat, seconds=seconds) for stage, function in stages.items()}
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    stages = list(next(iter(results.values())))
    lines = ["| case | " + " | ".join(f"{s} µs" for s in stages) + " |", "|---|" + "---:|" * len(stages)]
    for case, timings in results.items():
        lines.append(f"| {case} | " + " | ".join(f"{timings[s]:.1f}" for s in stages) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run()))
