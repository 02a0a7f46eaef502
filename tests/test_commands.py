"""The commands the engine puts in pods, run for real: busybox for wait-for and tail, socat for the
ambassador. Each test takes the container exactly as `inject_pod` built it and runs its command
and arguments on this machine (`/bin/sh` becomes `busybox sh`, and the agent's own mount of a log
directory becomes a temporary directory; nothing else is changed)."""

from __future__ import annotations

import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from webhook import certs
from webhook.engine.inject import inject_pod
from webhook.engine.settings import Settings
from webhook.errors import PodDenied


def injected_container(settings: Settings, annotations: dict[str, str], name_prefix: str) -> dict[str, Any]:
    pod = {"metadata": {"name": "p", "annotations": annotations}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    spec = inject_pod(pod, settings).pod["spec"]
    return next(c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"].startswith(name_prefix))


def argv(container: dict[str, Any]) -> list[str]:
    command = list(container["command"])
    if command[0] == "/bin/sh":
        command = [shutil.which("busybox") or "busybox", "sh", *command[1:]]
    return [*command, *container.get("args", [])]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_listening(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = self.request.recv(1024)
        self.request.sendall(b"echo:" + data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo_upstream() -> Iterator[int]:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An echo server over TLS with a certificate for localhost; yields (port, its CA file)."""
    bundle = certs.generate("upstream", "test")
    certs.write(bundle, tmp_path / "upstream")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "upstream" / "tls.crt", tmp_path / "upstream" / "tls.key")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                continue
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    conn.sendall(b"echo:" + conn.recv(1024))
            except (OSError, ssl.SSLError):
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], tmp_path / "upstream" / "ca.crt"
    stop.set()
    thread.join()
    listener.close()


def exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(payload)
        return conn.recv(1024)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def start(processes: list[subprocess.Popen[bytes]], command: list[str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    processes.append(process)
    return process


def test_the_ambassador_forwards_bytes_from_its_local_port_to_the_upstream(
    settings: Settings, echo_upstream: int, processes: list[subprocess.Popen[bytes]]
) -> None:
    local = free_port()
    container = injected_container(settings, {"entourage.dev/ambassador": f"{local}=127.0.0.1:{echo_upstream}"}, "entourage-ambassador")
    start(processes, argv(container))
    ready = subprocess.run(container["lifecycle"]["postStart"]["exec"]["command"], timeout=30)
    assert ready.returncode == 0, "the readiness command returns once the port listens"
    assert exchange(local, b"hello") == b"echo:hello"
    assert exchange(local, b"again") == b"echo:again", "fork: every connection is served"


def test_the_ambassador_listens_on_loopback_only(settings: Settings, echo_upstream: int, processes: list[subprocess.Popen[bytes]]) -> None:
    local = free_port()
    container = injected_container(settings, {"entourage.dev/ambassador": f"{local}=127.0.0.1:{echo_upstream}"}, "entourage-ambassador")
    start(processes, argv(container))
    wait_until_listening(local)
    listening = subprocess.run(["ss", "-Htln", f"sport = :{local}"], capture_output=True, text=True, check=True).stdout
    assert [line.split()[3] for line in listening.splitlines()] == [f"127.0.0.1:{local}"]


def test_the_tls_ambassador_verifies_the_upstream_certificate(
    settings: Settings, tls_upstream: tuple[int, Path], processes: list[subprocess.Popen[bytes]]
) -> None:
    port, ca_file = tls_upstream
    local = free_port()
    annotations = {"entourage.dev/ambassador": f"{local}=tls://localhost:{port}", "entourage.dev/ambassador.socat.ca-file": str(ca_file)}
    start(processes, argv(injected_container(settings, annotations, "entourage-ambassador")))
    wait_until_listening(local)
    assert exchange(local, b"secret") == b"echo:secret"


def test_the_tls_ambassador_refuses_an_upstream_whose_certificate_does_not_verify(
    settings: Settings, tls_upstream: tuple[int, Path], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, _ = tls_upstream
    other = certs.generate("someone-else", "test")
    certs.write(other, tmp_path / "other")
    local = free_port()
    annotations = {"entourage.dev/ambassador": f"{local}=tls://localhost:{port}", "entourage.dev/ambassador.socat.ca-file": str(tmp_path / "other" / "ca.crt")}
    ambassador = start(processes, argv(injected_container(settings, annotations, "entourage-ambassador")))
    wait_until_listening(local)
    assert exchange(local, b"secret") == b"", "the connection is closed without a byte from the upstream"
    ambassador.terminate()
    _, stderr = ambassador.communicate(timeout=5)
    assert b"certificate verify failed" in stderr


@pytest.mark.slow
def test_the_wait_for_container_waits_for_a_port_that_opens_after_its_first_attempt(settings: Settings, busybox_env: dict[str, str]) -> None:
    port = free_port()
    container = injected_container(settings, {"entourage.dev/wait-for": f"127.0.0.1:{port}", "entourage.dev/wait-for-timeout": "20s"}, "entourage-wait")
    listener: list[socket.socket] = []
    # Between the first attempt (at 0 s) and the second (after the first 1 s back-off).
    timer = threading.Timer(0.5, lambda: listener.append(socket.create_server(("127.0.0.1", port))))
    timer.start()
    try:
        result = subprocess.run(argv(container), capture_output=True, text=True, timeout=30, env=busybox_env)
    finally:
        timer.join()
        for sock in listener:
            sock.close()
    assert result.returncode == 0, result.stderr
    assert f"waiting for 127.0.0.1:{port} (0s elapsed)" in result.stdout
    assert f"127.0.0.1:{port} is available after" in result.stdout


@pytest.mark.slow
def test_the_wait_for_container_fails_at_its_timeout_saying_what_it_waited_for(settings: Settings, busybox_env: dict[str, str]) -> None:
    port = free_port()
    container = injected_container(settings, {"entourage.dev/wait-for": f"tcp://127.0.0.1:{port}", "entourage.dev/wait-for-timeout": "1s"}, "entourage-wait")
    started = time.monotonic()
    result = subprocess.run(argv(container), capture_output=True, text=True, timeout=30, env=busybox_env)
    assert result.returncode == 1
    assert f"waiting for 127.0.0.1:{port} (tcp)" in result.stderr and result.stderr.startswith("timed out after")
    assert 0.9 < time.monotonic() - started < 6


def test_the_wait_for_container_resolves_a_name(settings: Settings, busybox_env: dict[str, str]) -> None:
    container = injected_container(settings, {"entourage.dev/wait-for": "dns://localhost"}, "entourage-wait")
    result = subprocess.run(argv(container), capture_output=True, text=True, timeout=30, env=busybox_env)
    assert result.returncode == 0 and "localhost is available after 0s" in result.stdout


def test_the_wait_for_container_takes_the_longest_timeout_the_annotation_allows(settings: Settings, busybox_env: dict[str, str]) -> None:
    """The grammar and the script agree on one maximum: 24h is accepted by both, more by neither."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        container = injected_container(settings, {"entourage.dev/wait-for": f"127.0.0.1:{port}", "entourage.dev/wait-for-timeout": "24h"}, "entourage-wait")
        assert container["args"][-1] == "86400"
        result = subprocess.run(argv(container), capture_output=True, text=True, timeout=30, env=busybox_env)
    finally:
        listener.close()
    assert result.returncode == 0, result.stderr
    with pytest.raises(PodDenied, match=r"wait-for-timeout: '999999999h': at most 24h"):
        injected_container(settings, {"entourage.dev/wait-for": "db:5432", "entourage.dev/wait-for-timeout": "999999999h"}, "entourage-wait")


def test_the_tail_agent_prints_lines_from_files_created_after_it_started(settings: Settings, tmp_path: Path, busybox_env: dict[str, str]) -> None:
    logs = tmp_path / "var-log-app"
    logs.mkdir()
    container = injected_container(settings, {"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/var/log/app"}, "entourage-logging")
    command = argv(container)
    assert command[-1] == "/var/run/entourage/logs/var/log/app=/var/log/app"
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/var/run/entourage/logs/var/log/app"]
    agent = subprocess.Popen(
        [*command[:-1], f"{logs}=/var/log/app"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True, env=busybox_env
    )
    try:
        time.sleep(0.5)
        (logs / "app.log").write_text("first line\nsecond line\n")
        lines = _read_lines(agent, 2, timeout=10)
    finally:
        agent.terminate()
        agent.wait(timeout=5)
        assert agent.stdout is not None
        agent.stdout.close()
    assert lines == ["/var/log/app/app.log: first line", "/var/log/app/app.log: second line"]


def _read_lines(process: subprocess.Popen[bytes], count: int, timeout: float) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    result: list[list[str]] = []

    def reader() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.append(raw.decode().rstrip("\n"))
            if len(lines) >= count:
                result.append(lines)
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    assert result, f"only got {lines}"
    return result[0]
