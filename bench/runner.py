"""Start both servers pinned to one core, drive them with wrk pinned to the other, print the table.

Per run: requests/s, latency percentiles (wrk's, in ms), errors (socket errors + non-2xx), the
server's CPU (utime+stime from /proc, as a share of one core) and wrk's own CPU (rusage), so a
run where the client, not the server, was the bottleneck shows as such. Runs alternate between
the baseline and Entourage (baseline, entourage, baseline, entourage) for every case and
connection count, so drift (thermal, noisy neighbours) hits both sides of each ratio.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

import orjson

from bench import payloads, verify

REPO = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "wrk" / "post.lua"
SERVERS = ("baseline", "entourage")
TICKS = os.sysconf("SC_CLK_TCK")

VARIED = {"small-unique": ("small", "checkout-7d9c6b5f4-"), "varied": ("varied", payloads.VARIED_NAME)}
"""Cases whose every request carries a different pod: (body case, text a counter follows).
They time the engine itself; the other cases repeat one review, as a scaled Deployment does,
which webhook/admission/reuse.py answers from the first. ``varied`` sends the golden cases'
pods in turn (bench/payloads.py) and has a target; ``small-unique`` is reported only."""

REUSED = {"varied-reused": "varied"}
"""Cases that send another case's bodies in turn without a counter: ``varied-reused`` is the
varied pods, each answered from the answer cache after the first round. It prices all that a
varied pod costs but the engine (decoding it, sending its answer, the log line and metrics), so
its ratio is the most ``varied`` could reach with an engine that cost nothing. Reported only."""


def source(case: str) -> tuple[str, str]:
    """The body case whose file ``case`` sends, and the text a counter follows ("" for none)."""
    if case in REUSED:
        return REUSED[case], ""
    return VARIED.get(case, (case, ""))


TARGETS = {
    # (case, connections): (minimum throughput ratio, maximum p99 ratio)
    ("small", 16): (0.30, 3.0),
    ("unannotated", 16): (0.45, None),
    ("large", 16): (0.20, None),
    ("varied", 16): (0.30, None),
}
LATENCY_TARGETS_MS = {("small", 1): (0.4, 2.0), ("large", 1): (2.0, 10.0)}
"""(case, connections) → (p50, p99) ceilings in milliseconds for Entourage."""
RSS_LIMIT_MIB = 100.0
RSS_CHECKPOINTS = (20_000, 200_000)


@dataclass
class Options:
    duration: float = 10.0
    warmup: float = 2.0
    alternations: int = 2
    connections: tuple[int, ...] = (1, 16)
    cases: tuple[str, ...] = (*payloads.CASES, *VARIED, *REUSED)
    server_cpu: int = 0
    client_cpu: int = 1
    log_level: str | None = None
    """Passed to ``entourage serve --log-level`` when set; None keeps the server's default."""
    memory_requests: int = RSS_CHECKPOINTS[-1]
    """Keep driving the small case after the timed runs until Entourage has served this many."""
    out: Path = Path("bench-results.json")
    micro: bool = True
    entourage_command: tuple[str, ...] = ()
    """Replaces ``entourage`` in ``entourage serve …`` (e.g. a wrapper trying a server option)."""


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    served: int = 0
    rss: list[tuple[int, float]] = field(default_factory=list)
    """(requests served so far, RSS in MiB) after each run."""

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def sample_rss(self) -> None:
        self.rss.append((self.served, round(self.rss_mib(), 1)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _python_command(name: str, options: Options | None = None) -> list[str]:
    if options and options.entourage_command and name == "entourage":
        return list(options.entourage_command)
    if name == "baseline":
        return [sys.executable, "-m", "bench.baseline"]
    script = Path(sys.executable).parent / "entourage"
    return [str(script)] if script.exists() else [sys.executable, "-m", "webhook"]


def _start(name: str, certs: Path, work: Path, options: Options) -> Server:
    port = _free_port()
    command = ["taskset", "-c", str(options.server_cpu), *_python_command(name, options), *([] if name == "baseline" else ["serve"])]
    command += [
        "--tls-cert-file",
        str(certs / "tls.crt"),
        "--tls-private-key-file",
        str(certs / "tls.key"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if options.log_level:
        command += ["--log-level", options.log_level]
    log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    server = Server(name, port, process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {process.returncode}; see {work / (name + '.log')}:\n{(work / (name + '.log')).read_text()[-2000:]}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within 30 s")


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def wrk(
    server: Server, body_file: Path, *, connections: int, duration: float, options: Options, work: Path, vary: str = ""
) -> dict[str, Any]:
    """One wrk run; returns its measurements (latencies in ms). ``vary``: see ``source``."""
    output = work / "wrk.out"
    command = [
        "taskset",
        "-c",
        str(options.client_cpu),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "5s",
    ]
    command += ["-s", str(LUA), f"https://127.0.0.1:{server.port}/mutate"]
    cpu_before = server.cpu_seconds()
    busy_before = _busy_seconds((options.server_cpu, options.client_cpu))
    started = time.perf_counter()
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "BENCH_BODY": str(body_file), "BENCH_VARY": vary}
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    server_cpu = server.cpu_seconds() - cpu_before
    busy = _busy_seconds((options.server_cpu, options.client_cpu)) - busy_before
    client_cpu = usage.ru_utime + usage.ru_stime
    text = output.read_text()
    line = next((line for line in text.splitlines() if line.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{text}")
    raw = orjson.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    server.served += raw["requests"]
    server.sample_rss()
    latency = raw["latency_us"]
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / seconds,
        "p50_ms": latency["p50"] / 1000,
        "p90_ms": latency["p90"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "p999_ms": latency["p999"] / 1000,
        "max_ms": latency["max"] / 1000,
        "errors": sum(raw["errors"].values()),
        "error_kinds": raw["errors"],
        "server_cpu": server_cpu / wall,
        "client_cpu": client_cpu / wall,
        "other_cpu": max(0.0, busy - server_cpu - client_cpu) / wall,
    }


def _busy_seconds(cpus: tuple[int, ...]) -> float:
    """Non-idle time of these CPUs from /proc/stat: what else ran there shows as ``other_cpu``."""
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(v) for v in values]
            total += sum(ticks) - ticks[3] - ticks[4]  # minus idle and iowait
    return total / TICKS


def machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?"
    )
    versions = {}
    for module in ("uvicorn", "uvloop", "httptools", "orjson", "fastapi", "starlette"):
        try:
            versions[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            versions[module] = None
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0].split(" Copyright")[0]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "wrk": wrk_version,
        **versions,
    }


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The least disturbed run (highest req/s: other load on the machine only ever slows a run),
    with the errors of all runs and the mean req/s for reference."""
    best = max(runs, key=lambda run: run["rps"])
    keys = ("rps", "p50_ms", "p99_ms", "p999_ms", "server_cpu", "client_cpu", "other_cpu")
    return {
        **{key: best[key] for key in keys},
        "rps_mean": mean(run["rps"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
        "runs": len(runs),
    }


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (case, connections, server): its best alternation, with the ratio to the baseline's best."""
    rows = []
    groups: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        groups.setdefault((run["case"], run["connections"]), {}).setdefault(run["server"], []).append(run)
    for (case, connections), by_server in groups.items():
        base = _aggregate(by_server["baseline"]) if "baseline" in by_server else None
        for name, server_runs in by_server.items():
            row = {"case": case, "connections": connections, "server": name, **_aggregate(server_runs)}
            if base:
                row["rps_ratio"] = row["rps"] / base["rps"]
                row["p99_ratio"] = row["p99_ms"] / base["p99_ms"] if base["p99_ms"] else None
            rows.append(row)
    return rows


def check_targets(rows: list[dict[str, Any]], memory: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the issue, with the measured value and pass/miss."""
    found = {(r["case"], r["connections"], r["server"]): r for r in rows}
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float, *, at_least: bool) -> None:
        ok = value is not None and (value >= limit if at_least else value <= limit)
        checks.append({"target": name, "value": value, "limit": limit, "pass": ok})

    for (case, connections), (min_ratio, max_p99_ratio) in TARGETS.items():
        row = found.get((case, connections, "entourage"))
        if row:
            check(f"{case} @{connections}: throughput ratio >= {min_ratio:.0%}", row.get("rps_ratio"), min_ratio, at_least=True)
            if max_p99_ratio:
                check(f"{case} @{connections}: p99 ratio <= {max_p99_ratio:g}x", row.get("p99_ratio"), max_p99_ratio, at_least=False)
    for (case, connections), (p50, p99) in LATENCY_TARGETS_MS.items():
        row = found.get((case, connections, "entourage"))
        if row:
            check(f"{case} @{connections}: p50 <= {p50:g} ms", row["p50_ms"], p50, at_least=False)
            check(f"{case} @{connections}: p99 <= {p99:g} ms", row["p99_ms"], p99, at_least=False)
    check("zero errors (all runs, both servers)", float(sum(r["errors"] for r in rows)), 0, at_least=False)
    if memory.get("rss_200k_mib") is not None:
        check(f"RSS after {RSS_CHECKPOINTS[-1]:,} requests <= {RSS_LIMIT_MIB:g} MiB", memory["rss_200k_mib"], RSS_LIMIT_MIB, at_least=False)
        check("RSS flat: after the last run (past 200k) within 10% of after the warm-ups", memory["rss_growth"], 0.10, at_least=False)
    return checks


def _memory(server: Server, warmed_up: int) -> dict[str, Any]:
    """RSS at the checkpoints. The reference is taken once the server has served 20k requests and
    seen every case (the warm-ups: the first large body alone grows the baseline by ~6 MiB).

    "Flat" compares the RSS after the last run (past 200k requests) with that reference: both
    follow a pass over every case, so they hold the same workloads' working set. The sample at
    200k follows whichever run crossed it; after the large pod at 16 connections it reads up to
    10% higher (79.0 MiB after the warm-ups, 87.0 after large @16 at 216k, 74.9 after 1.06M in
    one run), which is that run's buffers, not growth."""

    def at(count: int) -> tuple[int, float] | tuple[None, None]:
        return next(((served, rss) for served, rss in server.rss if served >= count), (None, None))

    low_at, low = at(max(RSS_CHECKPOINTS[0], warmed_up))
    _, high = at(RSS_CHECKPOINTS[-1])
    final_at, final = server.rss[-1] if server.rss else (None, None)
    past = final_at is not None and final_at >= RSS_CHECKPOINTS[-1]
    return {
        "rss_20k_mib": low,
        "rss_20k_served": low_at,
        "rss_200k_mib": high,
        "rss_growth": (final - low) / low if low and final and past else None,
        "rss_final_mib": final,
        "served": server.served,
        "samples": server.rss,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | conns | server | req/s | p50 ms | p99 ms | p99.9 ms | errors | server CPU | client CPU | other CPU | vs baseline |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "" if r["server"] == "baseline" or "rps_ratio" not in r else f"{r['rps_ratio']:.0%} (p99 {r['p99_ratio']:.1f}x)"
        lines.append(
            f"| {r['case']} | {r['connections']} | {r['server']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['p999_ms']:.2f} | {r['errors']} | {r['server_cpu']:.0%} | {r['client_cpu']:.0%} | {r['other_cpu']:.0%} | {ratio} |"
        )
    return "\n".join(lines)


def run(options: Options) -> dict[str, Any]:
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("bench: needs wrk and taskset (apt-get install wrk util-linux)")
    work = Path(tempfile.mkdtemp(prefix="entourage-bench-"))
    certs = work / "certs"
    subprocess.run(
        [*_python_command("entourage"), "certs", "--service", "x", "--namespace", "y", "--out-dir", str(certs), "--force"],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    reviews = payloads.reviews()
    bodies = {case: orjson.dumps(review) for case, review in reviews.items()}
    files = payloads.write(work / "bodies")
    for case in (*VARIED, *REUSED):
        files[case] = files[source(case)[0]]
    ca_file = str(certs / "ca.crt")
    result: dict[str, Any] = {
        "machine": machine(),
        "options": {k: str(v) for k, v in options.__dict__.items()},
        "body_bytes": {c: len(b) for c, b in bodies.items()},
    }
    micro_results = None
    if options.micro:
        from bench import micro

        micro_results = micro.run()
        result["micro_us"] = micro_results
    servers = {name: _start(name, certs, work, options) for name in SERVERS}
    try:
        verify.check_baseline(servers["baseline"].port, ca_file=ca_file, reviews=reviews, bodies=bodies)
        verify.check_server(
            "entourage", servers["entourage"].port, ca_file=ca_file, reviews=reviews, bodies=bodies, varied=payloads.varied_reviews()
        )
        print(f"bench: answers verified (uid echoed, patch applies, injected containers present); work dir {work}", file=sys.stderr)
        for case in options.cases:
            for server in servers.values():
                vary = source(case)[1]
                wrk(
                    server,
                    files[case],
                    connections=max(options.connections),
                    duration=options.warmup,
                    options=options,
                    work=work,
                    vary=vary,
                )
        warmed_up = {name: server.served for name, server in servers.items()}
        runs: list[dict[str, Any]] = []
        for alternation in range(options.alternations):
            for case in options.cases:
                for connections in options.connections:
                    for name in SERVERS:
                        vary = source(case)[1]
                        measured = wrk(
                            servers[name],
                            files[case],
                            connections=connections,
                            duration=options.duration,
                            options=options,
                            work=work,
                            vary=vary,
                        )
                        runs.append({"server": name, "case": case, "connections": connections, "alternation": alternation, **measured})
                        print(
                            f"bench: {name:9} {case:11} c={connections:<3} {measured['rps']:9,.0f} req/s  p99 {measured['p99_ms']:.2f} ms  errors {measured['errors']}  other CPU {measured['other_cpu']:.0%}",
                            file=sys.stderr,
                        )
        entourage = servers["entourage"]
        while entourage.served < options.memory_requests:
            wrk(entourage, files["small"], connections=16, duration=options.duration, options=options, work=work)
            print(f"bench: memory: {entourage.served:,} requests served, RSS {entourage.rss[-1][1]} MiB", file=sys.stderr)
        result["runs"] = runs
        result["rows"] = summarize(runs)
        result["memory"] = _memory(entourage, warmed_up[entourage.name])
        result["memory_baseline"] = _memory(servers["baseline"], warmed_up["baseline"])
        result["targets"] = check_targets(result["rows"], result["memory"])
        for server in servers.values():
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} died during the bench; see {work}")
    finally:
        for server in servers.values():
            _stop(server)
    result["server_log_bytes"] = {name: (work / f"{name}.log").stat().st_size for name in SERVERS}
    options.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    _print(result, micro_results)
    shutil.rmtree(work, ignore_errors=True)
    return result


def _print(result: dict[str, Any], micro_results: dict[str, dict[str, float]] | None) -> None:
    m = result["machine"]
    print(f"\nMachine: {m['cpu']}, {m['cores']} cores, {m['os']}, Python {m['python']}, {m['wrk']}")
    print(
        f"uvicorn {m['uvicorn']}, uvloop {m['uvloop']}, httptools {m['httptools']}, orjson {m['orjson']}; server on CPU {result['options']['server_cpu']}, wrk on CPU {result['options']['client_cpu']}"
    )
    print(
        "Each row is the best of its alternations (other load only slows a run); 'other CPU' is what else ran on the two pinned cores, as a share of one core."
    )
    print("Bodies: " + ", ".join(f"{case} {size:,} B" for case, size in result["body_bytes"].items()) + "\n")
    print(table(result["rows"]))
    mem = result["memory"]
    base = result["memory_baseline"]
    print(
        f"\nEntourage RSS: {mem['rss_20k_mib']} MiB after the warm-ups ({mem['rss_20k_served']:,} requests, every case seen), "
        f"{mem['rss_200k_mib']} MiB after 200k, {mem['rss_final_mib']} MiB after {mem['served']:,}; "
        f"baseline {base['rss_20k_mib']}, {base['rss_200k_mib']}, {base['rss_final_mib']} MiB after {base['served']:,}"
    )
    if micro_results:
        from bench import micro

        print("\nEngine, in-process (best of 5):\n" + micro.table(micro_results))
    print("\n| target | measured | pass |\n|---|---:|---|")
    for check in result["targets"]:
        value = "n/a" if check["value"] is None else f"{check['value']:.3g}"
        print(f"| {check['target']} | {value} | {'PASS' if check['pass'] else 'MISS'} |")
