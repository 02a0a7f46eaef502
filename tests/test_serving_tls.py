"""TLS of the real ``entourage serve`` process: versions, keep-alive, certificate hot reload."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import warnings
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.webhook_process import MountedDir, Webhook, client_context, free_port, review, running, tls_files
from webhook import certs


def test_tls_1_1_is_refused_and_1_2_is_accepted(tmp_path: Path) -> None:
    with running(tmp_path) as webhook:
        old = webhook.context()
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer TLS 1.1: the server must refuse it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1_1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw, pytest.raises(ssl.SSLError) as refused:
            old.wrap_socket(raw, server_hostname="localhost").close()
        # The client did offer TLS 1.1 (a client-side refusal says NO_PROTOCOLS_AVAILABLE); the server
        # answered with a protocol_version alert or hung up.
        assert isinstance(refused.value, ssl.SSLEOFError) or "ALERT_PROTOCOL_VERSION" in str(refused.value)
        tls12 = webhook.context()
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw:
            with tls12.wrap_socket(raw, server_hostname="localhost") as conn:
                assert conn.version() == "TLSv1.2"
                assert conn.selected_alpn_protocol() in (None, "http/1.1")


def test_many_requests_share_one_keep_alive_connection(tmp_path: Path) -> None:
    body = __import__("json").dumps(review()).encode()
    with running(tmp_path) as webhook:
        connection = http.client.HTTPSConnection("localhost", webhook.port, context=webhook.context(), timeout=5)
        try:
            connection.request("POST", "/mutate", body, {"Content-Type": "application/json"})
            first = connection.getresponse()
            first.read()
            sock = connection.sock
            for _ in range(20):
                connection.request("POST", "/mutate", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                assert response.status == 200 and response.getheader("connection") != "close"
                response.read()
            assert connection.sock is sock, "the server closed the keep-alive connection"
        finally:
            connection.close()


class Load:
    """Clients sending admissions until stopped: one opens a new TLS connection per request
    (every request is a fresh handshake), one keeps a single connection alive."""

    def __init__(self, webhook: Webhook) -> None:
        self.webhook, self.stopping = webhook, threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.body = __import__("json").dumps(review()).encode()
        self.threads = [threading.Thread(target=self._run, args=(fresh,)) for fresh in (True, False)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)

    def _run(self, fresh: bool) -> None:
        connection: http.client.HTTPSConnection | None = None
        while not self.stopping.is_set():
            try:
                if connection is None or fresh:
                    connection = http.client.HTTPSConnection("localhost", self.webhook.port, context=self.webhook.context(), timeout=5)
                connection.request("POST", "/mutate", self.body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    self.failures.append(f"HTTP {response.status}")
                else:
                    self.ok += 1
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(repr(error))
            finally:
                if fresh and connection is not None:
                    connection.close()
        if connection is not None:
            connection.close()


def test_a_rotated_certificate_is_served_within_seconds_without_a_failed_request(tmp_path: Path) -> None:
    with running(tmp_path) as webhook:
        rotated = certs.generate("entourage", "entourage")
        webhook.trusted.append(rotated.ca_pem)  # clients trust both CAs, as during a CA rollover
        new_serial = x509.load_pem_x509_certificate(rotated.cert_pem).serial_number
        assert webhook.serial() != new_serial
        with Load(webhook) as load:
            time.sleep(0.5)
            webhook.tls.swap(tls_files(rotated))
            webhook.wait_for(lambda: webhook.serial() == new_serial, timeout=5, what="the new certificate")
            time.sleep(0.5)
        assert load.failures == [] and load.ok > 20
        metrics = webhook.metrics()
        assert metrics["entourage_certificate_reloads_total"] == 1
        expiry = x509.load_pem_x509_certificate(rotated.cert_pem).not_valid_after_utc.timestamp()
        assert metrics["entourage_certificate_expiry_timestamp_seconds"] == expiry


def test_an_unusable_certificate_is_refused_counted_and_the_old_one_kept(tmp_path: Path) -> None:
    with running(tmp_path) as webhook:
        original = webhook.serial()
        one, other = certs.generate("entourage", "entourage"), certs.generate("entourage", "entourage")
        webhook.tls.swap({"tls.crt": one.cert_pem, "tls.key": other.key_pem, "ca.crt": one.ca_pem})  # not a pair
        webhook.wait_for(lambda: webhook.metrics()["entourage_certificate_reload_failures_total"] == 1, what="the failure count")
        assert webhook.serial() == original
        assert any(line["msg"].startswith("the new certificate cannot be used") for line in webhook.logs())
        webhook.trusted.append(one.ca_pem)
        webhook.tls.swap(tls_files(one))
        serial = x509.load_pem_x509_certificate(one.cert_pem).serial_number
        webhook.wait_for(lambda: webhook.serial() == serial, what="the repaired certificate")
        assert webhook.metrics()["entourage_certificate_reload_failures_total"] == 1


def _client_certificate(directory: Path, *, issuer: str) -> tuple[Path, str, str]:
    """A CA and a client certificate it signed (what the apiserver presents), as PEM files."""
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False).sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "client.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "client.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "ca.crt", str(directory / "client.crt"), str(directory / "client.key")


def test_with_a_client_ca_only_clients_it_signed_complete_a_handshake(tmp_path: Path) -> None:
    ca_file, cert_file, key_file = _client_certificate(tmp_path / "client", issuer="apiserver client CA")
    _, other_cert, other_key = _client_certificate(tmp_path / "other", issuer="someone else")
    body = __import__("json").dumps(review()).encode()
    with running(tmp_path, "--client-ca-file", str(ca_file), client_certificate=(cert_file, key_file)) as webhook:
        with webhook.client() as client:  # the apiserver's certificate: answered
            assert client.post("/mutate", content=body, headers={"Content-Type": "application/json"}).status_code == 200
        for presented in (None, (other_cert, other_key)):  # none, or signed by another CA: a TLS failure
            webhook.client_certificate = presented
            context = webhook.context()
            with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):  # noqa: PT012 - the refusal comes at the handshake or at the first read, depending on the TLS version
                with socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw:
                    with context.wrap_socket(raw, server_hostname="localhost") as tls:
                        tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                        if not tls.recv(1):  # TLS 1.3: the refusal arrives with the first read
                            raise ConnectionResetError("closed without an answer")


def test_with_a_client_ca_the_metrics_port_asks_for_no_certificate_so_probes_and_scrapers_get_through(tmp_path: Path) -> None:
    ca_file, cert_file, key_file = _client_certificate(tmp_path / "client", issuer="apiserver client CA")
    metrics_port = free_port()
    body = __import__("json").dumps(review()).encode()
    with running(
        tmp_path, "--client-ca-file", str(ca_file), "--metrics-port", str(metrics_port), client_certificate=(cert_file, key_file)
    ) as webhook:
        anonymous = client_context(*webhook.trusted)  # like the kubelet's probe and Prometheus: no certificate
        with httpx.Client(base_url=f"https://localhost:{metrics_port}", verify=anonymous, timeout=5) as probe:
            assert probe.get("/healthz").status_code == 200
            assert probe.get("/readyz").status_code == 200
            assert "entourage_admissions_total" in probe.get("/metrics").text
        assert not _answered(webhook.port, anonymous), "the webhook port still refuses it"
        with webhook.client() as apiserver:
            assert apiserver.post("/mutate", content=body, headers={"Content-Type": "application/json"}).status_code == 200


def test_a_rotated_client_ca_is_trusted_within_seconds_and_the_old_one_no_longer(tmp_path: Path) -> None:
    old_ca, old_cert, old_key = _client_certificate(tmp_path / "old", issuer="old client CA")
    new_ca, new_cert, new_key = _client_certificate(tmp_path / "new", issuer="new client CA")
    mounted = MountedDir(tmp_path / "client-ca", {"ca.crt": old_ca.read_bytes()})
    with running(tmp_path, "--client-ca-file", mounted.path("ca.crt"), client_certificate=(old_cert, old_key)) as webhook:
        old, new = webhook.context(), client_context(*webhook.trusted)
        new.load_cert_chain(new_cert, new_key)
        assert _answered(webhook.port, old) and not _answered(webhook.port, new)
        mounted.swap({"ca.crt": new_ca.read_bytes()})  # as kubelet updates a ConfigMap volume
        webhook.wait_for(lambda: _answered(webhook.port, new), timeout=5, what="the new client CA")
        assert not _answered(webhook.port, old)
        webhook.client_certificate = (new_cert, new_key)
        mounted.swap({"ca.crt": b"not a certificate\n"})  # refused and counted; the CA in use stays
        webhook.wait_for(lambda: webhook.metrics().get("entourage_certificate_reload_failures_total") == 1, what="the refused CA")
        assert _answered(webhook.port, new)


def _answered(port: int, context: ssl.SSLContext) -> bool:
    """Whether a client with this context gets an HTTP answer (False: a TLS failure)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return bool(tls.recv(1))  # TLS 1.3: the refusal arrives with the first read
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return False
