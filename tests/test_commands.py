"""The commands the engine puts in pods, run for real: busybox (and curl, for wait-for) and socat.
Each test takes the container exactly as `inject_pod` built it and runs its command and arguments
on this machine (`/bin/sh` becomes `busybox sh`, the agent's own mount of a log directory becomes a
temporary directory, and so does the wait-for CA bundle's mount; nothing else is changed)."""

from __future__ import annotations

import contextlib
import http.server
import re
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
from webhook.engine.profiles import waitfor
from webhook.engine.settings import Settings, build_settings
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
    annotations = {
        "entourage.dev/ambassador": f"{local}=tls://localhost:{port}",
        "entourage.dev/ambassador.socat.ca-file": str(tmp_path / "other" / "ca.crt"),
    }
    ambassador = start(processes, argv(injected_container(settings, annotations, "entourage-ambassador")))
    wait_until_listening(local)
    assert exchange(local, b"secret") == b"", "the connection is closed without a byte from the upstream"
    ambassador.terminate()
    _, stderr = ambassador.communicate(timeout=5)
    assert b"certificate verify failed" in stderr


@pytest.mark.slow
def test_the_wait_for_container_waits_for_a_port_that_opens_after_its_first_attempt(settings: Settings, curl_env: dict[str, str]) -> None:
    port = free_port()
    container = injected_container(
        settings, {"entourage.dev/wait-for": f"127.0.0.1:{port}", "entourage.dev/wait-for-timeout": "20s"}, "entourage-wait"
    )
    listener: list[socket.socket] = []
    # Between the first attempt (at 0 s) and the second (after the first 1 s back-off).
    timer = threading.Timer(0.5, lambda: listener.append(socket.create_server(("127.0.0.1", port))))
    timer.start()
    try:
        result = subprocess.run(argv(container), capture_output=True, text=True, timeout=30, env=curl_env)
    finally:
        timer.join()
        for sock in listener:
            sock.close()
    assert result.returncode == 0, result.stderr
    assert re.search(rf"waiting for 127\.0\.0\.1:{port} \([01]s elapsed\)", result.stdout), result.stdout  # whole seconds of `date +%s`
    assert f"127.0.0.1:{port} is available after" in result.stdout


@pytest.mark.slow
def test_the_wait_for_container_fails_at_its_timeout_saying_what_it_waited_for(settings: Settings, curl_env: dict[str, str]) -> None:
    port = free_port()
    container = injected_container(
        settings, {"entourage.dev/wait-for": f"tcp://127.0.0.1:{port}", "entourage.dev/wait-for-timeout": "1s"}, "entourage-wait"
    )
    started = time.monotonic()
    result = subprocess.run(argv(container), capture_output=True, text=True, timeout=30, env=curl_env)
    assert result.returncode == 1
    assert f"waiting for 127.0.0.1:{port} (tcp)" in result.stderr and result.stderr.startswith("timed out after")
    assert 0.9 < time.monotonic() - started < 6


def test_the_wait_for_container_resolves_a_name(settings: Settings, curl_env: dict[str, str]) -> None:
    container = injected_container(settings, {"entourage.dev/wait-for": "dns://localhost"}, "entourage-wait")
    result = subprocess.run(argv(container), capture_output=True, text=True, timeout=30, env=curl_env)
    assert result.returncode == 0 and re.search(r"localhost is available after [01]s", result.stdout), result.stdout


