"""The listener's limits, against the real ``entourage serve`` over real TLS (serving/listener.py)."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tests.webhook_process import Webhook, free_port, parse_metrics, review, running
from webhook.serving.listener import ListenerConfig


def _tls(webhook: Webhook) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", webhook.port), timeout=5)
    return webhook.context().wrap_socket(raw, server_hostname="localhost")


def _read_all(connection: ssl.SSLSocket, deadline: float = 5.0) -> bytes:
    connection.settimeout(deadline)
    data = b""
    try:
        while chunk := connection.recv(65536):
            data += chunk
    except (ssl.SSLError, ConnectionResetError, TimeoutError, OSError):
        pass
    return data


def _post(webhook: Webhook) -> int:
    body = json.dumps(review()).encode()
    with webhook.client() as client:
        return client.post("/mutate", content=body, headers={"Content-Type": "application/json"}).status_code


def test_a_request_head_over_the_limit_gets_431_and_the_connection_closed(tmp_path: Path) -> None:
    with running(tmp_path, "--max-header-bytes", "8192") as webhook:
        with _tls(webhook) as connection:
            connection.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\n")
            for _ in range(64):  # 64 KiB of headers, in pieces, as a trickling attacker sends them
                try:
                    connection.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
                except (ssl.SSLError, OSError):
                    break
            answer = _read_all(connection)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert b"RequestHeaderFieldsTooLarge" in answer
        assert _post(webhook) == 200  # and the server goes on


def test_a_head_that_does_not_finish_in_time_closes_the_connection(tmp_path: Path) -> None:
    with running(tmp_path, "--head-timeout", "1") as webhook:
        started = time.monotonic()
        with _tls(webhook) as silent, _tls(webhook) as trickling:
            trickling.sendall(b"POST /mutate HTTP/1.1\r\n")
            assert _read_all(silent, 5.0) == b"" and _read_all(trickling, 5.0) == b""
        assert time.monotonic() - started < 4.0, "closed by the 1 s head deadline, not by the read timeout"
        assert _post(webhook) == 200


def test_a_tls_handshake_that_never_finishes_is_closed_by_the_handshake_deadline(tmp_path: Path) -> None:
    with running(tmp_path, "--tls-handshake-timeout", "1") as webhook:
        started = time.monotonic()
        with (
            socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as silent,
            socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as half,
        ):
            half.sendall(bytes.fromhex("16030100f4010000f00303") + b"\0" * 16)  # the first bytes of a ClientHello, then nothing
            for raw in (silent, half):
                raw.settimeout(5)
                assert raw.recv(65536) == b"", "closed without a byte"
        assert time.monotonic() - started < 4.0, "closed by the 1 s handshake deadline (uvloop's own is 60 s)"
        assert _post(webhook) == 200
        metrics = webhook.metrics()
        assert metrics['entourage_connections_closed_total{reason="tls_handshake"}'] >= 2
        assert metrics["entourage_connections_open"] == 1, "the handshakes given up on no longer count: only the scrape's own"


def test_limit_closes_are_counted_by_reason(tmp_path: Path) -> None:
    with running(tmp_path, "--max-header-bytes", "4096", "--head-timeout", "1") as webhook:
        with _tls(webhook) as big:
            big.sendall(b"GET /healthz HTTP/1.1\r\nX-Filler: " + b"a" * 8192 + b"\r\n\r\n")
            assert _read_all(big).startswith(b"HTTP/1.1 431 ")
        with _tls(webhook) as slow:
            assert _read_all(slow) == b""
        metrics = webhook.metrics()
        assert metrics['entourage_connections_closed_total{reason="header_too_large"}'] == 1
        assert metrics['entourage_connections_closed_total{reason="head_timeout"}'] == 1


def test_past_the_connection_cap_new_connections_wait_their_turn_and_established_ones_keep_working(tmp_path: Path) -> None:
    body = json.dumps(review()).encode()
    headers = {"Content-Type": "application/json"}
    with running(tmp_path, "--max-connections", "4") as webhook, webhook.client() as established:
        assert established.post("/mutate", content=body, headers=headers).status_code == 200
        held = [_tls(webhook) for _ in range(2)]
        half_open = socket.create_connection(("127.0.0.1", webhook.port), timeout=5)  # 4 now: one still in its handshake
        try:
            time.sleep(0.2)  # accepted by the server, so it counts
            with socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw:  # the kernel's backlog takes it
                raw.settimeout(1.0)
                with pytest.raises((TimeoutError, ssl.SSLError)):
                    webhook.context().wrap_socket(raw, server_hostname="localhost")  # not accepted: no handshake yet
            for _ in range(3):  # the established (apiserver's) connection is not affected
                assert established.post("/mutate", content=body, headers=headers).status_code == 200
            held.pop().close()  # a place frees up: the next connection is accepted at once
            with webhook.client() as fresh:
                assert fresh.post("/mutate", content=body, headers=headers).status_code == 200
        finally:
            half_open.close()
            for connection in held:
                connection.close()
        assert parse_metrics(established.get("/metrics").text)["entourage_accept_pauses_total"] >= 1


def test_with_a_metrics_port_metrics_are_served_there_alone_with_health_and_never_admission(tmp_path: Path) -> None:
    metrics_port = free_port()
    body = json.dumps(review()).encode()
    headers = {"Content-Type": "application/json"}
    with running(tmp_path, "--metrics-port", str(metrics_port)) as webhook:
        scrape = httpx.Client(base_url=f"https://localhost:{metrics_port}", verify=webhook.context(), timeout=5)
        with scrape, webhook.client() as client:
            assert client.post("/mutate", content=body, headers=headers).status_code == 200
            assert scrape.get("/metrics").status_code == 200 and "entourage_admissions_total" in scrape.get("/metrics").text
            assert scrape.get("/healthz").status_code == 200 and scrape.get("/readyz").status_code == 200
            assert scrape.post("/mutate", content=body, headers=headers).status_code == 404
            assert scrape.get("/openapi.json").status_code == 404
            assert client.get("/metrics").status_code == 404
            assert client.get("/healthz").status_code == 200


def test_the_listener_runs_on_uvloop_and_httptools() -> None:
    config = ListenerConfig("webhook.serving.app:app_factory", max_connections=8, handshake_timeout=5.0, factory=True)
    loop = config.get_loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    assert issubclass(config.http, HttpToolsProtocol)  # type: ignore[arg-type]


def test_the_soak_part_floods_a_real_server_with_10_mib_headers_and_finds_nothing_wrong() -> None:
    from soak import listener

    (result,) = listener.floods(["huge-headers"])
    assert result.problems == [], result.report()
    assert result.handshaken == 50 and result.probe.established_ok >= 1
