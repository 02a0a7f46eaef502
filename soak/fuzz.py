"""Fuzzing the request path: never a 5xx, never an exception escaping, the server stays up.

Three generators feed the in-process ASGI app (``webhook.serving.app.create_app`` over a real
``Runtime``, called directly: no sockets, ~10,000 inputs a second):

- **hypothesis**: arbitrary bytes, JSON of every shape, AdmissionReviews with arbitrary
  ``request`` fields and arbitrary ``object``s, pod-shaped objects with arbitrary annotations and
  arbitrary values at each level of the spec, arbitrary methods and Content-Types;
- **mutations** of the seed corpus (tests/fuzz_corpus/): byte flips, truncations, splices, and
  JSON-aware edits (a random node replaced by a value of another type, deleted, duplicated,
  nested deeper);
- **atheris** (coverage-guided libFuzzer, when installed), in a subprocess (``soak.atheris_target``).

The oracle for every input (``verdict``): exactly one response; a status among 200, 400, 405,
408, 413, 415; a JSON body; a 4xx body is a ``Status`` whose ``code`` is the HTTP status; a 200
body is an AdmissionReview echoing the request's uid with a boolean ``allowed``, and its patch,
when there is one, applies with jsonpatch to the request's object. A sample of the same inputs is
then sent to the real server over TLS (``tls_sample``), and schemathesis runs against the routes
the app documents (``schemathesis_run``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpatch
import orjson

from soak import corpus
from webhook.admission import partial

ALLOWED_STATUS = {200, 400, 405, 408, 413, 415}


@dataclass
class Input:
    body: bytes
    method: str = "POST"
    content_type: bytes | None = b"application/json"
    chunks: int = 1
    """How many receive() messages the body arrives in."""


@dataclass
class FuzzStats:
    inputs: int = 0
    seconds: float = 0.0
    status: Counter[int] = field(default_factory=Counter)
    by_engine: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    findings: list[tuple[str, bytes]] = field(default_factory=list)
    internal_errors: Counter[str] = field(default_factory=Counter)
    """Answers ``allowed: false`` with status 500 (the engine's catch-all, onError: deny): not a
    5xx, but an input the engine did not expect; by exception type."""

    def fail(self, problem: str, item: Input) -> None:
        self.failures.append(problem)
        if len(self.findings) < 20:
            self.findings.append((problem, item.body))

    def summary(self) -> str:
        rate = self.inputs / max(self.seconds, 1e-9)
        engines = ", ".join(f"{name} {count}" for name, count in self.by_engine.items())
        internal = f"; engine internal errors (200, allowed: false, code 500): {dict(self.internal_errors)}" if self.internal_errors else ""
        return f"{self.inputs} inputs in {self.seconds:.1f}s ({rate:.0f}/s; {engines}); statuses {dict(sorted(self.status.items()))}; {len(self.failures)} failures{internal}"


# -- the app, in process -----------------------------------------------------------------------


class App:
    """``create_app`` over a real Runtime (certificates on disk, built-in settings)."""

    def __init__(self) -> None:
        from webhook import certs
        from webhook.serving.app import create_app
        from webhook.serving.run import ServeOptions
        from webhook.serving.runtime import Runtime

        self._directory = tempfile.TemporaryDirectory(prefix="entourage-fuzz-")
        certificates = certs.generate("entourage", "entourage")
        certs.write(certificates, Path(self._directory.name), force=True)
        options = ServeOptions(
            str(Path(self._directory.name) / "tls.crt"), str(Path(self._directory.name) / "tls.key"), request_timeout=5.0
        )
        self.runtime = Runtime(options)
        quiet = logging.getLogger("entourage")  # the engine's tracebacks of internal errors are counted, not printed
        quiet.handlers[:] = [logging.NullHandler()]
        quiet.propagate = False
        self.app = create_app(self.runtime)
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.loop.close()
        self._directory.cleanup()

    def call(self, item: Input) -> tuple[list[dict[str, Any]], BaseException | None]:
        return self.loop.run_until_complete(self._call(item))

    async def _call(self, item: Input) -> tuple[list[dict[str, Any]], BaseException | None]:
        headers = [(b"host", b"localhost"), (b"content-length", str(len(item.body)).encode())]
        if item.content_type is not None:
            headers.append((b"content-type", item.content_type))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": item.method, "scheme": "https",
            "path": "/mutate", "raw_path": b"/mutate", "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8443), "state": {},
        }  # fmt: skip
        size = max(1, -(-len(item.body) // max(1, item.chunks)))
        pieces = [item.body[i : i + size] for i in range(0, len(item.body), size)] or [b""]
        messages = [{"type": "http.request", "body": piece, "more_body": index < len(pieces) - 1} for index, piece in enumerate(pieces)]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await asyncio.sleep(3600)  # a real server's receive() waits for the disconnect
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        try:
            await self.app(scope, receive, send)
        except BaseException as error:  # noqa: BLE001 - the point: nothing may escape
            return sent, error
        return sent, None


def verdict(item: Input, sent: list[dict[str, Any]], error: BaseException | None) -> tuple[int, str]:
    """(status, '' or the problem)."""
    if error is not None:
        return 0, f"exception escaped: {error!r}"
    starts = [m for m in sent if m["type"] == "http.response.start"]
    if len(starts) != 1:
        return 0, f"{len(starts)} response starts"
    status = starts[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if status not in ALLOWED_STATUS:
        return status, f"HTTP {status}: {body[:300]!r}"
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, f"HTTP {status} with a non-JSON body {body[:200]!r}"
    if status != 200:
        if not isinstance(answer, dict) or answer.get("kind") != "Status" or answer.get("code") != status:
            return status, f"HTTP {status} without a matching Status: {body[:200]!r}"
        return status, ""
    try:
        request = _request_of(item.body)
    except Exception as parse_error:  # noqa: BLE001
        return status, f"HTTP 200 for a body the app should have refused ({parse_error!r}): {item.body[:200]!r}"
    response = answer.get("response") if isinstance(answer, dict) else None
    if not isinstance(response, dict) or response.get("uid") != request.get("uid") or not isinstance(response.get("allowed"), bool):
        return status, f"not an answer to uid {str(request.get('uid'))[:60]!r}: {body[:200]!r}"
    if "patch" in response:
        try:
            operations = orjson.loads(base64.b64decode(response["patch"], validate=True))
            jsonpatch.apply_patch(request["object"], operations)
        except Exception as patch_error:  # noqa: BLE001
            return status, f"the patch does not apply to the request's object: {patch_error!r}"
    return status, ""


def _request_of(body: bytes) -> Any:
    """The request as orjson reads it. orjson also refuses two things that JSON's grammar allows,
    a number beyond a double's range and an unpaired surrogate escape; the server's pruned decode
    (webhook/admission/partial.py) accepts those when they sit in fields it never reads, so they are read
    here as it reads them."""
    try:
        return orjson.loads(body)["request"]
    except orjson.JSONDecodeError as error:
        if "infinity" not in str(error) and "surrogates" not in str(error):
            raise
        return partial.loads(body)["request"]


_INTERNAL = re.compile(rb'"code":500,"reason":"InternalError","message":"[^"]*internal error: (\w+)')


def run_inputs(app: App, items: Iterable[Input], stats: FuzzStats, engine: str) -> None:
    for item in items:
        sent, error = app.call(item)
        status, problem = verdict(item, sent, error)
        stats.inputs += 1
        stats.by_engine[engine] += 1
        stats.status[status] += 1
        if problem:
            stats.fail(f"{engine}: {problem}", item)
        elif status == 200:
            internal = _INTERNAL.search(b"".join(m.get("body", b"") for m in sent))
            if internal:
                stats.internal_errors[internal[1].decode()] += 1


# -- hypothesis ---------------------------------------------------------------------------------


def _strategies() -> Any:
    from hypothesis import strategies as st

    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=40)
    )
    json_values = st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20
    )
    reference = mix_reference()
    prefix = "entourage.dev/"
    keys = st.sampled_from(
        [prefix + k for k in ("logging", "logging-paths", "logging-container", "ambassador", "wait-for", "wait-for-timeout", "adapter", "native-sidecars", "inject", "status",
                              "logging-cpu-limit", "ambassador-memory-request", "adapter.nginx-prometheus.status-port", "logging.fluent-bit.port")]
    ) | st.text(max_size=30)  # fmt: skip
    values = st.sampled_from(
        [
            "true",
            "false",
            "fluent-bit",
            "6379=redis:6379",
            "tls://a.b:443",
            "tcp://db:5432",
            "http://x:80/p?q=1",
            "dns://db",
            "90s",
            "0",
            "nginx-prometheus",
            "/var/log/app",
            "100m",
            "1Gi",
        ]
    ) | st.text(max_size=60)
    annotation_values = values | json_values
    spec_fields = st.sampled_from(
        ["containers", "initContainers", "volumes", "hostNetwork", "restartPolicy", "securityContext", "ephemeralContainers", "nodeName"]
    )
    container_fields = st.sampled_from(
        ["name", "image", "ports", "volumeMounts", "env", "resources", "securityContext", "restartPolicy", "command"]
    )

    @st.composite
    def pod_reviews(draw: Any) -> bytes:
        review = json.loads(reference)
        request = review["request"]
        pod = request["object"]
        pod["metadata"]["annotations"] = draw(st.dictionaries(keys, annotation_values, max_size=6))
        for _ in range(draw(st.integers(0, 3))):
            pod["spec"][draw(spec_fields)] = draw(json_values)
        for _ in range(draw(st.integers(0, 2))):
            containers = pod["spec"].get("containers")
            if isinstance(containers, list) and containers and isinstance(containers[0], dict):
                containers[0][draw(container_fields)] = draw(json_values)
        if draw(st.booleans()):
            request[draw(st.sampled_from(["namespace", "operation", "kind", "subResource", "dryRun", "uid"]))] = draw(
                json_values | st.text(min_size=1, max_size=20)
            )
        try:
            return json.dumps(review, allow_nan=False).encode()
        except (ValueError, TypeError):
            return reference

    @st.composite
    def reviews_with_any_object(draw: Any) -> bytes:
        request = {"uid": draw(st.text(min_size=1, max_size=40)), "kind": draw(st.just({"group": "", "version": "v1", "kind": "Pod"}) | json_values),
                   "operation": draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]) | json_values), "object": draw(json_values)}  # fmt: skip
        if draw(st.booleans()):
            request["namespace"] = draw(st.text(max_size=20) | json_values)
        extra = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3))
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request, **extra}
        return json.dumps(review).encode()

    @st.composite
    def any_json(draw: Any) -> bytes:
        return json.dumps(draw(json_values)).encode()

    bodies = st.binary(max_size=2000) | any_json() | reviews_with_any_object() | pod_reviews()
    content_types = (
        st.just(b"application/json")
        | st.sampled_from(
            [b"application/json; charset=utf-8", b"APPLICATION/JSON", b"text/plain", b"", b"application/json\x00", b"\xff\xfe"]
        )
        | st.binary(max_size=30)
        | st.none()
    )
    return st.builds(
        Input,
        body=bodies,
        method=st.just("POST") | st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "post"]),
        content_type=content_types,
        chunks=st.integers(1, 4),
    )


def mix_reference() -> str:
    from soak import mix

    return json.dumps(mix.reference_review())


def hypothesis_run(app: App, stats: FuzzStats, examples: int, seed: int = 0) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    inputs = _strategies()

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(inputs)
    def one(item: Input) -> None:
        run_inputs(app, [item], stats, "hypothesis")

    from hypothesis import seed as hypothesis_seed

    hypothesis_seed(seed)(one)()


# -- mutations of the seed corpus ---------------------------------------------------------------


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(12 if depth < 3 else 8)
    return [
        lambda: None, lambda: rng.choice([True, False]), lambda: rng.randint(-(2**63), 2**64 - 1), lambda: rng.random() * 10 ** rng.randint(-5, 300),
        lambda: "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x2FFFF)])) for _ in range(rng.randrange(0, 20))),
        lambda: rng.choice(["", "true", "CREATE", "Pod", "entourage.dev/logging", "6379=redis:6379", "a" * 5000, "\u0000", "\ud7ff"]),
        lambda: rng.randrange(-2, 70000), lambda: "x" * rng.randrange(0, 300),
        lambda: [_random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))],
        lambda: {rng.choice(["name", "image", "ports", "containers", "annotations", "uid", "", "metadata", "spec"]): _random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))},
        lambda: [[[[[]]]]], lambda: {"a": {"b": {"c": {}}}},
    ][choice]()  # fmt: skip


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _nodes(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _nodes(child, (*path, index))


def _json_mutation(rng: random.Random, document: Any) -> Any:
    nodes = list(_nodes(document))
    path, node = rng.choice(nodes)
    if not path:
        return _random_json(rng)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    action = rng.randrange(6)
    if action == 0:
        parent[key] = _random_json(rng)
    elif action == 1 and isinstance(parent, dict):
        del parent[key]
    elif action == 2:
        parent[key] = [node]
    elif action == 3:
        parent[key] = {"x": node}
    elif action == 4 and isinstance(node, str):
        parent[key] = node + rng.choice([";", "$(id)", "\n", "`", "'", '"', "：", "а", ",", "/..", "=", "\u202e", "%00"])
    else:
        parent[key] = rng.choice([None, "", 0, [], {}, True, str(node)[:50]])
    return document


def _byte_mutation(rng: random.Random, data: bytes, other: bytes) -> bytes:
    if not data:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
    action = rng.randrange(6)
    at = rng.randrange(len(data))
    if action == 0:
        return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]
    if action == 1:
        return data[:at]
    if action == 2:
        return data[:at] + data[at + rng.randrange(1, 50) :]
    if action == 3:
        return data[:at] + other[rng.randrange(max(1, len(other))) :]
    if action == 4:
        return (
            data[:at]
            + rng.choice([b"{", b"[", b"]", b"}", b'"', b"\\", b",", b":", b"\x00", b"\xff", b"1e999", b"-0", b"null"])
            + data[at:]
        )
    return data[:at] + data[at : at + rng.randrange(1, 200)] * rng.randrange(2, 5) + data[at:]


def mutations(seeds: dict[str, bytes], count: int, seed: int = 0) -> Iterator[Input]:
    rng = random.Random(seed)
    pool = list(seeds.values())
    parsed = []
    for data in pool:
        with contextlib.suppress(orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
            parsed.append(orjson.dumps(orjson.loads(data)))  # only what orjson round-trips
    for _ in range(count):
        if rng.random() < 0.6 and parsed:
            document = orjson.loads(rng.choice(parsed))
            for _ in range(rng.randrange(1, 4)):
                document = _json_mutation(rng, document)
            try:
                body = orjson.dumps(document)
            except (orjson.JSONEncodeError, TypeError):
                body = json.dumps(document, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        else:
            body = rng.choice(pool)
            for _ in range(rng.randrange(1, 4)):
                body = _byte_mutation(rng, body, rng.choice(pool))
        yield Input(body, chunks=rng.choice([1, 1, 1, 2, 7]))


def seed_inputs() -> list[Input]:
    return [Input(data) for data in corpus.load().values()]


# -- atheris ------------------------------------------------------------------------------------


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def atheris_run(runs: int, max_seconds: int) -> tuple[int, float, str]:
    """(inputs executed, seconds, problem or '')."""
    with tempfile.TemporaryDirectory(prefix="entourage-atheris-") as work:
        started = time.monotonic()
        process = subprocess.run(
            [sys.executable, "-m", "soak.atheris_target", f"-runs={runs}", f"-max_total_time={max_seconds}", "-rss_limit_mb=2048", "-max_len=65536", "-print_final_stats=1",
             f"-artifact_prefix={work}/", work, str(corpus.DIRECTORY)],
            capture_output=True, text=True, timeout=max_seconds + 120, cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        seconds = time.monotonic() - started
        output = process.stdout + process.stderr
        executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
        done = re.search(r"Done (\d+) runs", output)
        count = int(executed[1]) if executed else int(done[1]) if done else 0
        problem = ""
        if process.returncode != 0:
            crash = [line for line in output.splitlines() if "Error" in line or "Exception" in line or "crash" in line.lower()]
            problem = f"atheris exit {process.returncode}: {' | '.join(crash[-6:]) or output[-1500:]}"
        return count, seconds, problem


# -- over TLS against the real server -----------------------------------------------------------


def tls_sample(items: list[Input], *, raw_http: bool = True) -> tuple[FuzzStats, list[str]]:
    """Send ``items`` to a real ``entourage serve`` over TLS (keep-alive, reconnecting when the
    server closes), then malformed HTTP; every status must be < 500, the log must hold no
    'Exception in ASGI application', and the server must still answer a real admission."""
    import socket
    import ssl

    from soak.client import read_response
    from soak.runs import server, server_errors

    stats = FuzzStats()
    notes: list[str] = []
    with server() as webhook:
        context = ssl.create_default_context(cadata=webhook.certificates.ca_pem.decode())

        async def drive() -> None:
            reader = writer = None
            for item in items:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", webhook.port, ssl=context, server_hostname="localhost")
                headers = f"{item.method} /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(item.body)}\r\n".encode()
                if item.content_type is not None and b"\r" not in item.content_type and b"\n" not in item.content_type:
                    headers += b"Content-Type: " + item.content_type + b"\r\n"
                writer.write(headers + b"\r\n" + item.body)
                try:
                    response = await asyncio.wait_for(read_response(reader), 10)  # type: ignore[arg-type]
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
                    stats.fail(f"no answer over TLS: {error!r}", item)
                    writer.close()
                    reader = writer = None
                    continue
                stats.inputs += 1
                stats.status[response.status] += 1
                if response.status >= 500:
                    stats.fail(f"HTTP {response.status} over TLS: {response.body[:200]!r}", item)
                if response.headers.get(b"connection", b"").lower() == b"close":
                    writer.close()
                    reader = writer = None
            if writer is not None:
                writer.close()

        started = time.monotonic()
        asyncio.run(drive())
        stats.seconds = time.monotonic() - started
        stats.by_engine["tls"] = stats.inputs
        if raw_http:
            garbage = [
                b"GARBAGE\r\n\r\n", b"POST /mutate HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"POST /mutate HTTP/1.1\r\nContent-Length: 99999999999999999999\r\nContent-Type: application/json\r\n\r\n",
                b"POST /mutate HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n", b"POST /mutate HTTP/9.9\r\n\r\n",
                b"POST /mutate HTTP/1.1\r\n" + b"X: " + b"a" * 100_000 + b"\r\n\r\n", b"POST /mutate HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                b"\x16\x03\x01\x00\x05hello", b"POST /%00%ff/../mutate HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /healthz?" + b"a=" * 5000 + b" HTTP/1.1\r\n\r\n",
            ]  # fmt: skip
            for data in garbage:
                try:
                    with (
                        socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw,
                        context.wrap_socket(raw, server_hostname="localhost") as conn,
                    ):
                        conn.sendall(data)
                        answer = b""
                        while True:
                            chunk = conn.recv(65536)
                            if not chunk:
                                break
                            answer += chunk
                            if b"\r\n\r\n" in answer:
                                break
                except (OSError, ssl.SSLError):
                    answer = b""
                status_line = answer.split(b"\r\n", 1)[0]
                code = int(status_line.split()[1]) if status_line.startswith(b"HTTP/1.1 ") else 0
                stats.status[code] += 1
                stats.inputs += 1
                stats.by_engine["raw-http"] += 1
                if code >= 500:
                    stats.fail(f"HTTP {code} for malformed HTTP {data[:60]!r}", Input(data))
        with webhook.client() as client:
            alive = client.post("/mutate", json=json.loads(mix_reference())).status_code
        notes.append(f"server alive after the sample: {webhook.process.poll() is None}, a real admission answered HTTP {alive}")
        if alive != 200 or webhook.process.poll() is not None:
            stats.failures.append("the server did not survive the sample")
        escaped = [
            line for line in webhook.log_path.read_text().splitlines() if "Exception in ASGI application" in line or "Traceback" in line
        ]
        errors = server_errors(webhook)
        if escaped:
            stats.failures.append(f"exceptions in the server log: {escaped[:3]}")
        if errors:
            notes.append(f"ERROR lines in the server log: {errors}")
    return stats, notes


# -- schemathesis -------------------------------------------------------------------------------


def schemathesis_run(max_examples: int = 200, max_time: int = 60) -> tuple[int, str, str]:
    """(exit status, summary line, output tail) of ``schemathesis run`` against a real server."""
    from soak.runs import server

    with server() as webhook, tempfile.TemporaryDirectory(prefix="entourage-schemathesis-") as work:
        schema = f"https://localhost:{webhook.port}/openapi.json"  # the server's own document
        ca = Path(work) / "ca.crt"
        ca.write_bytes(webhook.certificates.ca_pem)
        command = [
            str(Path(sys.executable).parent / "schemathesis"), "run", schema, "--tls-verify", str(ca),
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance", "--phases", "examples,coverage,fuzzing",
            "--max-examples", str(max_examples), "--max-time", str(max_time), "--workers", "1", "--suppress-health-check", "all", "--warnings", "off",
        ]  # fmt: skip
        environment = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"}
        process = subprocess.run(command, capture_output=True, text=True, timeout=max_time + 120, env=environment, cwd=work)
        output = process.stdout + process.stderr
        summary = [line.strip(" =") for line in output.splitlines() if re.search(r"\d+ generated|issues? found|Tested: \d+", line)]
        return process.returncode, " | ".join(summary), output[-4000:]


# -- all of it ----------------------------------------------------------------------------------


def fuzz_in_process(*, hypothesis_examples: int, mutation_inputs: int, seed: int = 0) -> FuzzStats:
    stats = FuzzStats()
    app = App()
    started = time.monotonic()
    try:
        run_inputs(app, seed_inputs(), stats, "corpus")
        run_inputs(app, mutations(corpus.load(), mutation_inputs, seed), stats, "mutations")
        if hypothesis_examples:
            hypothesis_run(app, stats, hypothesis_examples, seed)
    finally:
        stats.seconds = time.monotonic() - started
        app.close()
    return stats
