"""The serving certificate: an SSLContext whose certificate is replaced while serving.

uvicorn builds its SSLContext once. We hand it a *front* context whose SNI callback (OpenSSL calls
it for every handshake, with or without SNI) switches the connection to the *current* context. A
reload builds a complete new context off to the side and swaps one reference, so a half-written or
mismatched pair never reaches a handshake, a failed reload keeps the old certificate, and
connections already established keep theirs. TLS 1.2 is the minimum on both contexts. With a
client CA (``--client-ca-file``) both contexts require a client certificate from it; a change of
the CA file is a reload like a change of the pair (a CA that does not load keeps the old one).

OpenSSL takes the *mode* (client certificate required or not) from the front context, where the
connection began, and the trusted CAs from the context the callback switched to. So a second
front context without the requirement (``open_context``) serves the metrics port, which the
kubelet's probes and Prometheus use, with the same, equally reloaded certificate.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

log = logging.getLogger("entourage.tls")


class CertificateError(Exception):
    """The certificate or key file cannot be used (unreadable, not PEM, or not a pair)."""


@dataclass(frozen=True)
class Loaded:
    """What one successful load produced."""

    context: ssl.SSLContext
    fingerprint: str
    serial: int
    not_after: datetime.datetime


def _context(client_ca_file: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # HTTP/1.1 only: the apiserver speaks it, and uvicorn does not serve h2.
    context.set_alpn_protocols(["http/1.1"])
    if client_ca_file:
        # Client authentication: a peer without a certificate from this CA fails the handshake,
        # before a single byte of HTTP is read.
        try:
            context.load_verify_locations(cafile=client_ca_file)
        except (ssl.SSLError, OSError) as error:
            raise CertificateError(f"{client_ca_file}: not a usable client CA bundle: {error}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _read(*files: str | None) -> tuple[bytes, ...]:
    try:
        return tuple(Path(name).read_bytes() if name else b"" for name in files)
    except OSError as error:
        raise CertificateError(f"cannot read {error.filename}: {error.strerror}") from None


def _fingerprint(contents: tuple[bytes, ...]) -> str:
    return hashlib.sha256(b"\0".join(contents)).hexdigest()


class ServingTLS:
    """The certificate and key at two paths (a mounted Secret), reloaded by ``reload()``."""

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str | None = None) -> None:
        self.cert_file, self.key_file, self.client_ca_file = cert_file, key_file, client_ca_file
        self.current = self._load()
        self._failed: str | None = None
        self.context = self._front(client_ca_file)
        self.open_context = self._front(None)
        """The same certificate, asking for no client certificate (the metrics and health port)."""

    def _front(self, client_ca_file: str | None) -> ssl.SSLContext:
        context = _context(client_ca_file)
        # The front context holds a certificate too, so a handshake never depends on the callback alone.
        context.load_cert_chain(self.cert_file, self.key_file)
        context.sni_callback = self._select
        return context

    def _select(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        connection.context = self.current.context

    def _files(self) -> tuple[bytes, ...]:
        """The certificate, the key and the client CA (empty without one): a change of any is a reload."""
        return _read(self.cert_file, self.key_file, self.client_ca_file)

    def _load(self) -> Loaded:
        contents = self._files()
        context = _context(self.client_ca_file)
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as error:
            raise CertificateError(f"{self.cert_file} and {self.key_file} are not a usable certificate and key: {error}") from None
        # kubelet swaps the `..data` symlink between our two reads? Then the pair we loaded may not be
        # the pair we hashed: report no change and look again at the next poll.
        if self._files() != contents:
            raise _Moving()
        try:
            parsed = x509.load_pem_x509_certificate(contents[0])
        except ValueError as error:
            raise CertificateError(f"{self.cert_file}: not a PEM certificate: {error}") from None
        return Loaded(context, _fingerprint(contents), parsed.serial_number, parsed.not_valid_after_utc)

    def reload(self) -> bool:
        """Load the files again if they changed; True when a new certificate is now served.

        Raises CertificateError once per bad content (the old certificate stays in use).
        """
        try:
            contents = self._files()
        except CertificateError:
            if self._failed == "unreadable":
                return False
            self._failed = "unreadable"
            raise
        fingerprint = _fingerprint(contents)
        if fingerprint in (self.current.fingerprint, self._failed):
            return False
        try:
            loaded = self._load()
        except _Moving:
            return False
        except CertificateError:
            self._failed = fingerprint
            raise
        self.current, self._failed = loaded, None
        log.info("serving a new certificate", extra={"fields": {"serial": f"{loaded.serial:x}", "not_after": loaded.not_after.isoformat()}})
        return True


class _Moving(Exception):
    """The files changed while we read them."""
