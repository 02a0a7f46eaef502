"""``python -m bench``: the whole benchmark (a few minutes); ``--help`` for the knobs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import micro, payloads
from bench.runner import REUSED, VARIED, Options, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of untimed load per case and server first (default 2)")
    parser.add_argument("--alternations", type=int, default=2, help="baseline/entourage pairs per case and concurrency (default 2)")
    parser.add_argument("--connections", default="1,16", help="comma-separated keep-alive connection counts (default 1,16)")
    cases = (*payloads.CASES, *VARIED, *REUSED)
    parser.add_argument("--cases", default=",".join(cases), help=f"comma-separated subset of {', '.join(cases)}")
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="entourage serve --log-level (default: the server's own)"
    )
    parser.add_argument(
        "--memory-requests", type=int, default=200_000, help="drive Entourage until it has served this many requests (RSS check)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"), help="JSON results (default bench-results.json)")
    parser.add_argument("--no-micro", action="store_true", help="skip the in-process engine timings")
    parser.add_argument("--micro-only", action="store_true", help="only the in-process engine timings")
    parser.add_argument("--entourage-command", help="run this instead of `entourage` for `… serve` (trying server options)")
    args = parser.parse_args(argv)
    if args.micro_only:
        print(micro.table(micro.run()))
        return 0
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        alternations=args.alternations,
        connections=tuple(int(c) for c in args.connections.split(",")),
        cases=tuple(args.cases.split(",")),
        log_level=args.log_level,
        memory_requests=args.memory_requests,
        out=args.out,
        micro=not args.no_micro,
        entourage_command=tuple(args.entourage_command.split()) if args.entourage_command else (),
    )
    result = run(options)
    return 0 if all(check["pass"] for check in result["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
