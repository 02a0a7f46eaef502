"""Wait-for init containers: hold the pod until a TCP port, an HTTP URL or a DNS name answers.

An ``https`` target passes only with a certificate that verifies for its host name: against the
image's own roots, or the profile's ``caBundle`` (a ConfigMap or Secret of the pod's namespace
named in the configuration), mounted read-only at ``CA_DIR`` in the containers that need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.engine.profiles.common import build_container
from webhook.engine.request import WaitTarget
from webhook.engine.settings import Profile

CA_DIR = "/etc/entourage/wait-for-ca"
"""Where the CA bundle is mounted: a directory of no image's own."""
CA_FILE = "ca.crt"
SYSTEM_ROOTS = "system"
"""The script's word for "the image's own CA roots"."""


def needs_ca_bundle(profile: Profile, target: WaitTarget) -> bool:
    """Only https targets read the bundle; the others get no volume."""
    return profile.ca_bundle is not None and target.kind == "https"


def ca_volume(profile: Profile, name: str) -> dict[str, Any]:
    assert profile.ca_bundle is not None
    return profile.ca_bundle.volume(name, CA_FILE)


def build(
    profile: Profile,
    *,
    name: str,
    target: WaitTarget,
    timeout: int,
    params: Mapping[str, str],
    resources: Mapping[str, Mapping[str, str]],
    ca_volume: str | None = None,
) -> dict[str, Any]:
    """The target reaches the script as a positional argument, never as script text.
    ``ca_volume``: the pod volume holding the profile's CA bundle, for an https target."""
    values = {
        **profile.values(params),
        "kind": target.kind,
        "target": target.target,
        "timeout-seconds": str(timeout),
        "ca-file": f"{CA_DIR}/{CA_FILE}" if ca_volume is not None else SYSTEM_ROOTS,
    }
    container = build_container(profile, name=name, values=values, resources=resources)
    if ca_volume is not None:
        container["volumeMounts"] = [{"name": ca_volume, "mountPath": CA_DIR, "readOnly": True}]
    return container
