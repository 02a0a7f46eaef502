"""The listener's limits, against the real ``entourage serve`` over real TLS (serving/listener.py)."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

from tests.webhook_process import Webhook, review, running


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


def test_connections_past_the_cap_are_closed_and_established_ones_keep_working(tmp_path: Path) -> None:
    body = json.dumps(review()).encode()
    with running(tmp_path, "--max-connections", "4") as webhook, webhook.client() as established:
        assert established.post("/mutate", content=body, headers={"Content-Type": "application/json"}).status_code == 200
        held = [_tls(webhook) for _ in range(3)]  # now 4 open: the cap
        try:
            extra = _tls(webhook)
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_all(extra, 3.0) == b"", "a connection past the cap is closed without an answer"
            extra.close()
            for _ in range(3):  # the apiserver's connection is not affected
                assert established.post("/mutate", content=body, headers={"Content-Type": "application/json"}).status_code == 200
        finally:
            for connection in held:
                connection.close()
