"""Lifecycle of the real ``entourage serve`` process: readiness, SIGTERM drain, config reload, workers."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.webhook_process import containers, review, running

LOGGING = {"entourage.dev/logging": "true"}


def test_healthz_and_readyz_answer_once_certificates_and_configuration_are_loaded(tmp_path: Path) -> None:
    with running(tmp_path) as webhook, webhook.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready", "reason": "ready"}


@pytest.mark.slow
def test_sigterm_turns_unready_keeps_serving_through_the_drain_finishes_in_flight_requests_and_exits_0(tmp_path: Path) -> None:
    body = json.dumps(review(LOGGING)).encode()
    with running(tmp_path, "--drain-seconds", "1.5", "--shutdown-timeout", "5") as webhook:
        signalled = threading.Event()
        results: dict[str, list[object]] = {"keepalive": [], "closing": [], "errors": []}

        def keep_alive_client() -> None:
            # Like the apiserver: one connection reused, requests until the endpoint is gone.
            connection = http.client.HTTPSConnection("localhost", webhook.port, context=webhook.context(), timeout=5)
            try:
                deadline = None
                while deadline is None or time.monotonic() < deadline:
                    if deadline is None and signalled.is_set():
                        deadline = time.monotonic() + 1.0
                    try:
                        connection.request("POST", "/mutate", body, {"Content-Type": "application/json"})
                        response = connection.getresponse()
                        response.read()
                        results["keepalive"].append(response.status)
                        if signalled.is_set():
                            results["closing"].append(response.getheader("connection"))
                    except (OSError, http.client.HTTPException) as error:
                        results["errors"].append(repr(error))
                    time.sleep(0.02)
            finally:
                connection.close()

        def slow_client() -> None:
            # Starts during the drain and is still sending its body when the listener closes.
            try:
                with socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as raw:
                    with webhook.context().wrap_socket(raw, server_hostname="localhost") as conn:
                        head = f"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                        conn.sendall(head.encode() + body[:100])
                        time.sleep(1.6)
                        conn.sendall(body[100:])
                        answer = b""
                        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                            chunk = conn.recv(65536)
                            if not chunk:
                                break
                            answer += chunk
                results["slow"] = [answer.split(b"\r\n", 1)[0], answer]
            except OSError as error:
                results["errors"].append(f"slow: {error!r}")

        keep_alive = threading.Thread(target=keep_alive_client)
        keep_alive.start()
        time.sleep(0.3)
        webhook.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        signalled.set()
        with webhook.client() as client:
            assert webhook.wait_for(lambda: client.get("/readyz").status_code == 503, timeout=1, what="unready")
        time.sleep(max(0.0, sent + 0.5 - time.monotonic()))
        slow = threading.Thread(target=slow_client)
        slow.start()
        time.sleep(max(0.0, sent + 2.0 - time.monotonic()))  # the drain (1.5 s) is over: the listener is closed
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", webhook.port), timeout=2).close()
        keep_alive.join(10)
        slow.join(10)
        assert webhook.process.wait(10) == 0

    assert results["errors"] == []
    assert results["keepalive"] and set(results["keepalive"]) == {200}
    assert "close" in results["closing"], "responses during the drain ask keep-alive clients to reconnect"
    status_line, answer = results["slow"]
    assert status_line == b"HTTP/1.1 200 OK" and b'"allowed":true' in answer  # type: ignore[operator]


def test_a_valid_new_configuration_takes_effect_and_an_invalid_one_is_refused_and_counted(tmp_path: Path) -> None:
    custom = {"example.com/logging": "true"}
    with running(tmp_path) as webhook, webhook.client() as client:
        assert containers(client.post("/mutate", json=review(custom)).json()) == []
        webhook.config.swap({"config.yaml": b"annotationPrefix: example.com\n"})
        webhook.wait_for(
            lambda: containers(client.post("/mutate", json=review(custom)).json()) == ["entourage-logging"], what="the new prefix"
        )
        assert webhook.metrics()["entourage_config_reloads_total"] == 1

        webhook.config.swap({"config.yaml": b"annotationPrefix: example.com\nonError: maybe\n"})
        webhook.wait_for(lambda: webhook.metrics()["entourage_config_reload_failures_total"] == 1, what="the refusal")
        failure = [line for line in webhook.logs() if line["msg"].startswith("the new configuration is invalid")]
        assert len(failure) == 1 and "onError" in failure[0]["error"]
        assert containers(client.post("/mutate", json=review(custom)).json()) == ["entourage-logging"]
        assert client.get("/readyz").status_code == 200
        time.sleep(0.5)  # several polls later the bad file is still counted once
        assert webhook.metrics()["entourage_config_reload_failures_total"] == 1
        assert webhook.process.poll() is None


@pytest.mark.slow
def test_workers_each_serve_with_their_own_state_and_metrics_add_up(tmp_path: Path) -> None:
    with running(tmp_path, "--workers", "2", "--drain-seconds", "0.5") as webhook:
        webhook.wait_for(lambda: len({line["pid"] for line in webhook.logs() if line.get("msg") == "serving"}) == 2, what="two workers")
        for index in range(30):
            with webhook.client() as client:  # a new connection each time: both workers get some
                assert client.post("/mutate", json=review(LOGGING, uid=f"w-{index}")).status_code == 200
        # Two processes loaded certificates and configuration themselves (which one the kernel hands
        # each connection to is its business, so the test does not count admissions per worker).
        # (/readyz answered as soon as the first worker was up: wait for the second.)
        webhook.wait_for(lambda: len({line["pid"] for line in webhook.logs() if line.get("msg") == "serving"}) == 2, what="two workers")
        # Each worker adds its counts to the shared files within a second (metrics.Tally).
        injected = 'entourage_admissions_total{outcome="injected",reason="injected"}'
        webhook.wait_for(lambda: webhook.metrics().get(injected) == 30, what="both workers' counts")
        webhook.config.swap({"config.yaml": b"annotationPrefix: example.com\n"})
        # Each worker reloads on its own; the aggregated counter shows both did.
        webhook.wait_for(lambda: webhook.metrics()["entourage_config_reloads_total"] == 2, what="both workers to reload")
        webhook.process.send_signal(signal.SIGTERM)
        assert webhook.process.wait(15) == 0
