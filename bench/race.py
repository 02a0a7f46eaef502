"""``python -m bench.race OTHER_TREE``: this tree's server against another checkout's, both at once.

On a shared machine the speed of a core drifts by a third within minutes, so two servers
measured one after the other differ by more than most changes do (the same code in alternating
3-second runs: 0.8 to 1.2 times itself). Here both servers run at the same time on one core,
each driven by its own wrk on the other core: the scheduler splits the core between them, so the
ratio of their request rates is the inverse ratio of their CPU cost per request, and whatever
slows the machine slows both alike (the same code against itself: 0.99 to 1.02).

Each server runs from its own tree (``python -m webhook serve`` with that tree as the working
directory, which Python puts first on the path: a PYTHONPATH alone does not override it).
``OTHER_TREE`` is typically a worktree of the commit to compare with::

    git worktree add /tmp/before HEAD~3 && python -m bench.race /tmp/before --cases varied
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench import payloads
from bench.runner import LUA, REPO, REUSED, VARIED, _free_port, source


def _serve(tree: Path, certs: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = ["taskset", "-c", "0", sys.executable, "-m", "webhook", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--tls-cert-file", str(certs / "tls.crt"), "--tls-private-key-file", str(certs / "tls.key")]
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, stdout=output, stderr=subprocess.STDOUT)


def _listening(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench.race: a server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench.race: nothing listens on port {port} after 30 s")


def _drive(ports: list[int], body: Path, vary: str, seconds: float, connections: int, work: Path) -> list[float]:
    """One wrk per port, all at once on CPU 1; the request rate each measured."""
    running = []
    for port in ports:
        out = work / f"wrk-{port}.out"
        command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(LUA)]
        env = {**os.environ, "BENCH_BODY": str(body), "BENCH_VARY": vary}
        with out.open("wb") as output:
            running.append((out, subprocess.Popen([*command, f"https://127.0.0.1:{port}/mutate"], stdout=output, env=env)))
    rates = []
    for out, process in running:
        process.wait()
        line = next(line for line in out.read_text().splitlines() if line.startswith("BENCH_JSON "))
        measured = orjson.loads(line.removeprefix("BENCH_JSON "))
        if sum(measured["errors"].values()):
            raise SystemExit(f"bench.race: errors from wrk: {measured['errors']}")
        rates.append(measured["requests"] / (measured["duration_us"] / 1e6))
    return rates


def race(other: Path, cases: list[str], *, seconds: float, rounds: int, connections: int) -> dict[str, list[float]]:
    """case → this tree's request rate over the other's, per round."""
    work = Path(tempfile.mkdtemp(prefix="entourage-race-"))
    try:
        subprocess.run(
            [sys.executable, "-m", "webhook", "certs", "--service", "x", "--namespace", "y", "--out-dir", str(work / "certs")],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        files = payloads.write(work / "bodies")
        ports = [_free_port(), _free_port()]
        servers = [
            _serve(tree, work / "certs", port, work / f"{name}.log")
            for tree, port, name in zip((REPO, other), ports, ("this", "other"), strict=True)
        ]
        try:
            for port, server in zip(ports, servers, strict=True):
                _listening(port, server)
            ratios: dict[str, list[float]] = {}
            for case in cases:
                body, vary = source(case)
                _drive(ports, files[body], vary, 2, connections, work)  # warm-up
                for _ in range(rounds):
                    this, that = _drive(ports, files[body], vary, seconds, connections, work)
                    ratios.setdefault(case, []).append(this / that)
                    print(
                        f"bench.race: {case:12} this {this:8,.0f} req/s  other {that:8,.0f} req/s  ratio {this / that:.3f}", file=sys.stderr
                    )
            return ratios
        finally:
            for server in servers:
                server.send_signal(signal.SIGINT)  # SIGTERM would drain for 5 s first
                server.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.race", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="another checkout of Entourage (e.g. a git worktree of an earlier commit)")
    cases = (*payloads.CASES, *VARIED, *REUSED)
    parser.add_argument("--cases", default="varied,unannotated", help=f"comma-separated subset of {', '.join(cases)}")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per round (default 6)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections per server (default 16)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("bench.race: needs wrk and taskset (make tools)")
    ratios = race(args.other.resolve(), args.cases.split(","), seconds=args.seconds, rounds=args.rounds, connections=args.connections)
    for case, values in ratios.items():
        print(f"{case}: this tree answers {statistics.median(values):.3f}x the other's requests per second (median of {len(values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