def test_the_wait_for_container_takes_the_longest_timeout_the_annotation_allows(settings: Settings, curl_env: dict[str, str]) -> None:
    """The grammar and the script agree on one maximum: 24h is accepted by both, more by neither."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        container = injected_container(
            settings, {"entourage.dev/wait-for": f"127.0.0.1:{port}", "entourage.dev/wait-for-timeout": "24h"}, "entourage-wait"
        )
        assert container["args"][2] == "86400"
        result = subprocess.run(argv(container), capture_output=True, text=True, timeout=30, env=curl_env)
    finally:
        listener.close()
    assert result.returncode == 0, result.stderr
    with pytest.raises(PodDenied, match=r"wait-for-timeout: '999999999h': at most 24h"):
        injected_container(
            settings, {"entourage.dev/wait-for": "db:5432", "entourage.dev/wait-for-timeout": "999999999h"}, "entourage-wait"
        )


# --------------------------------------------------------------------------------------------
# wait-for over TLS: the pod as injected, the command as generated, a real HTTPS server


class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that refuses the certificate drops the connection: expected here


@contextlib.contextmanager
def https_server(cert_dir: Path, *, host: str = "127.0.0.1", tls13_only: bool = False) -> Iterator[tuple[int, list[str | None]]]:
    """An HTTPS server answering 200 with the certificate in ``cert_dir`` at OpenSSL's default
    security level; yields its port and the SNI names clients sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_dir / "tls.crt", cert_dir / "tls.key")
    if tls13_only:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    server = _TLSServer((host, 0), _Ready)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], names
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA and a server certificate it signed, for localhost and 127.0.0.1 (ca.crt, tls.crt, tls.key)."""
    directory = tmp_path_factory.mktemp("test-ca")
    certs.write(certs.generate("upstream", "test"), directory)
    return directory


def ca_settings(**wait_profile: Any) -> Settings:
    """Built-ins, with the curl profile verifying https targets with the cluster's CA ConfigMap."""
    return build_settings({"profiles": {"waitFor": {"curl": {"caBundle": {"configMap": "kube-root-ca.crt"}, **wait_profile}}}})


