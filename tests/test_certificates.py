"""Self-managed certificates: the rotation policy, and the real ``entourage serve`` against the fake API."""

from __future__ import annotations

import base64
import datetime
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_apiserver import FakeApiServer
from tests.webhook_process import ENTOURAGE, free_port, review
from webhook import certs
from webhook.cluster import certificates, kube, rotation

SECRET = ("entourage", "entourage-tls")
MUTATING, VALIDATING = "mutatingwebhookconfigurations", "validatingwebhookconfigurations"
OPTIONS = rotation.CertificateOptions(
    secret="entourage-tls", namespace="entourage", service="entourage", mutating=("entourage",), validating=("entourage",)
)
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


# -- the policy, with a clock of our own ----------------------------------------------------------


def short(ca: float = 300, serving: float = 90, overlap: float = 10) -> rotation.CertificateOptions:
    lifetimes = rotation.Lifetimes(
        ca=datetime.timedelta(seconds=ca), serving=datetime.timedelta(seconds=serving), overlap=datetime.timedelta(seconds=overlap)
    )
    return rotation.CertificateOptions(secret="s", namespace="ns", service="svc", lifetimes=lifetimes)


def test_a_new_secret_holds_an_ecdsa_p256_ca_that_signed_the_serving_certificate() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    stored = rotation.initial(short(), datetime.datetime.now(datetime.UTC))
    assert stored.trusted == (stored.issuer.cert_pem,) and certs.signed_by(stored.cert_pem, stored.issuer.cert_pem)
    key = x509.load_pem_x509_certificate(stored.cert_pem).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


def test_the_serving_certificate_is_renewed_at_two_thirds_of_its_life_by_the_same_ca() -> None:
    options = short(ca=3000, serving=90)
    now = datetime.datetime.now(datetime.UTC)
    stored = rotation.initial(options, now)
    assert rotation.next_state(stored, options, now + datetime.timedelta(seconds=50), configurations_trust_all=True) is None
    renewed = rotation.next_state(stored, options, now + datetime.timedelta(seconds=62), configurations_trust_all=True)
    assert renewed is not None and renewed.cert_pem != stored.cert_pem
    assert renewed.issuer == stored.issuer and renewed.trusted == stored.trusted
    assert certs.signed_by(renewed.cert_pem, stored.issuer.cert_pem)


def test_a_ca_rotation_adds_switches_after_the_overlap_and_the_configurations_then_drops() -> None:
    options = short(ca=90, serving=89, overlap=10)
    now = datetime.datetime.now(datetime.UTC)
    old = rotation.initial(options, now)
    at = now + datetime.timedelta(seconds=61)
    added = rotation.next_state(old, options, at, configurations_trust_all=True)
    assert added is not None and added.next is not None and added.issuer == old.issuer
    assert added.trusted == (added.next.cert_pem, old.issuer.cert_pem) and added.cert_pem == old.cert_pem
    assert rotation.next_state(added, options, at + datetime.timedelta(seconds=5), configurations_trust_all=True) is None, (
        "overlap not over"
    )
    later = at + datetime.timedelta(seconds=11)
    assert rotation.next_state(added, options, later, configurations_trust_all=False) is None, "a configuration lacks the new CA"
    switched = rotation.next_state(added, options, later, configurations_trust_all=True)
    assert switched is not None and switched.issuer == added.next and switched.next is None
    assert certs.signed_by(switched.cert_pem, added.next.cert_pem) and len(switched.trusted) == 2
    assert rotation.next_state(switched, options, later + datetime.timedelta(seconds=5), configurations_trust_all=True) is None
    dropped = rotation.next_state(switched, options, later + datetime.timedelta(seconds=11), configurations_trust_all=True)
    assert dropped is not None and dropped.trusted == (added.next.cert_pem,)


# -- the manager against the fake API ------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApiServer]:
    fake = FakeApiServer().start()
    fake.set_nodes("v1.31.0")
    fake.put_namespace("default")
    fake.put_webhook_configuration("entourage", "inject.entourage.dev")
    fake.put_webhook_configuration("entourage", "validate.entourage.dev", kind="validating")
    try:
        yield fake
    finally:
        fake.stop()


