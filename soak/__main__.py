"""``python -m soak``: the whole reliability run (``make soak``), bounded, printing its figures.

Exit status 0 when every part passed, 1 otherwise (the figures are printed either way).
``python -m soak corpus`` rewrites tests/fuzz_corpus/ from ``soak.corpus.seeds()``.
"""

from __future__ import annotations

import argparse
import sys
import time

PARTS = ("soak", "burst", "faults", "fuzz", "schemathesis", "adversarial", "memory", "listener")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=["run", "corpus"], default="run")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts to run (default: all of {','.join(PARTS)})")
    parser.add_argument("--duration", type=float, default=180.0, help="soak seconds (default 180)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="soak keep-alive clients (default 8); the burst uses --burst-factor times as many"
    )
    parser.add_argument("--burst-factor", type=int, default=10)
    parser.add_argument("--burst-seconds", type=float, default=10.0)
    parser.add_argument("--validate-every", type=int, default=250, help="re-validate every Nth patched pod with podcheck (default 250)")
    parser.add_argument("--faults", default="certificate,config,sigterm,worker-kill,api-outage")
    parser.add_argument(
        "--fuzz-inputs",
        type=int,
        default=100_000,
        help="in-process inputs in all: corpus + mutations + hypothesis + atheris (default 100000)",
    )
    parser.add_argument("--hypothesis-examples", type=int, default=10_000)
    parser.add_argument("--atheris-runs", type=int, default=20_000, help="0 to skip atheris")
    parser.add_argument("--tls-sample", type=int, default=2_000, help="fuzz inputs also sent to the real server over TLS")
    parser.add_argument("--schemathesis-examples", type=int, default=100)
    parser.add_argument("--schemathesis-seconds", type=int, default=30)
    parser.add_argument(
        "--adversarial-cases", default="", help="comma-separated adversarial bodies (default: all of soak/adversarial.py's CASES)"
    )
    parser.add_argument(
        "--memory-requests",
        type=int,
        default=1_000_000,
        help="adversarial requests of the memory flood, after its warm-up (default 1000000)",
    )
    parser.add_argument(
        "--memory-warmup-seconds", type=float, default=60.0, help="the memory flood's warm-up, until every cache is full (default 60)"
    )
    parser.add_argument(
        "--memory-seconds", type=float, default=1800.0, help="the memory flood stops here even if not every request was sent (default 1800)"
    )
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000, help="mutation and hypothesis seed (printed, to replay)")
    options = parser.parse_args(argv)

    if options.command == "corpus":
        from soak import corpus

        print(f"wrote {corpus.write()} seeds to {corpus.DIRECTORY}")
        return 0

    parts = [part.strip() for part in options.only.split(",") if part.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown parts {sorted(unknown)}; choose from {PARTS}")
    failed: list[str] = []
    began = time.monotonic()

    def heading(text: str) -> None:
        print(f"\n== {text} ({time.monotonic() - began:.0f}s elapsed)", flush=True)

    if "soak" in parts:
        from soak import runs

        heading(f"soak: {options.duration:g}s, {options.concurrency} keep-alive TLS clients, mixed AdmissionReviews, every answer checked")
        result = runs.soak(duration=options.duration, concurrency=options.concurrency, validate_every=options.validate_every)
        print(result.report())
        problems = result.problems()
        print("  " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)), flush=True)
        failed += ["soak"] if problems else []

    if "burst" in parts:
        from soak import runs

        clients = options.concurrency * options.burst_factor
        heading(f"burst: {clients} clients ({options.burst_factor}x) for {options.burst_seconds:g}s")
        burst = runs.burst(seconds=options.burst_seconds, concurrency=clients)
        print(burst.report())
        problems = burst.problems()
        print("  " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)), flush=True)
        failed += ["burst"] if problems else []

    if "faults" in parts:
        from soak import faults

        heading("faults, each under load (6-10 TLS clients, every answer checked)")
        for name in [name.strip() for name in options.faults.split(",") if name.strip()]:
            started = time.monotonic()
            fault = faults.ALL[name]()
            print(fault.report() + f"  ({time.monotonic() - started:.1f}s)", flush=True)
            failed += [f"fault {name}"] if fault.problems else []

    if "fuzz" in parts:
        from soak import corpus, fuzz

        heading(f"fuzzing the request path (seed {options.seed})")
        seeds = len(corpus.load())
        atheris_runs = options.atheris_runs if fuzz.atheris_available() else 0
        mutations = max(0, options.fuzz_inputs - seeds - options.hypothesis_examples - atheris_runs)
        stats = fuzz.fuzz_in_process(hypothesis_examples=options.hypothesis_examples, mutation_inputs=mutations, seed=options.seed)
        total, seconds = stats.inputs, stats.seconds
        print(f"  in process (create_app, corpus + mutations + hypothesis): {stats.summary()}")
        if atheris_runs:
            executed, atheris_seconds, problem = fuzz.atheris_run(atheris_runs, max_seconds=300)
            total, seconds = total + executed, seconds + atheris_seconds
            print(
                f"  atheris (coverage-guided, in a subprocess): {executed} inputs in {atheris_seconds:.1f}s{'; ' + problem if problem else '; no crash'}"
            )
            if problem:
                stats.failures.append(problem)
        else:
            print("  atheris: not installed, skipped")
        print(f"  TOTAL in process: {total} inputs in {seconds:.1f}s")
        sample = [fuzz.Input(data) for data in corpus.load().values()] + list(
            fuzz.mutations(corpus.load(), max(0, options.tls_sample - seeds), options.seed + 1)
        )
        tls, notes = fuzz.tls_sample(sample)
        print(f"  over TLS against the real server: {tls.summary()}")
        for note in notes:
            print(f"  {note}")
        failures = stats.failures + tls.failures
        if failures:
            from collections import Counter

            print("  FAIL: " + str(len(failures)) + " failures; most common:")
            for problem, count in Counter(failure[:160] for failure in failures).most_common(6):
                print(f"    {count} x {problem}")
            for problem, body in (stats.findings + tls.findings)[:3]:
                print(f"    e.g. {problem[:100]}: body {body[:300]!r}")
            failed.append("fuzz")
        else:
            print("  PASS", flush=True)

    if "schemathesis" in parts:
        from soak import fuzz

        heading("schemathesis")
        print("  against the server's own /openapi.json (/mutate described in webhook/serving/openapi.py)")
        code, summary, output = fuzz.schemathesis_run(max_examples=options.schemathesis_examples, max_time=options.schemathesis_seconds)
        print(
            f"  schemathesis run (examples, coverage, fuzzing; checks not_a_server_error, status_code/content_type/response_schema conformance): exit {code}; {summary}"
        )
        if code != 0:
            print("  FAIL:\n" + "\n".join("    " + line for line in output.splitlines()[-40:]))
            failed.append("schemathesis")
        else:
            print("  PASS")

    if "adversarial" in parts:
        from soak import adversarial

        heading("adversarial bodies at 1.5 MB and 3 MiB: server CPU per request, a normal admission alongside")
        chosen = [name.strip() for name in options.adversarial_cases.split(",") if name.strip()]
        if set(chosen) - set(adversarial.CASES):
            parser.error(
                f"--adversarial-cases: unknown {sorted(set(chosen) - set(adversarial.CASES))}; choose from {', '.join(adversarial.CASES)}"
            )
        _, problems = adversarial.run(cases=chosen or None)
        print("  " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)), flush=True)
        failed += ["adversarial"] if problems else []

    if "memory" in parts:
        from soak import memory

        heading(
            f"memory: {options.memory_requests} adversarial requests, every one distinct, after a {options.memory_warmup_seconds:g}s warm-up"
        )
        result = memory.memory(
            requests=options.memory_requests, warmup_seconds=options.memory_warmup_seconds, max_seconds=options.memory_seconds
        )
        print(result.report())
        problems = result.problems()
        print("  " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)), flush=True)
        failed += ["memory"] if problems else []

    if "listener" in parts:
        from soak import listener

        heading("listener floods against one real server (default limits), an admission every 100 ms meanwhile")
        results = listener.floods()
        failed += [f"listener {result.name}" for result in results if result.problems]

    heading("done")
    print(f"  {'ALL PASSED' if not failed else 'FAILED: ' + ', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
