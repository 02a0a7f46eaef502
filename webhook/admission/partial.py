"""Decode only the parts of an AdmissionReview that admission reads.

Parsing a whole pod into dicts is most of the cost of a large request (a 95 KB pod with 1,200
env entries: about 220 µs with orjson), yet the engine reads only names, ports, volume mounts,
annotations and a few flags: everything else is skipped by msgspec without being built (about
55 µs for that pod). The result has the same shape as the full decode, with the unread fields
left out, so the engine cannot tell the difference: ``tests/test_partial_reads.py`` records every
field admission reads on the golden pods and checks it is kept here, and ``tests/test_properties.py``
holds that the answers are the same. The patch never copies the pod back, so nothing is lost.

Whenever the body does not fit these types (not JSON, or a field of an unexpected type), the
full orjson decode runs instead and the usual checks answer it. Two differences remain, by
design, both about fields that are never read and both valid JSON grammar (RFC 8259 §6, §8.2)
that orjson refuses: a number beyond a double's range and an unpaired surrogate escape
(``"\\udead"``) no longer make the body a 400. Invalid UTF-8 still does.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from msgspec import UNSET, Struct, UnsetType

# Fields absent from the body stay absent (UNSET is left out by to_builtins): the engine tells
# "absent" from null nowhere, but keeping them apart keeps the decoded shape exact.


class _Named(Struct, omit_defaults=True):
    name: Any = UNSET


class _Present(Struct):
    """An object whose content is never read, only its presence: decoded as ``{}``."""


class _Volume(Struct, omit_defaults=True):
    name: Any = UNSET
    # The sources the logging agent never shares (profiles/logging.NEVER_SHARED).
    secret: _Present | None | UnsetType = UNSET
    configMap: _Present | None | UnsetType = UNSET  # noqa: N815
    projected: _Present | None | UnsetType = UNSET
    downwardAPI: _Present | None | UnsetType = UNSET  # noqa: N815


class _Container(Struct, omit_defaults=True):
    name: Any = UNSET
    ports: Any = UNSET
    volumeMounts: Any = UNSET  # noqa: N815 - the Kubernetes field name
    restartPolicy: Any = UNSET  # noqa: N815


class _Spec(Struct, omit_defaults=True):
    # In the order the apiserver writes them, so the patch lists its operations in the same order.
    volumes: list[_Volume] | None | UnsetType = UNSET
    initContainers: list[_Container] | None | UnsetType = UNSET  # noqa: N815
    containers: list[_Container] | None | UnsetType = UNSET
    ephemeralContainers: list[_Named] | None | UnsetType = UNSET  # noqa: N815
    restartPolicy: Any = UNSET  # noqa: N815
    hostNetwork: Any = UNSET  # noqa: N815
    imagePullSecrets: Any = UNSET  # noqa: N815 - read when a profile requires pull secrets


class _Metadata(Struct, omit_defaults=True):
    name: Any = UNSET
    generateName: Any = UNSET  # noqa: N815
    annotations: dict[str, str] | None | UnsetType = UNSET
    """Typed: building strings costs less than building Any, and any other shape (a list, a value
    that is not a string) sends the body to the full decode, where admission denies it by name."""
    ownerReferences: Any = UNSET  # noqa: N815


class _Pod(Struct, omit_defaults=True):
    metadata: _Metadata | None | UnsetType = UNSET
    spec: _Spec | None | UnsetType = UNSET


class _Request(Struct, omit_defaults=True):
    uid: Any = UNSET
    kind: Any = UNSET
    namespace: Any = UNSET
    operation: Any = UNSET
    subResource: Any = UNSET  # noqa: N815
    dryRun: Any = UNSET  # noqa: N815
    object: _Pod | None | UnsetType = UNSET


class _Review(Struct, omit_defaults=True):
    apiVersion: Any = UNSET  # noqa: N815
    kind: Any = UNSET
    request: _Request | None | UnsetType = UNSET


_decoder = msgspec.json.Decoder(_Review)


def loads(body: bytes) -> Any:
    """The review with only what admission reads, or the full decode when the body is unusual."""
    try:
        if not body.isascii():
            body.decode("utf-8")  # skipped strings are not checked; JSON must be valid UTF-8
        return msgspec.to_builtins(_decoder.decode(body))
    except Exception:  # noqa: BLE001 - whatever the shortcut trips on, the full decode answers
        return orjson.loads(body)  # raises orjson's own error for a body that is not JSON