def manager(fake: FakeApiServer, tmp_path: Path, options: rotation.CertificateOptions = OPTIONS) -> certificates.CertificateManager:
    return certificates.CertificateManager(kube.Api(str(fake.kubeconfig(tmp_path / "kubeconfig"))), options, every=0.2)


def bundles(fake: FakeApiServer) -> list[str]:
    hooks = fake.webhook_configurations["entourage"]["webhooks"] + fake.validating_configurations["entourage"]["webhooks"]
    return [hook["clientConfig"].get("caBundle", "") for hook in hooks]


def wait(predicate: Any, timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_replicas_starting_at_once_share_one_ca_and_a_restart_reuses_it(api: FakeApiServer, tmp_path: Path) -> None:
    replicas = [manager(api, tmp_path) for _ in range(2)]
    # "At once": each replica reads the Secret as absent before either creates it. A barrier after
    # the first read of each makes that happen every time, not only when the threads interleave so.
    barrier = threading.Barrier(2, timeout=20)
    for replica in replicas:
        read, first = replica.store.read, [True]

        def read_together(read: Any = read, first: list[bool] = first) -> Any:
            found = read()
            if first.pop() if first else False:
                barrier.wait()
            return found

        replica.store.read = read_together  # type: ignore[method-assign]
    threads = [threading.Thread(target=replica.bootstrap) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    served = {Path(replica.cert_file).read_bytes() for replica in replicas}
    assert len(served) == 1, "both replicas serve the one pair in the Secret"
    assert api.secret_writes.count("POST entourage-tls") == 2 and len(api.secrets) == 1, "the second create got 409 and read the first"
    stored = certificates.decode(api.secrets[SECRET])
    assert Path(replicas[0].cert_file).read_bytes() == stored.cert_pem
    restarted = manager(api, tmp_path)
    restarted.bootstrap()
    assert Path(restarted.cert_file).read_bytes() == stored.cert_pem and api.secret_writes.count("POST entourage-tls") == 2
    owner = api.secrets[SECRET]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "MutatingWebhookConfiguration", "entourage", api.webhook_configurations["entourage"]["metadata"]["uid"],
    ), "uninstalling the configuration garbage-collects the Secret"  # fmt: skip


def test_a_broken_secret_is_replaced_with_a_working_one(api: FakeApiServer, tmp_path: Path) -> None:
    first = manager(api, tmp_path)
    first.bootstrap()
    api.secrets[SECRET]["data"].pop("issuer.key")
    second = manager(api, tmp_path)
    second.bootstrap()
    second.reconcile()
    stored = certificates.decode(api.secrets[SECRET])
    assert Path(second.cert_file).read_bytes() == stored.cert_pem


def test_drift_in_ca_bundle_is_corrected_within_the_reload_interval(api: FakeApiServer, tmp_path: Path) -> None:
    replica = manager(api, tmp_path)
    replica.bootstrap()
    replica.start()
    try:
        wanted = api.secrets[SECRET]["data"]["ca.crt"]
        wait(lambda: bundles(api) == [wanted] * 2, what="the first caBundle")
        patches = len(api.patches)
        time.sleep(0.6)
        assert len(api.patches) == patches, "a caBundle already right is not patched again"
        for plural in (MUTATING, VALIDATING):
            api.set_ca_bundle(plural, "entourage", base64.b64encode(b"stale").decode())  # e.g. an Argo CD sync
            started = time.monotonic()
            wait(lambda: bundles(api) == [wanted] * 2, timeout=5, what=f"{plural} corrected")
            assert time.monotonic() - started < 0.2 + 0.5, "corrected within the reload interval (0.2 s here)"
    finally:
        replica.stop()


# -- real `entourage serve` processes: zero failures through renewals and a CA rotation --------------


def serve(fake: FakeApiServer, tmp_path: Path, name: str, *extra: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = tmp_path / f"{name}.log"
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("KUBERNETES_", "PROMETHEUS_"))}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [ENTOURAGE, "serve", "--kubeconfig", str(fake.kubeconfig(tmp_path / "kubeconfig")), "--certificates-secret", "entourage-tls",
             "--namespace", "entourage", "--service", "entourage", "--mutating-webhook-configuration", "entourage",
             "--validating-webhook-configuration", "entourage", "--host", "127.0.0.1", "--port", str(port), "--reload-interval", "0.2", *extra],
            stdout=out, stderr=subprocess.STDOUT, env=environment,
        )  # fmt: skip
    return process, port, log


