"""`entourage serve --host ::` (the default, and the chart's): one socket for IPv6 and IPv4.

A plain `::` bind through asyncio sets IPV6_V6ONLY and refuses IPv4 clients; `0.0.0.0` refuses
IPv6 ones. Clusters are IPv4, IPv6 or dual-stack, so the webhook must answer on both families.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests import webhook_process
from webhook.serving.run import dual_stack_socket


def healthz_over(webhook: webhook_process.Webhook, address: str) -> str:
    """GET /healthz over TLS to ``address`` (an IPv4 or IPv6 literal); the status line."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as raw:
        raw.settimeout(10)
        raw.connect((address, webhook.port))
        with webhook.context().wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            return conn.recv(4096).split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_default_host_answers_ipv4_and_ipv6_clients(tmp_path: Path, workers: str) -> None:
    with webhook_process.running(tmp_path, "--host", "::", "--workers", workers) as webhook:
        assert healthz_over(webhook, "127.0.0.1") == "HTTP/1.1 200 OK"
        assert healthz_over(webhook, "::1") == "HTTP/1.1 200 OK"


def test_the_dual_stack_socket_turns_ipv6_only_off() -> None:
    with dual_stack_socket(0) as sock:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        assert sock.getsockname()[0] == "::"


def test_the_cli_listens_dual_stack_by_default() -> None:
    from webhook.cli import _parser

    assert _parser().parse_args(["serve"]).host == "::"
