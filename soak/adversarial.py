"""Adversarial AdmissionReviews near the apiserver's size limits, and what each costs the server.

Each body is built around one shape a pod author (or anyone who can reach the Service) controls:
many keys under our prefix, huge names, deep nesting, long lists of containers, volumes, mounts
and ports. ``bodies(size)`` fills each shape up to ``size`` bytes.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from soak import procs

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "testdata" / "reviews" / "pod-create.json"
P = "entourage.dev/"
ASKS = {P + "logging": "true", P + "ambassador": "6379=redis.cache:6379", P + "wait-for": "db:5432"}
"""What the shapes that are not about annotations ask for: every list the engine looks through."""

Review = dict[str, Any]


def _review(annotations: dict[str, Any] | None = None) -> Review:
    review: Review = json.loads(REFERENCE.read_text())
    if annotations is not None:
        review["request"]["object"]["metadata"]["annotations"] = {**review["request"]["object"]["metadata"]["annotations"], **annotations}
    return review


def _pod(review: Review) -> dict[str, Any]:
    pod: dict[str, Any] = review["request"]["object"]
    return pod


def _fill(review: Review, size: int, unit: Callable[[int], Any], place: Callable[[Review, list[Any]], None]) -> bytes:
    """``review`` with as many ``unit(i)`` as make it about ``size`` bytes, put in by ``place``."""
    empty = copy.deepcopy(review)
    place(empty, [])
    base = len(json.dumps(empty, separators=(",", ":")))
    per_unit = len(json.dumps(unit(10**6), separators=(",", ":"))) + 1
    count = max(1, (size - base) // per_unit)
    for _ in range(2):  # units shorter than unit(10**6): one more, better estimate
        built = copy.deepcopy(review)
        place(built, [unit(index) for index in range(count)])
        body = json.dumps(built, separators=(",", ":")).encode()
        count = max(1, count * (size - base) // max(1, len(body) - base))
    return body


def _annotations(review: Review, pairs: list[tuple[str, Any]]) -> None:
    _pod(review)["metadata"]["annotations"].update(pairs)


def _many_keys(key: Callable[[int], str], value: Any = "true", asks: dict[str, str] | None = None) -> Callable[[int], bytes]:
    return lambda size: _fill(_review(asks), size, lambda i: (key(i), value), _annotations)


def _containers(section: str, unit: Callable[[int], Any]) -> Callable[[int], bytes]:
    def build(size: int) -> bytes:
        def place(review: Review, items: list[Any]) -> None:
            spec = _pod(review)["spec"]
            spec[section] = [*(spec.get(section) or []), *items]

        return _fill(_review(ASKS), size, unit, place)

    return build


def _app_list(field: str, unit: Callable[[int], Any]) -> Callable[[int], bytes]:
    """A long list inside the app container (the one the logging agent shares directories with)."""

    def build(size: int) -> bytes:
        def place(review: Review, items: list[Any]) -> None:
            container = _pod(review)["spec"]["containers"][0]
            container[field] = [*(container.get(field) or []), *items]

        return _fill(_review(ASKS), size, unit, place)

    return build


def _huge_names(size: int) -> bytes:
    review = _review(ASKS)
    metadata = _pod(review)["metadata"]
    each = size // 3
    metadata["name"] = "n" * each
    metadata["generateName"] = "g" * each
    metadata["ownerReferences"][0]["name"] = "o" * each
    return json.dumps(review).encode()


def _huge_container_name(size: int) -> bytes:
    review = _review(ASKS)
    _pod(review)["spec"]["containers"][0]["name"] = "c" * size
    return json.dumps(review).encode()


def _huge_key(size: int) -> bytes:
    return json.dumps(_review({P + "l" * size: "true"})).encode()


def _long_values(size: int) -> bytes:
    keys = ["logging", "logging-paths", "logging-container", "ambassador", "wait-for", "wait-for-timeout", "adapter", "native-sidecars"]
    each = size // len(keys)
    return json.dumps(_review({P + key: "a," * (each // 2) for key in keys})).encode()


def _deep(place: Callable[[Review, Any], None]) -> Callable[[int], bytes]:
    def build(size: int) -> bytes:
        review = _review(ASKS)
        place(review, "@")
        text = json.dumps(review)
        depth = size // 2
        return text.replace('"@"', "[" * depth + "]" * depth).encode()

    return build


def _deep_annotation(review: Review, marker: Any) -> None:
    _pod(review)["metadata"]["annotations"][P + "logging"] = marker


def _deep_unread(review: Review, marker: Any) -> None:
    _pod(review)["spec"]["affinity"] = marker


def _deep_ports(review: Review, marker: Any) -> None:
    _pod(review)["spec"]["containers"][0]["ports"] = marker


def _owner(index: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"rs-{index}", "uid": f"u-{index}"}


def _owners(review: Review, items: list[Any]) -> None:
    _pod(review)["metadata"]["ownerReferences"] = [*items, *_pod(review)["metadata"]["ownerReferences"]]


def _spec_list(section: str, unit: Callable[[int], Any]) -> Callable[[int], bytes]:
    """A spec list replaced by ``unit`` items (with the pod's own containers kept in front)."""

    def build(size: int) -> bytes:
        def place(review: Review, items: list[Any]) -> None:
            spec = _pod(review)["spec"]
            spec[section] = [*(spec.get(section) or [] if section == "containers" else []), *items]

        return _fill(_review(ASKS), size, unit, place)

    return build


def _metadata_map(field: str, unit: Callable[[int], tuple[str, Any]]) -> Callable[[int], bytes]:
    def build(size: int) -> bytes:
        def place(review: Review, pairs: list[Any]) -> None:
            metadata = _pod(review)["metadata"]
            metadata[field] = {**(metadata.get(field) or {}), **dict(pairs)}

        return _fill(_review(ASKS), size, unit, place)

    return build


def _at(path: tuple[str, ...]) -> Callable[[Review, list[Any]], None]:
    """Puts the items as one list at ``path`` under the request (a field admission reads)."""

    def place(review: Review, items: list[Any]) -> None:
        node: Any = review["request"]
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = items

    return place


def _escaped_name(size: int) -> bytes:
    review = _review(ASKS)
    _pod(review)["spec"]["containers"][0]["name"] = "@"
    return json.dumps(review).encode().replace(b'"@"', b'"' + b"\\u0061" * (size // 6) + b'"')


def _deep_wide(size: int) -> bytes:
    """Many arrays nested 500 deep, side by side, where admission reads nothing."""
    review = _review(ASKS)
    _pod(review)["spec"]["affinity"] = "@"
    one = b"[" * 500 + b"]" * 500
    return json.dumps(review).encode().replace(b'"@"', b"[" + b",".join([one] * (size // 1001)) + b"]")


def _big_numbers(digits: int) -> Callable[[int], bytes]:
    """Ports whose numbers have ``digits`` digits: Python builds big integers in quadratic time."""

    def build(size: int) -> bytes:
        review = _review(ASKS)
        _pod(review)["spec"]["containers"][0]["ports"] = "@"
        port = b'{"containerPort":' + b"7" * digits + b"}"
        return json.dumps(review).encode().replace(b'"@"', b"[" + b",".join([port] * (size // (len(port) + 1))) + b"]")

    return build


def _within_limits(size: int) -> bytes:
    """As many containers, ports and mounts as fit in ``size`` while every list stays within its
    default limit (128 containers, 256 ports and 512 mounts each): admitted, every item read."""
    review = _review(ASKS)
    spec = _pod(review)["spec"]
    app = spec["containers"][0]
    per_container = len(
        json.dumps(
            {"name": "c000", "ports": [{"containerPort": 10000}] * 256, "volumeMounts": [{"name": "tmp", "mountPath": "/m/000"}] * 512}
        )
    )
    count = max(1, min(127, (size - len(json.dumps(review))) // per_container))
    extra = [
        {
            "name": f"c{i}",
            "ports": [{"containerPort": 10000 + 256 * i + p} for p in range(256)],
            "volumeMounts": [{"name": "tmp", "mountPath": f"/m/{i}/{m}"} for m in range(512)],
        }
        for i in range(count)
    ]
    spec["containers"] = [app, *extra]
    return json.dumps(review, separators=(",", ":")).encode()


CASES: dict[str, Callable[[int], bytes]] = {
    "unknown-keys": _many_keys(lambda i: f"{P}x-{i}"),
    "near-miss-keys": _many_keys(lambda i: f"{P}loging-{i}"),
    "param-keys": _many_keys(lambda i: f"{P}adapter.nginx-prometheus.p{i}", "8080"),
    "keys-not-strings": _many_keys(lambda i: f"{P}k{i}", {"a": [1]}),
    "foreign-keys": _many_keys(lambda i: f"example.com/k{i}", "v", ASKS),
    "tiny-foreign-keys": _many_keys(lambda i: f"{i:x}", "", ASKS),
    "huge-key": _huge_key,
    "long-values": _long_values,
    "huge-names": _huge_names,
    "huge-container-name": _huge_container_name,
    "escaped-name": _escaped_name,
    "deep-annotation": _deep(_deep_annotation),
    "deep-unread": _deep(_deep_unread),
    "deep-ports": _deep(_deep_ports),
    "deep-wide": _deep_wide,
    "containers": _containers("containers", lambda i: {"name": f"c{i}", "image": "i", "ports": [{"containerPort": 1 + i % 60000}]}),
    "tiny-containers": _containers("containers", lambda i: {"name": f"c{i}"}),
    "empty-containers": _containers("containers", lambda i: {}),
    "nested-containers": _containers("containers", lambda i: []),
    "colliding-names": _containers("containers", lambda i: {"name": f"entourage-logging-{i + 2}", "image": "i"}),
    "init-containers": _containers(
        "initContainers", lambda i: {"name": f"i{i}", "image": "i", "restartPolicy": "Always", "ports": [{"containerPort": 1 + i % 60000}]}
    ),
    "empty-init-containers": _containers("initContainers", lambda i: {}),
    "empty-ephemeral": _spec_list("ephemeralContainers", lambda i: {}),
    "volumes": _containers("volumes", lambda i: {"name": f"entourage-logs-var-log-app-{i + 2}", "emptyDir": {}}),
    "empty-volumes": _spec_list("volumes", lambda i: {}),
    "mounts": _app_list("volumeMounts", lambda i: {"name": "tmp", "mountPath": f"/m/{i}"}),
    "empty-mounts": _app_list("volumeMounts", lambda i: {}),
    "ports": _app_list("ports", lambda i: {"containerPort": 1 + i % 60000}),
    "empty-ports": _app_list("ports", lambda i: {}),
    "big-port-numbers": _big_numbers(4000),
    "within-limits": _within_limits,
    "env": _app_list("env", lambda i: {"name": f"E{i}", "value": "v"}),
    "labels": _metadata_map("labels", lambda i: (f"{i:x}", "")),
    "owner-references": lambda size: _fill(_review(ASKS), size, _owner, _owners),
    "empty-owner-references": lambda size: _fill(_review(ASKS), size, lambda i: {}, _owners),
    "annotation-value-list": lambda size: _fill(
        _review(ASKS), size, lambda i: {}, _at(("object", "metadata", "annotations", P + "logging"))
    ),
    "annotations-list": lambda size: _fill(_review(ASKS), size, lambda i: {}, _at(("object", "metadata", "annotations"))),
    "uid-list": lambda size: _fill(_review(ASKS), size, lambda i: {}, _at(("uid",))),
}


def bodies(size: int) -> dict[str, bytes]:
    """Every adversarial shape, each about ``size`` bytes."""
    return {name: build(size) for name, build in CASES.items()}


SMALL, LARGE = 1_500_000, 3 * 1024 * 1024
CPU_BUDGET = 0.050
"""Server CPU seconds one request of up to 1.5 MB may cost."""
MAX_GROWTH = 1.35
"""Cost per MB at 3 MiB over cost per MB at 1.5 MB: 1 when the work grows with the body. In process
the figure is exact; on the server, fresh memory for twice the objects (page faults, system time)
and the 10 ms ticks of /proc add noise, so growth is judged only above SERVER_NOISE."""
SERVER_NOISE = 0.010
"""Server CPU per request below which /proc's 10 ms ticks (over 10 requests) say little about growth."""
NEIGHBOUR_BUDGET = 0.100
"""Seconds a normal admission sent at the same time may wait for its answer."""


REFERENCE_CASE = "env"
"""The shape of an ordinary large pod (its bulk in env entries, the usual way a real pod grows):
``json.loads`` of it at the same size is the second baseline."""


@dataclass
class Cost:
    """What one body costs the request path in this process, next to plain ``json.loads``."""

    case: str
    size: int
    cpu: float
    """CPU seconds of ``MutateEndpoint.respond`` (decode, admit, answer), best of the repeats."""
    baseline: float
    """CPU seconds of ``json.loads`` of the same body (inf when json.loads refuses it: too deep)."""
    reference: float
    """CPU seconds of ``json.loads`` of an ordinary pod (REFERENCE_CASE) of the same size."""
    status: str

    @property
    def ratio(self) -> float:
        """The cost over the larger baseline: what json.loads takes on this body, or on an
        ordinary pod of its size. Both are measured in the same run, interleaved with it."""
        return self.cpu / max(self.reference, self.baseline if self.baseline != float("inf") else 0.0)

    def line(self) -> str:
        plain = f"{self.baseline * 1000:6.1f}" if self.baseline != float("inf") else "  deep"
        return (
            f"  {self.case:<22} {self.size / 1e6:5.2f} MB {self.cpu * 1000:6.1f} ms CPU ({self.cpu * 1e9 / self.size:5.1f} ms/MB)"
            f"  json.loads {plain} ms, ordinary pod {self.reference * 1000:5.1f} ms  ratio {self.ratio:4.2f}  {self.status}"
        )


def _growth(small: Cost, large: Cost) -> float:
    """How much more the request path costs per MB at ``large`` than at ``small``: next to json.loads,
    or raw where that is less. Work that grows faster than the body raises both; a json.loads
    reference that merely measured low on a busy host (741 then 1,171 ms for deep-wide, while the
    path's own cost per MB moved 5%) raises only the first."""
    raw = (large.cpu / large.size) / (small.cpu / small.size)
    return min(raw, large.ratio / small.ratio)


def as_deployment(body: bytes) -> bytes:
    """A case's pod as the template of a Deployment CREATE, for ``POST /validate`` (the body
    as it is when it holds no pod)."""
    try:
        review = orjson.loads(body)
        pod = review["request"]["object"]
        review["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
        template = {"metadata": pod.get("metadata"), "spec": pod.get("spec")}
        review["request"]["object"] = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": template}}
        return orjson.dumps(review)
    except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):  # too deep, or no pod in it
        return body


def costs(size: int, repeats: int = 5, cases: list[str] | None = None, *, validate: bool = False) -> list[Cost]:
    """Every case (or ``cases``) at ``size`` bytes through ``MutateEndpoint.respond`` in this process,
    each request with a fresh answer cache (the key is built and missed, as for a new body); with
    ``validate``, as Deployment templates through ``ValidateEndpoint.respond``."""
    from webhook.admission.reuse import AnswerCache
    from webhook.engine.inject import ClusterFacts
    from webhook.engine.settings import build_settings
    from webhook.serving.endpoint import MutateEndpoint
    from webhook.serving.validation import ValidateEndpoint

    @dataclass
    class State:
        settings: Any = field(default_factory=lambda: build_settings({}))
        cluster: ClusterFacts = field(default_factory=ClusterFacts)
        namespace_annotations: Any = None

    state = State()
    reference = CASES[REFERENCE_CASE](size)
    found = []
    for name in cases or list(CASES):
        body = as_deployment(CASES[name](size)) if validate else CASES[name](size)
        cpu = baseline = ordinary = float("inf")
        status = ""
        for _ in range(repeats):
            endpoint = ValidateEndpoint(lambda: state) if validate else MutateEndpoint(lambda: state, answers=AnswerCache())
            started = time.process_time()
            json.loads(reference)
            ordinary = min(ordinary, time.process_time() - started)
            started = time.process_time()
            try:
                json.loads(body)
                baseline = min(baseline, time.process_time() - started)
            except RecursionError:
                pass
            started = time.process_time()
            code, answer, _ = endpoint.respond(body)
            cpu = min(cpu, time.process_time() - started)
            status = str(code) if code != 200 else _verdict(json.loads(answer)["response"])
        found.append(Cost(name, len(body), cpu, baseline, ordinary, status))
    return found


def _verdict(response: dict[str, Any]) -> str:
    return "allowed" if response["allowed"] else "denied: " + response["status"]["message"][:70]


@dataclass
class Figure:
    case: str
    size: int
    cpu: float
    """Server CPU seconds per request (utime + stime of the server and its workers / repeats)."""
    status: str
    neighbour: float
    """Slowest answer to a normal admission sent while this body was being answered (seconds)."""


def _cpu_seconds(pid: int) -> float:
    total = 0
    for process in (pid, *procs.children(pid)):
        fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def _outcome(response: httpx.Response) -> str:
    if response.status_code != 200:
        return str(response.status_code)
    answer = response.json()["response"]
    return "allowed" if answer["allowed"] else "denied: " + answer["status"]["message"][:90]


def _in_namespace(body: bytes, namespace: str) -> bytes:
    """``body`` with the request's namespace (the reference's "shop") replaced, same length."""
    for spelling in (b'"namespace":"shop"', b'"namespace": "shop"'):
        if spelling in body:
            return body.replace(spelling, spelling.replace(b"shop", namespace.encode()[:4].ljust(4, b"x")), 1)
    return body


def measure(webhook: Any, name: str, body: bytes, repeats: int) -> Figure:
    """``repeats`` requests of ``body`` back to back, while a neighbour sends normal admissions."""
    normal = json.dumps(_review(ASKS)).encode()
    headers = {"Content-Type": "application/json"}
    stop = threading.Event()
    waits: list[float] = []

    def neighbour() -> None:
        with webhook.client() as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.post("/mutate", content=normal, headers=headers)
                waits.append(time.perf_counter() - started)
                time.sleep(0.005)

    # Each request in another namespace, so that none is answered from the answer cache.
    variants = [_in_namespace(body, f"ns{index:02d}") for index in range(repeats)]
    with webhook.client(timeout=30) as client:
        status = _outcome(client.post("/mutate", content=body, headers=headers))  # warm-up, and the answer
        thread = threading.Thread(target=neighbour, daemon=True)
        thread.start()
        before = _cpu_seconds(webhook.process.pid)
        for variant in variants:
            client.post("/mutate", content=variant, headers=headers)
        after = _cpu_seconds(webhook.process.pid)
        stop.set()
        thread.join(10)
    neighbours_cpu = len(waits) * 0.0002  # a normal admission costs about 0.2 ms of server CPU
    cost = max(0.0, after - before - neighbours_cpu) / repeats
    return Figure(name, len(body), cost, status, max(waits, default=0.0))


def run(repeats: int = 10, cases: list[str] | None = None) -> tuple[list[Figure], list[str]]:
    """Every case (or ``cases``) at 1.5 MB and 3 MiB: first in this process (CPU of the request
    path next to ``json.loads`` of the same body), then against a real ``entourage serve`` (its
    CPU per request, and the slowest normal admission sent alongside); the figures and problems."""
    from soak.runs import server

    figures: list[Figure] = []
    problems: list[str] = []
    names = cases or list(CASES)
    print("  in process: MutateEndpoint.respond (decode, admit, answer) vs json.loads of the same body, best of 5", flush=True)
    for name in names:  # both sizes of a case one after the other, so that both see the same load
        small_cost, large_cost = costs(SMALL, 5, [name])[0], costs(LARGE, 5, [name])[0]
        print(small_cost.line() + "\n" + large_cost.line(), flush=True)
        if small_cost.cpu > CPU_BUDGET:
            problems.append(
                f"{name}: {small_cost.cpu * 1000:.1f} ms of CPU in process at {small_cost.size} bytes (budget {CPU_BUDGET * 1000:.0f} ms)"
            )
        # Next to json.loads of each size (which cancels the load's changes): of an ordinary pod, or
        # of this body where that costs more. Building a million objects costs CPython more per
        # object than building half a million (json.loads grows 1.4x per MB on a list of `{}`):
        # what is judged is the work the request path adds to decoding the body at all.
        growth = _growth(small_cost, large_cost)
        if large_cost.cpu > 0.005 and growth > MAX_GROWTH:
            problems.append(
                f"{name}: 3 MiB costs {growth:.2f}x as much per MB as 1.5 MB in process, next to json.loads (at most {MAX_GROWTH})"
            )
    print("  in process: ValidateEndpoint.respond, each shape as a Deployment's template, best of 5", flush=True)
    for name in names:
        small_cost, large_cost = costs(SMALL, 5, [name], validate=True)[0], costs(LARGE, 5, [name], validate=True)[0]
        print(small_cost.line() + "\n" + large_cost.line(), flush=True)
        if small_cost.cpu > CPU_BUDGET:
            problems.append(
                f"{name}: {small_cost.cpu * 1000:.1f} ms of CPU in /validate at {small_cost.size} bytes (budget {CPU_BUDGET * 1000:.0f} ms)"
            )
        growth = _growth(small_cost, large_cost)
        if large_cost.cpu > 0.005 and growth > MAX_GROWTH:
            problems.append(f"{name}: 3 MiB costs {growth:.2f}x as much per MB as 1.5 MB in /validate")
    print(
        "  real server (TLS, one worker): CPU per request from /proc; per-MB growth from 1.5 MB to 3 MiB; slowest normal admission alongside",
        flush=True,
    )
    with server() as webhook:
        for name in names:
            build = CASES[name]
            small = measure(webhook, name, build(SMALL), repeats)
            large = measure(webhook, name, build(LARGE), repeats)
            figures += [small, large]
            growth = (large.cpu / large.size) / (small.cpu / small.size) if small.cpu >= SERVER_NOISE else 1.0
            print(
                f"  {name:<22} {small.size / 1e6:4.2f} MB {small.cpu * 1000:5.1f} ms  {large.size / 1e6:4.2f} MB {large.cpu * 1000:5.1f} ms"
                f"  per MB x{growth:4.2f}  neighbour max {small.neighbour * 1000:5.1f} ms / {large.neighbour * 1000:5.1f} ms  {small.status}",
                flush=True,
            )
            if small.cpu > CPU_BUDGET:
                problems.append(
                    f"{name}: {small.cpu * 1000:.1f} ms of server CPU at {small.size} bytes (budget {CPU_BUDGET * 1000:.0f} ms)"
                )
            if growth > MAX_GROWTH:
                problems.append(f"{name}: 3 MiB costs {growth:.2f}x as much per MB as 1.5 MB on the server (at most {MAX_GROWTH})")
            if small.neighbour > NEIGHBOUR_BUDGET:
                problems.append(
                    f"{name}: a normal admission waited {small.neighbour * 1000:.0f} ms beside 1.5 MB bodies (budget {NEIGHBOUR_BUDGET * 1000:.0f} ms)"
                )
            if small.status[:1] == "5" or large.status[:1] == "5":
                problems.append(f"{name}: answered {small.status} / {large.status}")
    return figures, problems
