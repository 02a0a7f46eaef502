"""Faults injected into a real ``entourage serve`` while clients keep sending checked admissions.

Each scenario runs its own server on 127.0.0.1, starts the load, injects the fault, keeps the load
going, and returns what happened; ``problems`` is empty when the webhook came through. The load
is the soak's (``client``): every answer checked, every sent request accounted for.

- ``certificate``: the serving certificate rotated by kubelet's atomic ``..data`` symlink swap
  (clients trust the old and the new CA, as during a rollover; half of them open a new TLS
  connection for every request, so the new certificate is really used).
- ``config``: the configuration file replaced by a broken one (refused, counted, the previous
  settings keep serving), then by a good one that adds an adapter profile (taken; a probe pod
  that asks for the new adapter gets it). The mix does not use the new profile, so every answer
  must stay exactly what it was.
- ``sigterm``: see ``sigterm`` for the precise accounting.
- ``worker_kill``: ``--workers 2``, the worker holding the most client connections SIGKILLed;
  see ``worker_kill``.
- ``api_outage``: with ``--kubeconfig`` to the local fake apiserver, the API stopped (listener
  closed, watches cut) for a few seconds and started again; pods in a namespace whose
  annotations ask for logging keep getting it from the last known namespace defaults; after the
  API comes back, a namespace created then is seen (the watch reconnected).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from soak import mix, procs
from soak.client import Checker, Stats, Target, load, read_response, request_bytes, run
from soak.runs import server, standard_cases, target
from tests import webhook_process
from tests.fake_apiserver import FakeApiServer
from webhook import certs
from webhook.engine.settings import load_settings


@dataclass
class FaultResult:
    name: str
    stats: Stats
    details: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check_load(self, *, accounted: int = 0, allow_connect_errors: bool = False) -> None:
        """Every sent request answered correctly, except ``accounted`` failures the scenario has
        already attributed (requests in flight on a SIGKILLed worker)."""
        stats = self.stats
        if stats.sent == 0:
            self.problems.append("no request was sent")
        if stats.answered + stats.failed != stats.sent:
            self.problems.append(f"{stats.sent} sent but {stats.answered} answered and {stats.failed} failed")
        if stats.failed > accounted or stats.wrong or stats.status.keys() - {200}:
            self.problems.append(
                f"{stats.failed} failed, {stats.wrong} wrong, statuses {dict(stats.status)}: {stats.failures[:5]} {stats.wrongs[:5]}"
            )
        if stats.connect_errors and not allow_connect_errors:
            self.problems.append(f"{stats.connect_errors} connection failures: {stats.connect_failures[:5]}")

    def report(self) -> str:
        verdict = "PASS" if not self.problems else "FAIL"
        lines = [f"  [{verdict}] {self.name}: {self.stats.summary()}"]
        lines += [f"      {line}" for line in self.details]
        lines += [f"      PROBLEM: {line}" for line in self.problems]
        return "\n".join(lines)


async def _until(predicate: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    """Poll a blocking predicate in a thread (the clients keep running meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = await asyncio.to_thread(predicate)
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        await asyncio.sleep(step)
    return None


def _get(webhook: webhook_process.Webhook, path: str) -> int:
    with webhook.client(timeout=2) as client:
        return client.get(path).status_code


def _metric(webhook: webhook_process.Webhook, name: str) -> float:
    return webhook.metrics().get(name, 0.0)


async def _mixed_load(
    tgt: Target, cases: list[mix.Case], stats: Stats, *, duration: float, keepalive: int = 6, fresh: int = 2, **options: Any
) -> None:
    checker = Checker(validate_every=0)
    await asyncio.gather(
        load(tgt, cases, concurrency=keepalive, duration=duration, stats=stats, checker=checker, **options),
        load(tgt, cases, concurrency=fresh, duration=duration, stats=stats, checker=checker, fresh=True, **options),
    )


# -- the certificate ---------------------------------------------------------------------------


def certificate(seconds: float = 6.0) -> FaultResult:
    cases = standard_cases(validate=False)
    with server() as webhook:
        rotated = certs.generate("entourage", "entourage")
        webhook.trusted.append(rotated.ca_pem)
        serial = x509.load_pem_x509_certificate(rotated.cert_pem).serial_number
        result = FaultResult("certificate rotated (kubelet ..data swap)", Stats())

        async def scenario() -> None:
            task = asyncio.create_task(_mixed_load(target(webhook), cases, result.stats, duration=seconds, keepalive=4, fresh=4))
            await asyncio.sleep(seconds / 4)
            swapped = time.monotonic()
            webhook.tls.swap(webhook_process.tls_files(rotated))
            served = await _until(lambda: webhook.serial() == serial, timeout=seconds / 2)
            if served:
                result.details.append(f"new certificate served {time.monotonic() - swapped:.2f}s after the swap")
            else:
                result.problems.append("the new certificate was not served")
            await task

        run(scenario())
        reloads = _metric(webhook, "entourage_certificate_reloads_total")
        result.details.append(f"entourage_certificate_reloads_total = {reloads:g}")
        if reloads != 1:
            result.problems.append(f"expected 1 certificate reload, metrics say {reloads:g}")
        result.check_load()
        return result


# -- the configuration -------------------------------------------------------------------------

GOOD_CONFIG = """\
profiles:
  adapter:
    redis-prometheus:
      description: Redis metrics for Prometheus.
      image: oliver006/redis_exporter:v1.67.0
      command: ["/redis_exporter"]
      args: ["--redis.addr=redis://127.0.0.1:{redis-port}", "--web.listen-address=:{port}"]
      ports: [{name: metrics, containerPort: "{port}"}]
      params:
        redis-port: {type: port, default: "6379", description: the Redis port in the pod}
        port: {type: port, default: "9121", description: port of /metrics}
      resources:
        requests: {cpu: 10m, memory: 16Mi}
        limits: {cpu: 100m, memory: 64Mi}
"""
BROKEN_CONFIG = "onError: maybe\nprofiles: [not, a, map\n"


def config(seconds: float = 6.0) -> FaultResult:
    cases = standard_cases(validate=False)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:  # the new profile changes no answer of the mix
        file.write(GOOD_CONFIG)
        file.flush()
        mix.prepare(mix.cases(), load_settings(file.name, environ={}), validate=False)
    probe = mix.reference_review()
    probe["request"]["object"]["metadata"]["annotations"]["entourage.dev/adapter"] = "redis-prometheus"

    with server() as webhook:
        result = FaultResult("configuration replaced by a broken file, then a good one", Stats())

        def probe_answer() -> str:
            with webhook.client() as client:
                answer = client.post("/mutate", json=probe).json()["response"]
            return str(answer.get("auditAnnotations", {}).get("injected") or answer.get("status", {}).get("message", ""))

        async def scenario() -> None:
            task = asyncio.create_task(_mixed_load(target(webhook), cases, result.stats, duration=seconds))
            await asyncio.sleep(seconds / 6)
            before = await asyncio.to_thread(probe_answer)
            webhook.config.swap({"config.yaml": BROKEN_CONFIG.encode()})
            refused = await _until(lambda: _metric(webhook, "entourage_config_reload_failures_total") >= 1, timeout=seconds / 3)
            result.details.append(f"broken file: {'refused and counted' if refused else 'NOT refused'}; probe before: {before[:80]!r}")
            if not refused:
                result.problems.append("the broken configuration was not counted as a reload failure")
            ready = await asyncio.to_thread(_get, webhook, "/readyz")
            if ready != 200:
                result.problems.append(f"/readyz answered {ready} with a broken configuration file (the previous one is still serving)")
            await asyncio.sleep(seconds / 6)
            webhook.config.swap({"config.yaml": GOOD_CONFIG.encode()})
            taken = await _until(lambda: probe_answer() == "entourage-adapter-redis-prometheus", timeout=seconds / 3)
            result.details.append(f"good file: {'taken (probe pod gets entourage-adapter-redis-prometheus)' if taken else 'NOT taken'}")
            if not taken:
                result.problems.append("the good configuration did not take effect")
            await task

        run(scenario())
        metrics = webhook.metrics()
        result.details.append(
            f"entourage_config_reloads_total = {metrics.get('entourage_config_reloads_total', 0):g}, "
            f"entourage_config_reload_failures_total = {metrics.get('entourage_config_reload_failures_total', 0):g}"
        )
        if webhook.process.poll() is not None:
            result.problems.append("the server exited")
        result.check_load()
        return result


# -- SIGTERM -----------------------------------------------------------------------------------


def sigterm(*, drain: float = 2.0, propagation: float = 1.0, slow: int = 3) -> FaultResult:
    """SIGTERM at t0; the server drains for ``drain`` seconds, then closes its listener.

    Accounting, modelled on the apiserver: the endpoint of an unready pod disappears from its
    endpoint list ``propagation`` seconds after t0 (< ``drain``: the drain window exists to cover
    exactly this). Until then clients send and reconnect freely; after it they open no new
    connection, and a connection the server answered with ``Connection: close`` (every answer
    during the drain) is not reused. Every request written — before t0, during the drain, and
    ``slow`` requests whose bodies are still arriving when the listener closes (in flight) — must
    get a complete, correct answer. A connection attempt after t0 + ``drain`` must be refused
    (the listener is closed), and the process must exit 0.
    """
    cases = standard_cases(validate=False)
    with server("--drain-seconds", str(drain), "--shutdown-timeout", "5") as webhook:
        result = FaultResult(f"SIGTERM (drain {drain:g}s, endpoint removal after {propagation:g}s)", Stats())
        tgt = target(webhook)
        t0: list[float] = []

        def may_connect() -> bool:
            return not t0 or time.monotonic() < t0[0] + propagation

        async def slow_request(index: int) -> None:
            case = cases[index % len(cases)]
            uid = f"slow-{index}"
            data = request_bytes(case.body(uid))
            stats = result.stats
            try:
                reader, writer = await asyncio.open_connection(tgt.host, tgt.port, ssl=tgt.context, server_hostname=tgt.server_name)
                stats.connects += 1
                writer.write(data[: len(data) // 2])
                stats.sent += 1
                await asyncio.sleep(max(0.0, t0[0] + drain + 0.5 - time.monotonic()))  # past the listener's close
                writer.write(data[len(data) // 2 :])
                response = await asyncio.wait_for(read_response(reader), 10)
                writer.close()
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError) as error:
                stats.failed += 1
                stats.failures.append(f"{uid} in flight at the listener's close: no answer: {error!r}")
                return
            stats.answered += 1
            stats.status[response.status] += 1
            problem = Checker(0).check(case, uid, response.status, response.body)
            if problem:
                stats.wrong += 1
                stats.wrongs.append(f"{uid} in flight: {problem}")

        async def scenario() -> None:
            task = asyncio.create_task(_mixed_load(tgt, cases, result.stats, duration=drain + 6, may_connect=may_connect))
            await asyncio.sleep(1.5)
            webhook.process.send_signal(signal.SIGTERM)
            t0.append(time.monotonic())
            unready = await _until(lambda: _get(webhook, "/readyz") == 503, timeout=drain / 2, step=0.05)
            if not unready:
                result.problems.append("/readyz did not turn 503 after SIGTERM")
            else:
                result.details.append(f"/readyz 503 {time.monotonic() - t0[0]:.2f}s after SIGTERM")
            await asyncio.sleep(max(0.0, t0[0] + propagation - 0.2 - time.monotonic()))
            slow_tasks = [asyncio.create_task(slow_request(index)) for index in range(slow)]
            await asyncio.sleep(max(0.0, t0[0] + drain + 0.3 - time.monotonic()))
            try:
                socket.create_connection(("127.0.0.1", webhook.port), timeout=1).close()
                result.problems.append(f"the listener still accepts connections {drain + 0.3:g}s after SIGTERM")
            except ConnectionRefusedError:
                result.details.append(f"listener closed {drain:g}s after SIGTERM (connection refused at +{drain + 0.3:g}s)")
            await asyncio.gather(*slow_tasks)
            await task

        run(scenario())
        code = webhook.process.wait(15)
        stopped = time.monotonic() - t0[0]
        result.details.append(
            f"exit status {code} {stopped:.1f}s after SIGTERM; {slow} slow requests in flight at the close: {slow - sum('in flight' in f for f in result.stats.failures)} answered"
        )
        result.details.append(f"answers with Connection: close during the drain: {result.stats.server_closes}")
        if code != 0:
            result.problems.append(f"exit status {code}")
        if result.stats.server_closes == 0:
            result.problems.append("no answer during the drain asked the client to reconnect")
        result.check_load()
        return result


# -- a worker SIGKILLed ------------------------------------------------------------------------


def _workers(webhook: webhook_process.Webhook) -> list[int]:
    found = []
    for pid in procs.children(webhook.process.pid):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except FileNotFoundError:
            pass
    return found


def worker_kill(seconds: float = 10.0) -> FaultResult:
    """``--workers 2``; the worker that holds the most client connections is SIGKILLed.

    Accounting: a request in flight on a connection of the killed worker dies with it (SIGKILL
    leaves nothing to drain; the apiserver sees a reset and applies the webhook's failurePolicy).
    Those — at most one per connection the victim held, each within a second of the kill — are
    reported as ``lost with the killed worker``; any other failure is a failure. The survivor must
    keep serving, the supervisor must start a replacement, and the replacement must serve.
    """
    cases = standard_cases(validate=False)
    with server("--workers", "2", "--drain-seconds", "0.5") as webhook:
        result = FaultResult("--workers 2, one worker SIGKILLed", Stats())
        tgt = target(webhook)
        workers = webhook.wait_for(lambda: (found := _workers(webhook)) and len(found) == 2 and found, timeout=20, what="two workers")
        result.details.append(f"workers before: {workers}")
        killed: dict[str, Any] = {}

        def probe_owner() -> int | None:
            """A new connection answered correctly: which worker holds it?"""
            raw = socket.create_connection(("127.0.0.1", webhook.port), timeout=5)
            with tgt.context.wrap_socket(raw, server_hostname="localhost") as conn:
                case = cases[0]
                conn.sendall(request_bytes(case.body("probe")))
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                return procs.socket_owners(webhook.port, _workers(webhook)).get(conn.getsockname()[1])

        async def scenario() -> None:
            task = asyncio.create_task(_mixed_load(tgt, cases, result.stats, duration=seconds, keepalive=8, fresh=2))
            await asyncio.sleep(seconds / 5)
            owners = procs.socket_owners(webhook.port, workers)
            per_worker = {pid: sum(1 for owner in owners.values() if owner == pid) for pid in workers}
            victim = max(per_worker, key=lambda pid: per_worker[pid])
            killed.update(
                pid=victim, ports={port for port, owner in owners.items() if owner == victim}, at=time.monotonic(), per_worker=per_worker
            )
            os.kill(victim, signal.SIGKILL)
            result.details.append(f"client connections per worker at the kill: {per_worker}; SIGKILL to {victim}")
            replaced = await _until(lambda: [pid for pid in _workers(webhook) if pid not in workers], timeout=seconds / 2)
            if not replaced:
                result.problems.append(f"the killed worker {victim} was not replaced within {seconds / 2:g}s; workers: {_workers(webhook)}")
            else:
                killed["replacement"] = replaced[0]
                result.details.append(f"replacement worker {replaced[0]} started {time.monotonic() - killed['at']:.2f}s after the kill")
                serving = await _until(lambda: probe_owner() == replaced[0], timeout=seconds / 2, step=0.02)
                result.details.append(f"the replacement {'serves new connections' if serving else 'was NOT seen serving'}")
                if not serving:
                    result.problems.append("the replacement worker never served a probe connection")
            await task

        run(scenario())
        stats = result.stats
        lost = [failure for port, failures in stats.lost.items() if port in killed.get("ports", ()) for failure in failures]
        elsewhere = [failure for port, failures in stats.lost.items() if port not in killed.get("ports", ()) for failure in failures]
        result.details.append(
            f"lost with the killed worker: {len(lost)} request(s) in flight on its {len(killed.get('ports', ()))} connection(s); failures elsewhere: {len(elsewhere)}"
        )
        if len(lost) > len(killed.get("ports", ())):
            result.problems.append(f"more requests lost than connections the victim held: {lost[:5]}")
        if elsewhere:
            result.problems.append(f"failures on connections of the surviving worker(s): {elsewhere[:5]}")
        metrics = _get(webhook, "/metrics")
        result.details.append(f"/metrics after the kill: HTTP {metrics}")
        if metrics != 200:
            result.problems.append(f"/metrics answers {metrics} after a worker was killed")
        if webhook.process.poll() is not None:
            result.problems.append("the supervisor exited")
        result.check_load(accounted=len(lost))
        webhook.process.send_signal(signal.SIGTERM)
        code = webhook.process.wait(15)
        result.details.append(f"supervisor exit status after SIGTERM: {code}")
        return result


# -- the Kubernetes API goes away and comes back -----------------------------------------------

NAMESPACES = {"shop": {"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/srv/logs"}, "plain": {}}


def api_outage(seconds: float = 9.0, outage: float = 3.0) -> FaultResult:
    api = FakeApiServer().start()
    api.set_nodes("v1.30.2")
    for name, namespace_annotations in NAMESPACES.items():
        api.put_namespace(name, namespace_annotations)
    settings_text = 'nativeSidecars: "false"\n'
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        file.write(settings_text)
        file.flush()
        settings = load_settings(file.name, environ={})
    cases = mix.weighted(mix.prepare(mix.namespace_cases(), settings, namespaces=NAMESPACES, validate=False))
    try:
        with tempfile.TemporaryDirectory() as directory:
            kubeconfig = api.kubeconfig(Path(directory) / "kubeconfig")
            with server("--kubeconfig", str(kubeconfig), config=settings_text) as webhook:
                result = FaultResult(f"Kubernetes API away for {outage:g}s and back", Stats())

                def probe(namespace: str) -> str:
                    document = webhook_process.review(namespace=namespace, uid="probe")
                    with webhook.client() as client:
                        answer = client.post("/mutate", json=document).json()["response"]
                    return str(answer.get("auditAnnotations", {}).get("injected", ""))

                async def scenario() -> None:
                    task = asyncio.create_task(_mixed_load(target(webhook), cases, result.stats, duration=seconds))
                    await asyncio.sleep(seconds / 6)
                    errors = 'entourage_kube_api_errors_total{operation="watch_namespaces"}'
                    before = await asyncio.to_thread(_metric, webhook, errors)
                    api.stop()
                    stopped = time.monotonic()
                    noticed = await _until(lambda: _metric(webhook, errors) > before, timeout=outage)
                    result.details.append(
                        f"API stopped; the webhook {'noticed (watch errors counted)' if noticed else 'did not count a watch error'} within {time.monotonic() - stopped:.1f}s"
                    )
                    await asyncio.sleep(max(0.0, stopped + outage - time.monotonic()))
                    api.start(api.port)
                    api.put_namespace("fresh", {"entourage.dev/logging": "true"})
                    back = time.monotonic()
                    seen = await _until(lambda: probe("fresh") == "entourage-logging", timeout=seconds / 2, step=0.2)
                    if seen:
                        result.details.append(
                            f"API back; a namespace created after the outage applied {time.monotonic() - back:.1f}s later"
                        )
                    else:
                        result.problems.append(
                            "a namespace created after the API came back was never applied (the watch did not reconnect)"
                        )
                    await task

                run(scenario())
                if webhook.process.poll() is not None:
                    result.problems.append("the server exited")
                result.check_load()
                return result
    finally:
        api.stop()


ALL: dict[str, Callable[[], FaultResult]] = {
    "certificate": certificate,
    "config": config,
    "sigterm": sigterm,
    "worker-kill": worker_kill,
    "api-outage": api_outage,
}
