"""The self-managed certificates' rotation policy: what the Secret should hold next. Pure, no I/O.

The Secret holds the CA that signs (the *issuer*), the serving pair it signed, and the *trusted*
CAs that the webhook configurations' caBundle must carry. Every replica runs the same policy on
the same Secret (writes are conditional on its resourceVersion), so whichever replica gets there
first makes each step and the others follow. The steps:

    renew    the serving certificate has lived ``renew_after`` of its life: a new one, same CA
    add      the CA has lived ``renew_after`` of its life: a *next* CA joins the trusted list;
             the serving certificate is still the old CA's
    switch   ``overlap`` after ``add`` and once every webhook configuration carries both CAs:
             the next CA becomes the issuer and signs a new serving certificate
    drop     ``overlap`` after ``switch`` (every replica reads the Secret every reload interval,
             so all of them serve the new pair by then): the old CA leaves the trusted list

At every moment the certificate any replica serves chains to a CA in the caBundle the apiserver
uses, so no handshake fails during a rotation (tests/test_certificates.py checks it end to end).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace

from webhook import certs

ISSUED_AT = "entourage.dev/issued-at"
TRUSTED_SINCE = "entourage.dev/trusted-since"


@dataclass(frozen=True)
class Lifetimes:
    """How long certificates live and when they are replaced (``entourage serve`` flags)."""

    ca: datetime.timedelta = datetime.timedelta(days=365)
    """CA validity (``--ca-lifetime``, default 365 days); rotated with an overlap at ``renew_after``."""
    serving: datetime.timedelta = datetime.timedelta(days=90)
    """Serving certificate validity (``--certificate-lifetime``, default 90 days)."""
    renew_after: float = 2 / 3
    """Fraction of its life after which a certificate (or the CA) is replaced: 60 of 90 days."""
    overlap: datetime.timedelta = datetime.timedelta(minutes=5)
    """How long both CAs stay trusted before and after the switch (``--rotation-overlap``, default
    300 s): far more than a replica's reload interval (2 s) plus the apiserver's informer delay."""


@dataclass(frozen=True)
class CertificateOptions:
    """How ``entourage serve`` gets its serving certificate and which caBundles it keeps."""

    secret: str | None = None
    """Self-managed mode: the Secret (in ``namespace``) that holds the CA and the serving pair."""
    namespace: str = ""
    service: str = ""
    """The webhook's Service: the serving certificate's DNS names."""
    ca_file: str | None = None
    """Without ``secret``: the caBundle comes from this file (a mounted Secret's ca.crt)."""
    mutating: tuple[str, ...] = ()
    """MutatingWebhookConfigurations whose caBundle is kept equal to the trusted CAs."""
    validating: tuple[str, ...] = ()
    """ValidatingWebhookConfigurations likewise."""
    lifetimes: Lifetimes = field(default_factory=Lifetimes)


@dataclass(frozen=True)
class Stored:
    """What the Secret holds."""

    issuer: certs.Authority
    cert_pem: bytes
    key_pem: bytes
    trusted: tuple[bytes, ...]
    """PEM CAs for caBundle, newest first."""
    issued_at: datetime.datetime
    trusted_since: datetime.datetime
    """When the trusted list last gained a CA."""
    next: certs.Authority | None = None

    @property
    def bundle(self) -> bytes:
        return b"".join(self.trusted)


def initial(options: CertificateOptions, now: datetime.datetime) -> Stored:
    """A new CA and the serving pair it signs: what the first replica to start creates."""
    issuer = certs.new_authority(f"entourage-ca {options.namespace}/{options.service} {now:%Y%m%dT%H%M%S}", options.lifetimes.ca, now=now)
    cert_pem, key_pem = certs.issue(issuer, options.service, options.namespace, options.lifetimes.serving, now=now)
    return Stored(issuer, cert_pem, key_pem, (issuer.cert_pem,), issued_at=now, trusted_since=now)


def _aged(pem: bytes, fraction: float, now: datetime.datetime) -> bool:
    not_before, not_after = certs.validity(pem)
    return now >= not_before + (not_after - not_before) * fraction


def next_state(stored: Stored, options: CertificateOptions, now: datetime.datetime, *, configurations_trust_all: bool) -> Stored | None:
    """The Secret's next content, or None when nothing is due. ``configurations_trust_all``: every
    kept webhook configuration's caBundle holds every trusted CA (``switch`` waits for it)."""
    lifetimes = options.lifetimes
    if now >= certs.validity(stored.issuer.cert_pem)[1]:
        return initial(options, now)  # the CA expired while nothing ran: start again
    if stored.next is not None:
        if now - stored.trusted_since >= lifetimes.overlap and configurations_trust_all:
            cert_pem, key_pem = certs.issue(stored.next, options.service, options.namespace, lifetimes.serving, now=now)
            return replace(stored, issuer=stored.next, next=None, cert_pem=cert_pem, key_pem=key_pem, issued_at=now)
        if now >= certs.validity(stored.cert_pem)[1] - lifetimes.overlap:
            return _renewed(stored, options, now)  # the switch is late (a configuration cannot be patched?)
        return None
    if _aged(stored.issuer.cert_pem, lifetimes.renew_after, now):
        added = certs.new_authority(f"entourage-ca {options.namespace}/{options.service} {now:%Y%m%dT%H%M%S}", lifetimes.ca, now=now)
        return replace(stored, next=added, trusted=(added.cert_pem, *stored.trusted), trusted_since=now)
    if len(stored.trusted) > 1 and now - stored.issued_at >= lifetimes.overlap:
        return replace(stored, trusted=(stored.issuer.cert_pem,))
    return _renewed(stored, options, now)


def _renewed(stored: Stored, options: CertificateOptions, now: datetime.datetime) -> Stored | None:
    """A new serving pair from the same issuer when the current one is due (or not the issuer's)."""
    if _aged(stored.cert_pem, options.lifetimes.renew_after, now) or not certs.signed_by(stored.cert_pem, stored.issuer.cert_pem):
        cert_pem, key_pem = certs.issue(stored.issuer, options.service, options.namespace, options.lifetimes.serving, now=now)
        return replace(stored, cert_pem=cert_pem, key_pem=key_pem, issued_at=now)
    return None