def run_wait(
    settings: Settings, annotations: dict[str, str], env: dict[str, str], ca_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Inject, then run the wait-for container's command; the CA bundle's mount becomes ``ca_file``."""
    pod = {"metadata": {"name": "p", "annotations": annotations}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    spec = inject_pod(pod, settings).pod["spec"]
    [container] = [c for c in spec["initContainers"] if c["name"].startswith("entourage-wait")]
    mounted = f"{waitfor.CA_DIR}/{waitfor.CA_FILE}"
    if mounted in container["args"]:
        assert ca_file is not None, "the container reads the mounted CA bundle"
        [mount] = container["volumeMounts"]
        assert mount == {"name": "entourage-wait-for-ca", "mountPath": waitfor.CA_DIR, "readOnly": True}
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["configMap"] == {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}], "defaultMode": 0o444}
    command = [str(ca_file) if arg == mounted else arg for arg in argv(container)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)


def test_an_https_wait_passes_when_the_certificate_verifies_with_the_profiles_ca_and_sends_sni(
    test_ca: Path, curl_env: dict[str, str]
) -> None:
    with https_server(test_ca) as (port, names):
        result = run_wait(ca_settings(), {"entourage.dev/wait-for": f"https://localhost:{port}/ready"}, curl_env, test_ca / "ca.crt")
    assert result.returncode == 0, result.stderr
    assert re.search(rf"https://localhost:{port}/ready is available after [01]s", result.stdout), result.stdout
    assert names and set(names) == {"localhost"}, "the host name goes out as SNI"


def test_an_https_wait_does_not_pass_without_the_ca_and_says_why(test_ca: Path, curl_env: dict[str, str], settings: Settings) -> None:
    annotations = {"entourage.dev/wait-for": "https://localhost:{port}/ready", "entourage.dev/wait-for-timeout": "2s"}
    with https_server(test_ca) as (port, _):
        annotations["entourage.dev/wait-for"] = annotations["entourage.dev/wait-for"].format(port=port)
        result = run_wait(settings, annotations, curl_env)  # the image's own roots: the test CA is not among them
    assert result.returncode == 1
    # whole seconds from `date +%s`: the deadline's attempt may end a second past it on a busy machine
    assert re.search(rf"timed out after [23]s waiting for https://localhost:{port}/ready \(https\)", result.stderr), result.stderr
    assert "last error: SSL certificate problem" in result.stderr, result.stderr


def test_an_https_wait_does_not_pass_for_a_certificate_of_another_name(test_ca: Path, curl_env: dict[str, str]) -> None:
    """The certificate names localhost and 127.0.0.1; the server is reached as 127.0.0.2."""
    annotations = {"entourage.dev/wait-for-timeout": "2s"}
    with https_server(test_ca, host="127.0.0.2") as (port, _):
        annotations["entourage.dev/wait-for"] = f"https://127.0.0.2:{port}/ready"
        result = run_wait(ca_settings(), annotations, curl_env, test_ca / "ca.crt")
    assert result.returncode == 1
    assert "last error: SSL: no alternative certificate subject name matches target host name '127.0.0.2'" in result.stderr, result.stderr


def test_an_https_wait_passes_with_a_server_that_speaks_only_tls_1_3(test_ca: Path, curl_env: dict[str, str]) -> None:
    with https_server(test_ca, tls13_only=True) as (port, _):
        result = run_wait(ca_settings(), {"entourage.dev/wait-for": f"https://localhost:{port}/ready"}, curl_env, test_ca / "ca.crt")
    assert result.returncode == 0, result.stderr


def test_the_insecure_parameter_passes_without_verification_and_says_so(
    test_ca: Path, curl_env: dict[str, str], settings: Settings
) -> None:
    annotations = {"entourage.dev/wait-for.curl.insecure": "true"}
    with https_server(test_ca) as (port, _):
        annotations["entourage.dev/wait-for"] = f"https://localhost:{port}/ready"
        result = run_wait(settings, annotations, curl_env)
    assert result.returncode == 0, result.stderr
    assert f"warning: https://localhost:{port}/ready: the server certificate is NOT verified (insecure=true)" in result.stderr


def test_only_https_targets_mount_the_ca_bundle(curl_env: dict[str, str]) -> None:
    pod = {
        "metadata": {"annotations": {"entourage.dev/wait-for": "db:5432,https://a.example/x,https://b.example/y"}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    spec = inject_pod(pod, ca_settings()).pod["spec"]
    mounts = {c["name"]: c.get("volumeMounts") for c in spec["initContainers"]}
    assert mounts["entourage-wait-db-5432"] is None
    assert (
        mounts["entourage-wait-a-example-x"]
        == mounts["entourage-wait-b-example-y"]
        == [{"name": "entourage-wait-for-ca", "mountPath": waitfor.CA_DIR, "readOnly": True}]
    )
    assert [v["name"] for v in spec["volumes"]] == ["entourage-wait-for-ca"], "one volume for every https target"


def test_an_http_wait_runs_through_curl_and_a_tcp_wait_through_nc(curl_env: dict[str, str], settings: Settings, echo_upstream: int) -> None:
    with _TLSServer(("127.0.0.1", 0), _Ready) as plain:
        thread = threading.Thread(target=plain.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        try:
            http_result = run_wait(settings, {"entourage.dev/wait-for": f"http://127.0.0.1:{plain.server_address[1]}/ready"}, curl_env)
        finally:
            plain.shutdown()
            thread.join(5)
    assert http_result.returncode == 0, http_result.stderr
    tcp_result = run_wait(settings, {"entourage.dev/wait-for": f"127.0.0.1:{echo_upstream}"}, curl_env)
    assert tcp_result.returncode == 0 and re.search(rf"127\.0\.0\.1:{echo_upstream} is available after [01]s", tcp_result.stdout)


def test_the_busybox_profile_refuses_https_targets_it_cannot_verify(busybox_env: dict[str, str]) -> None:
    settings = build_settings({"defaults": {"waitFor": "busybox"}})
    result = run_wait(settings, {"entourage.dev/wait-for": "https://localhost:1/ready"}, busybox_env)
    assert result.returncode == 2
    assert "https needs curl in the image to verify the server certificate" in result.stderr


def test_the_tail_agent_prints_lines_from_files_created_after_it_started(
    settings: Settings, tmp_path: Path, busybox_env: dict[str, str]
) -> None:
    logs = tmp_path / "var-log-app"
    logs.mkdir()
    container = injected_container(
        settings, {"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/var/log/app"}, "entourage-logging"
    )
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
