"""In-process µs per ``/mutate`` answer when no two requests are alike: the answer cache's miss path.

``python -m bench.unique`` builds the bodies wrk sends for the ``varied`` and ``small-unique``
cases (bench/wrk/post.lua: a counter after the ``generateName``), hands each once to
``MutateEndpoint.respond`` with the answer cache on (as ``entourage serve`` runs it, so every
request also pays for its key and its entry) and prints the µs per request, best of a few
rounds (CPU time). ``--profile`` prints the functions the time went to (cProfile, sorted by own time).
Faster than a wrk run and without HTTP or TLS, so a change to the engine shows alone.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from dataclasses import dataclass, field

import orjson

from bench import payloads
from bench.runner import VARIED
from webhook.admission.reuse import AnswerCache
from webhook.engine.inject import ClusterFacts
from webhook.engine.settings import Settings, load_settings
from webhook.serving.endpoint import MutateEndpoint


@dataclass
class _State:
    settings: Settings | None
    cluster: ClusterFacts = field(default_factory=ClusterFacts)
    namespace_annotations: None = None
    config_problem: str | None = None


def bodies(case: str, count: int) -> list[bytes]:
    """``count`` bodies of ``case`` (``varied`` or ``small-unique``), each with its own counter, as wrk sends them."""
    source, vary = VARIED[case]
    templates = [orjson.dumps(review) for review in payloads.varied_reviews()] if source == "varied" else [payloads.bodies()[source]]
    marker = vary.encode()
    split = [template.split(marker, 1) for template in templates]
    return [b"%s%s%d-%s" % (head, marker, n, tail) for n in range(count) for head, tail in [split[n % len(split)]]]


def per_request(endpoint: MutateEndpoint, requests: list[bytes], rounds: int) -> float:
    """CPU µs per request: the best of ``rounds`` passes, each with a fresh answer cache (all
    misses). CPU time, not wall time: on a shared machine a pass may wait for the core."""
    best = float("inf")
    for _ in range(rounds):
        endpoint.answers = AnswerCache()
        started = time.process_time()
        for body in requests:
            status, _, _ = endpoint.respond(body)
            assert status == 200
        best = min(best, (time.process_time() - started) / len(requests))
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.unique", description=__doc__)
    parser.add_argument("--cases", default=",".join(VARIED), help=f"comma-separated subset of {', '.join(VARIED)}")
    parser.add_argument("--requests", type=int, default=2000, help="distinct bodies per case (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="passes over them; the best counts (default 5)")
    parser.add_argument("--profile", action="store_true", help="print where the time went (cProfile) instead")
    args = parser.parse_args(argv)
    state = _State(load_settings(None, environ={}))
    endpoint = MutateEndpoint(lambda: state)
    for case in args.cases.split(","):
        requests = bodies(case, args.requests)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(per_request, endpoint, requests, 1)
            print(f"== {case}")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        else:
            print(f"{case}: {per_request(endpoint, requests, args.rounds):.1f} CPU µs/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