def ca_bundle_context(fake: FakeApiServer) -> ssl.SSLContext:
    """What the apiserver does: trust exactly the caBundle the configuration carries now."""
    with fake.lock:
        bundle = fake.webhook_configurations["entourage"]["webhooks"][0]["clientConfig"].get("caBundle", "")
    return ssl.create_default_context(cadata=base64.b64decode(bundle).decode())


def handshake(port: int, context: ssl.SSLContext) -> tuple[str, int]:
    """The issuer's common name and the serial number of the certificate a new connection gets."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw, server_hostname="localhost") as conn:
        peer = conn.getpeercert()
        return str(dict(item[0] for item in peer["issuer"])["commonName"]), int(peer["serialNumber"], 16)  # type: ignore[index, arg-type]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_renewals_and_a_ca_rotation_keep_every_request_succeeding(api: FakeApiServer, tmp_path: Path) -> None:
    lifetimes = ("--ca-lifetime", "9s", "--certificate-lifetime", "4s", "--rotation-overlap", "1.2s")
    replicas = [serve(api, tmp_path, f"replica-{index}", *lifetimes) for index in range(2)]
    try:
        ports = [port for _, port, _ in replicas]
        wait(lambda: bundles(api) and all(bundles(api)), timeout=20, what="the caBundle")
        for port in ports:
            wait(lambda port=port: _listening(port), timeout=20, what=f"port {port}")
        first_ca = certificates.decode(api.secrets[SECRET]).issuer.cert_pem
        failures: list[str] = []
        issuers: set[str] = set()
        serials: set[int] = set()
        sent = 0
        deadline = time.monotonic() + 16  # 9 s CA: added at 6 s, switched at ~7.2 s, dropped at ~8.4 s
        while time.monotonic() < deadline:
            for port in ports:
                context = ca_bundle_context(api)
                try:
                    name, serial = handshake(port, context)
                    issuers.add(name)
                    serials.add(serial)
                    with httpx.Client(verify=context, timeout=5) as client:
                        response = client.post(f"https://localhost:{port}/mutate", json=review({"entourage.dev/logging": "true"}))
                    sent += 1
                    if response.status_code != 200 or not response.json()["response"]["allowed"]:
                        failures.append(f"{port}: HTTP {response.status_code}")
                except (OSError, httpx.HTTPError) as error:
                    failures.append(f"{port}: {type(error).__name__}: {error}")
            time.sleep(0.02)
        assert failures == [], f"{len(failures)} of {sent + len(failures)} failed: {failures[:5]}"
        stored = certificates.decode(api.secrets[SECRET])
        assert stored.issuer.cert_pem != first_ca, "the CA was rotated during the run"
        assert len(issuers) >= 2 and len(serials) >= 4, (issuers, len(serials))
        assert sent > 100
        # the next rotation may be under way: the configurations catch up with the Secret within the reload interval
        wait(lambda: bundles(api) == [api.secrets[SECRET]["data"]["ca.crt"]] * 2, timeout=2, what="the caBundle to equal the Secret's CAs")
    finally:
        for process, _, log in replicas:
            process.terminate()
            process.wait(10)
            assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_serve_refuses_certificates_secret_without_api_access_or_with_certificate_files(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("KUBERNETES_")}
    alone = subprocess.run(
        [ENTOURAGE, "serve", "--certificates-secret", "x", "--namespace", "ns"], capture_output=True, text=True, env=environment
    )
    assert alone.returncode == 2 and "--certificates-secret needs API access" in alone.stderr
    both = subprocess.run(
        [ENTOURAGE, "serve", "--certificates-secret", "x", "--tls-cert-file", "a", "--tls-private-key-file", "b"],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert both.returncode == 2 and "leave out --tls-cert-file" in both.stderr
    none = subprocess.run([ENTOURAGE, "serve"], capture_output=True, text=True, env=environment)
    assert none.returncode == 2 and "--certificates-secret NAME for self-managed certificates" in none.stderr
