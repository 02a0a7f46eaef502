"""Certificate generation: a CA, and serving certificates it signs (ECDSA P-256, lifetimes given).

Keys are ECDSA P-256 (fast handshakes, accepted by every apiserver). ``generate`` makes a fresh
CA and serving pair for `make run`, tests and `entourage certs`; the self-managed mode
(webhook/cluster/certificates.py) uses ``new_authority`` and ``issue`` to renew the serving
certificate from the CA it keeps in a Secret and to roll the CA itself.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVING_DAYS = 365
FILES = ("ca.crt", "tls.crt", "tls.key")
BACKDATE = datetime.timedelta(minutes=5)
"""notBefore is set this far in the past (at most a twentieth of the lifetime, so that the
seconds-long certificates of the rotation tests keep their proportions), so that a clock a
little behind ours still accepts the certificate."""


def _backdate(lifetime: datetime.timedelta) -> datetime.timedelta:
    return min(BACKDATE, lifetime / 20)


@dataclass(frozen=True)
class CertificateSet:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def ca_bundle(self) -> str:
        """The CA as the base64 string a MutatingWebhookConfiguration's caBundle takes."""
        return base64.b64encode(self.ca_pem).decode("ascii")


@dataclass(frozen=True)
class Authority:
    """A CA certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


def dns_names(service: str, namespace: str) -> list[str]:
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local", "localhost"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_authority(common_name: str, lifetime: datetime.timedelta, *, now: datetime.datetime | None = None) -> Authority:
    """A self-signed CA valid for ``lifetime`` from ``now``, that may sign serving certificates only."""
    now = now or _now()
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _backdate(lifetime))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def issue(
    authority: Authority, service: str, namespace: str, lifetime: datetime.timedelta, *, now: datetime.datetime | None = None
) -> tuple[bytes, bytes]:
    """A serving certificate and key (PEM) for the Service's DNS names, localhost and 127.0.0.1,
    valid for ``lifetime`` but never past the CA's own notAfter."""
    ca = x509.load_pem_x509_certificate(authority.cert_pem)
    ca_key = serialization.load_pem_private_key(authority.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an ECDSA key")
    now = now or _now()
    key = _key()
    names = dns_names(service, namespace)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[2][:64])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _backdate(lifetime))
        .not_valid_after(min(now + lifetime, ca.not_valid_after_utc))
        .add_extension(
            x509.SubjectAlternativeName([*(x509.DNSName(name) for name in names), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def generate(service: str, namespace: str, *, days: int = SERVING_DAYS, ca_days: int = CA_DAYS) -> CertificateSet:
    """A fresh CA and a serving certificate for the Service's DNS names, localhost and 127.0.0.1."""
    authority = new_authority(f"entourage-ca {namespace}/{service}", datetime.timedelta(days=ca_days))
    cert_pem, key_pem = issue(authority, service, namespace, datetime.timedelta(days=days))
    return CertificateSet(ca_pem=authority.cert_pem, cert_pem=cert_pem, key_pem=key_pem)


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """Whether the CA's key signed the certificate (and the names chain)."""
    try:
        x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def validity(cert_pem: bytes) -> tuple[datetime.datetime, datetime.datetime]:
    """(notBefore, notAfter) of the first certificate in ``cert_pem``, in UTC."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def write(certificates: CertificateSet, out_dir: str | Path, *, force: bool = False) -> list[Path]:
    """Write ca.crt, tls.crt and tls.key (mode 0600); refuse to overwrite unless ``force``."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / name for name in FILES]
    existing = [str(path) for path in paths if path.exists()]
    if existing and not force:
        raise FileExistsError(f"refusing to overwrite {', '.join(existing)} (use --force)")
    for path, content, mode in zip(
        paths, (certificates.ca_pem, certificates.cert_pem, certificates.key_pem), (0o644, 0o644, 0o600), strict=True
    ):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
        os.chmod(path, mode)
    return paths


def publish(directory: str | Path, files: dict[str, bytes]) -> None:
    """Replace the files of ``directory`` all at once, as kubelet updates a Secret volume: a new
    timestamped directory, then one rename of the ``..data`` symlink; ``NAME`` → ``..data/NAME``.
    A reader (tls.ServingTLS) never sees a certificate from one pair and a key from another."""
    root = Path(directory)
    version = Path(tempfile.mkdtemp(prefix="..", dir=root))
    for name, content in files.items():
        descriptor = os.open(version / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
    link = root / "..data_tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(version.name)
    previous = (root / "..data").resolve() if (root / "..data").exists() else None
    os.rename(link, root / "..data")
    for name in files:
        if not (root / name).is_symlink():
            (root / name).symlink_to(f"..data/{name}")
    if previous is not None and previous != version.resolve():
        shutil.rmtree(previous, ignore_errors=True)
